"""GPU benchmark (run when a GPU machine is lent): one SiD iteration per teacher family at its real size.

For SDXL, SD3-Medium, SANA 1600M and FLUX.1-dev: the real denoiser architecture (the configs of
sidbench/gen/architectures.py, whose parameter counts a test checks) with random weights, built straight on
the device, and random-weight text encoders of the real widths (the tokenizers of sidbench.gen.tiny: ids are
what they are, the cost is the same). Teacher + fake score + generator (+ EMA) and both Adam states go through
the real ``distill.loop.Trainer`` with the family's preset (bf16 autocast, gradient checkpointing), so the
figures are the trainer's own: images/s, peak memory, achieved TFLOP/s (one iteration's FLOPs from
torch.utils.flop_counter) and the static memory the trainer holds (one network's gradients at a time) beside the
measured peak. OOM where it does not fit (FLUX.1-dev's three 12B networks with Adam need ~420 GiB: more than one
GPU).

Usage: python bench/gpu_distill_families.py [--families sdxl,sd3,sana,flux] [--batch-per-device 1] [--iters 3]
       python bench/gpu_distill_families.py --smoke     # the tiny models of each family on the CPU, seconds
``--smoke`` swaps each real-size base for ``sidbench.gen.tiny``'s model of that family; everything else (the
trainer, FLOP counting, timing, the table, the results row) is the run above; ``tests/test_bench_smoke.py``
runs it inside ``make test``.
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from gpu_distill_sd15 import (PEAK_TFLOPS, finish, fmt, is_cuda, reset_peak_memory, trainer_peak_gib,  # bench/ on sys.path
                              sync, training_cell)

SECTION = "SiD training per teacher family at real size (GPU)"
FAMILIES = {"sdxl": "SDXL UNet", "sd3": "SD3-Medium MMDiT", "sana": "SANA 1600M", "flux": "FLUX.1-dev"}
PRESETS = {"sdxl": "sdxl-start", "sd3": "sd3-start", "sana": "sana-start", "flux": "flux-start"}
HEADER = ["date", "machine", "command", *FAMILIES.values()]


def _real_text_stack(family: str, device, dtype):
    """Random-weight text encoders of the real sizes (sidbench.gen.architectures' configs); T5 and Gemma in bf16."""
    from sidbench.gen.architectures import TEXT_ENCODERS

    def make(name, half=False):
        with torch.device(device):
            m = TEXT_ENCODERS[name].build()
        return m.to(dtype) if half else m

    if family == "sdxl":
        return make("CLIP-L"), {"text_encoder_2": make("OpenCLIP-bigG (proj)")}
    if family == "sd3":
        return make("CLIP-L (proj)"), {"text_encoder_2": make("OpenCLIP-bigG (proj)"),
                                       "text_encoder_3": make("T5-XXL encoder", half=True)}
    if family == "flux":
        return make("CLIP-L"), {"text_encoder_2": make("T5-XXL encoder", half=True)}
    return make("Gemma-2-2B", half=True), {}


def real_base(family: str, tiny_folder: Path, device: str):
    """The family's BaseModel at real size: real denoiser, real-width encoders, the tiny model's tokenizers,
    scheduler and index, and the real VAE's geometry (training never decodes)."""
    from sidbench.gen.architectures import ARCHITECTURES
    from sidbench.gen.models import load_base

    tiny = load_base(tiny_folder)
    with torch.device(device):
        net = ARCHITECTURES[FAMILIES[family]].build().requires_grad_(False).eval()
    enc, more = _real_text_stack(family, device, torch.bfloat16)
    for m in (enc, *more.values()):
        m.requires_grad_(False).eval()
    components = {**tiny.components, **more}
    vae = SimpleNamespace(config=SimpleNamespace(
        block_out_channels=(1,) * (6 if family == "sana" else 4), sample_size=1024, scaling_factor=1.0,
        latent_channels=32 if family == "sana" else (4 if family == "sdxl" else 16)))
    base = copy.copy(tiny)
    base.net, base.vae, base.text_encoder, base.components = net, vae, enc, components
    base.device, base.source = torch.device(device), f"{FAMILIES[family]} (random weights, real size)"
    return base


def check_real_shapes(family: str, tiny_folder: Path) -> tuple[int, ...]:
    """The real-size base on the meta device, one conditioned call of its denoiser: the encoders' widths, the
    family's conditioning and the real network fit together (what a GPU run would find out first)."""
    base = real_base(family, tiny_folder, "meta")
    cond = base.encode(["a photo of a cat"])
    x = torch.empty(1, *base.latent_shape(), device="meta")
    with torch.no_grad():
        out = cond.call(base.net, x, torch.full((1,), 500.0, device="meta"))
    if tuple(out.shape) != tuple(x.shape):
        raise RuntimeError(f"{family}: the denoiser returned {tuple(out.shape)} for a latent {tuple(x.shape)}")
    return tuple(x.shape[1:])


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="each family's tiny model on the CPU, seconds")
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma list of {', '.join(FAMILIES)}")
    ap.add_argument("--batch-per-device", type=int, default=None, help="default 1 (--smoke: 2)")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations; default 3 (--smoke: 1)")
    ap.add_argument("--device", default=None, help="default cuda (--smoke: cpu)")
    ap.add_argument("--results", default=None, help="results file to add a row to (default bench/RESULTS.md; "
                    "with --smoke, none unless given)")
    args = ap.parse_args(argv)
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        ap.error(f"unknown families {unknown}; expected {', '.join(FAMILIES)}")
    args.batch_per_device = args.batch_per_device or (2 if args.smoke else 1)
    args.iters = args.iters or (1 if args.smoke else 3)
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    return args


