"""GPU benchmark (run when a GPU machine is lent): SiD-LSG training on SD1.5-architecture UNets.

Random weights of the real architectures (UNet 860M, CLIP text encoder, VAE not needed for training):
teacher + fake score + generator (+ EMA), Adam states, LSG k = 1.5. For fp32 / bf16 autocast, with and
without gradient checkpointing: images/s, peak memory, and achieved TFLOP/s (FLOPs of one iteration
counted by torch.utils.flop_counter) against the card's peak. Prints a Markdown table.
Usage: python bench/gpu_distill_sd15.py [--batch-per-device 4] [--iters 5]
Needs diffusers + transformers on the GPU box (carry wheels; see the device notes in README).
"""
import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch

PEAK_TFLOPS = {"H100": {"fp32": 67.0, "bf16": 989.0}, "H200": {"fp32": 67.0, "bf16": 989.0},
               "A100": {"fp32": 19.5, "bf16": 312.0}}  # dense, SXM; fp32 without TF32


def build_sd15(folder: Path) -> Path:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from sidbench.data.tokenizer import write_clip_tokenizer_files
    from sidbench.gen.tiny import SD_SCHEDULER

    UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8).save_pretrained(folder / "unet")
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                  sample_size=512).save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(hidden_act="quick_gelu", projection_dim=768)).save_pretrained(folder / "text_encoder")
    write_clip_tokenizer_files(folder / "tokenizer")
    from transformers import CLIPTokenizer
    CLIPTokenizer(str(folder / "tokenizer/vocab.json"), str(folder / "tokenizer/merges.txt"),
                  pad_token="<|endoftext|>", model_max_length=77).save_pretrained(folder / "tokenizer")
    DDPMScheduler(**SD_SCHEDULER).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return folder


def main():
    import sidbench  # noqa: F401
    from distill.config import resolve
    from distill.loop import Trainer
    from sidbench.gen.models import load_base

    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-per-device", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sd = build_sd15(Path(tmp) / "sd15")
        (Path(tmp) / "p.txt").write_text("\n".join(f"a photo of object {i} on a table" for i in range(1024)) + "\n")
        base = load_base(sd, device="cuda")
        for precision in ("fp32", "bf16"):
            for ckpt in (False, True):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                b = args.batch_per_device
                cfg = resolve(overrides=dict(base=str(sd), prompts=str(Path(tmp) / "p.txt"), run_dir=str(Path(tmp) / "r"),
                                             batch=b, batch_per_device=b, precision=precision, grad_checkpointing=ckpt,
                                             device="cuda", lsg=1.5))
                try:
                    tr = Trainer(cfg, base=copy.copy(base))
                    from torch.utils.flop_counter import FlopCounterMode
                    with FlopCounterMode(display=False) as fc:
                        tr.step()
                    flops = fc.get_total_flops()
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for _ in range(args.iters):
                        tr.step()
                    torch.cuda.synchronize()
                    dt = (time.perf_counter() - t0) / args.iters
                    tflops = flops / dt / 1e12
                    rows.append((precision, ckpt, b / dt, torch.cuda.max_memory_allocated() / 2**30, tflops,
                                 (f"{100 * tflops / peak[precision]:.0f}%" if peak else "?")))
                    del tr
                except torch.cuda.OutOfMemoryError:
                    rows.append((precision, ckpt, None, None, None, "OOM"))
    print(f"device: {name}; per-device batch {args.batch_per_device}; LSG k=1.5; SD1.5-architecture random weights")
    print("| precision | grad checkpointing | images/s | peak memory (GiB) | achieved TFLOP/s | of peak |")
    print("|---|---|---|---|---|---|")
    for p, c, ips, mem, tf, frac in rows:
        f = lambda v, d: "-" if v is None else f"{v:.{d}f}"
        print(f"| {p} | {'on' if c else 'off'} | {f(ips, 2)} | {f(mem, 1)} | {f(tf, 1)} | {frac} |")


if __name__ == "__main__":
    main()