def main(argv=None) -> None:
    import sidbench  # noqa: F401
    from distill.config import resolve
    from distill.loop import Trainer
    from sidbench.gen import tiny
    from sidbench.gen.architectures import count_params, sid_memory_gib
    from sidbench.gen.models import load_base
    from torch.utils.flop_counter import FlopCounterMode

    args = parse_args(argv)
    dev = args.device
    name = torch.cuda.get_device_name(torch.device(dev)) if is_cuda(dev) else "CPU"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    precision = "fp32" if args.smoke and not is_cuda(dev) else "bf16"  # CPU autocast bf16 is not what is timed
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "p.txt"
        prompts.write_text("\n".join(f"a photo of object {i} on a table" for i in range(1024)) + "\n")
        for fam in args.families:
            folder = getattr(tiny, f"build_tiny_{fam}")(Path(tmp) / fam)
            if args.smoke:  # the real-size path too, on the meta device
                print(f"{FAMILIES[fam]}: real-size conditioning and call fit on meta, latent {check_real_shapes(fam, folder)}")
            tr = base = None
            try:
                reset_peak_memory(dev)
                base = load_base(folder, device=dev) if args.smoke else real_base(fam, folder, dev)
                b = args.batch_per_device
                cfg = resolve(overrides=dict(base=str(folder), prompts=str(prompts), run_dir=str(Path(tmp) / "r"),
                                             preset=PRESETS[fam], batch=b, batch_per_device=b, precision=precision,
                                             device=dev, grad_checkpointing=not args.smoke))
                tr = Trainer(cfg, base=base)
                with FlopCounterMode(display=False) as fc:
                    tr.step()
                flops = fc.get_total_flops()
                sync(dev)
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    tr.step()
                sync(dev)
                dt = (time.perf_counter() - t0) / args.iters
                n = count_params(tr.teacher)
                tflops = flops / dt / 1e12
                results[fam] = dict(ips=b / dt, mem=trainer_peak_gib(tr, dev), tflops=tflops, params=n,
                                    static=sid_memory_gib(n, grads_held=1)["total"],
                                    frac=f"{100 * tflops / peak[precision]:.0f}%" if peak else "?")
            except torch.cuda.OutOfMemoryError:
                results[fam] = None
            finally:
                del tr, base
    what = "tiny models (sidbench.gen.tiny)" if args.smoke else "real-size architectures"
    mem = "peak memory (GiB)" if is_cuda(dev) else "peak RSS so far (GiB)"
    print(f"device: {name}; per-device batch {args.batch_per_device}; {args.iters} timed iteration(s); "
          f"{precision}; each family's preset; {what}, random weights")
    print(f"| family | params | static SiD memory, fp32 (GiB) | images/s | {mem} | achieved TFLOP/s | of peak |")
    print("|---|---|---|---|---|---|---|")
    for fam in args.families:
        r = results[fam]
        if r is None:
            print(f"| {FAMILIES[fam]} | - | - | OOM | - | - | - |")
        else:
            print(f"| {FAMILIES[fam]} | {r['params'] / 1e9:.3g}B | {fmt(r['static'])} | {fmt(r['ips'])} | "
                  f"{fmt(r['mem'])} | {fmt(r['tflops'])} | {r['frac']} |")
    figures = []
    for fam in FAMILIES:
        r = results.get(fam, "skip")
        figures.append("not run" if r == "skip" else "OOM" if r is None else
                       training_cell(r["ips"], r["mem"], r["tflops"], r["frac"], dev))
    finish(args, argv, __file__, SECTION, HEADER, f"per-device batch {args.batch_per_device}, {args.iters} timed "
           f"iteration(s), {precision}, presets, {what}, {dev}", figures)


if __name__ == "__main__":
    main()
