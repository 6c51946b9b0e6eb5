"""GPU benchmark (run when a GPU machine is lent): SiD-LSG training on SD1.5-architecture UNets.

Random weights of the real architectures (UNet 860M, CLIP text encoder, VAE not needed for training):
teacher + fake score + generator (+ EMA), Adam states, LSG k = 1.5. For fp32 / bf16 autocast, with and
without gradient checkpointing: images/s, peak memory, and achieved TFLOP/s (FLOPs of one iteration
counted by torch.utils.flop_counter) against the card's peak. Prints a Markdown table and adds a row to
its section of bench/RESULTS.md (``--results``).

Usage: python bench/gpu_distill_sd15.py [--batch-per-device 4] [--iters 5] [--gen-steps K] [--results bench/RESULTS.md]
       torchrun --nproc-per-node 8 bench/gpu_distill_sd15.py --sharding fsdp [--teacher-sharding shard]
           [--recompute-teacher]    # FSDP2 over the node's GPUs: images/s of the global batch, the largest
                                    # per-device peak; needs >= 2 GPUs (one process is plain DDP-free training)
       python bench/gpu_distill_sd15.py --smoke      # tiny SD on the CPU, seconds: the same code path
``--smoke`` swaps the SD1.5-size models for ``sidbench.gen.tiny``'s and runs on the CPU with a small batch
and one timed iteration; everything else (trainer, FLOP counting, timing, table, results row) is the run
above, so a passing smoke run (``tests/test_bench_smoke.py``, part of ``make test``) means this script works
the first time a GPU is lent. ``--smoke --device cuda`` is a quick check on the GPU box before the real run.
Needs diffusers + transformers on the GPU box (carry wheels; see the device notes in README).

The helpers below (device timing, machine string, results rows) are shared with bench/gpu_eval_30k.py.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

PEAK_TFLOPS = {"H100": {"fp32": 67.0, "bf16": 989.0}, "H200": {"fp32": 67.0, "bf16": 989.0},
               "A100": {"fp32": 19.5, "bf16": 312.0}}  # dense, SXM; fp32 without TF32
RESULTS = Path(__file__).resolve().with_name("RESULTS.md")
SECTION = "SiD-LSG training on SD1.5-architecture UNets (GPU)"
HEADER = ["date", "machine", "command", "fp32", "fp32 + grad checkpointing", "bf16", "bf16 + grad checkpointing"]


# --- shared by both GPU benchmarks -----------------------------------------------------------------------
def is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def sync(device: str) -> None:
    """Wait for queued GPU work, so a wall-clock interval covers it (nothing to wait for on the CPU)."""
    if is_cuda(device):
        torch.cuda.synchronize()


def reset_peak_memory(device: str) -> None:
    if is_cuda(device):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float:
    """GPU: peak allocated since the last reset. CPU: the process's peak resident set so far (never reset)."""
    if is_cuda(device):
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def trainer_peak_gib(trainer, device: str) -> float:
    """The peak over the trainer's life: it resets the allocator's (or the resident set's) peak before each phase,
    so the raw counter after a step holds only the last phase's; the trainer keeps the maximum across resets."""
    own = trainer.cuda_peak_mb if is_cuda(device) else trainer.rss_peak_mb
    return max(peak_memory_gib(device), own / 2**10)


def machine(device: str, smoke: bool) -> str:
    """What the figures were measured on, from torch: the GPU's name, or the CPU's core count."""
    if is_cuda(device):
        gpu = torch.cuda.get_device_name(torch.device(device))
        return f"{'smoke on ' if smoke else ''}{gpu}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    threads = torch.get_num_threads()
    return (f"{'CPU smoke' if smoke else 'CPU'}, {os.cpu_count()} cores ({threads} torch thread{'s' * (threads != 1)}), "
            f"torch {torch.__version__}")


def command_line(argv: list[str]) -> str:
    """This run's command as recorded in RESULTS.md (without --results: where a row goes is not how it was made)."""
    args, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
        elif a == "--results":
            skip = True
        elif not a.startswith("--results="):
            args.append(a)
    return " ".join(["python", f"bench/{Path(argv[0]).name}", *args])


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_separator(line: str) -> bool:
    return re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", line.strip()) is not None


def record_row(path: str | os.PathLike, script: str, title: str, header: list[str], cells: list[str]) -> str:
    """Add ``| cells |`` as the newest row of ``script``'s table in the results file; returns the row.

    The section is the ``## ...`` heading naming `` `bench/<script>` ``; the row goes right under the table's
    ``|---|`` line (newest first, as every section of RESULTS.md). A missing file, section or table is created,
    in the file's format; a table whose header differs from ``header`` is an error, not a silent mix of formats.
    """
    if len(cells) != len(header):
        raise ValueError(f"{len(cells)} cells for a {len(header)}-column table")
    clean = [" ".join(str(c).replace("|", "/").split()) or "-" for c in cells]
    row = "| " + " | ".join(clean) + " |"
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else ["# Benchmark results"]
    tag = f"`bench/{script}`"
    start = next((i for i, l in enumerate(lines) if l.startswith("## ") and tag in l), None)
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", f"## {title} — {tag}", "", *table, row]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        sep = next((i for i in range(start + 1, end) if _is_separator(lines[i])), None)
        if sep is None:
            at = end
            while at > start + 1 and not lines[at - 1].strip():
                at -= 1
            lines[at:at] = ["", *table, row] + ([""] if at < len(lines) and lines[at].strip() else [])
        else:
            if sep == start + 1 or _cells(lines[sep - 1]) != header:
                raise ValueError(f"{path}: the table under {tag} has columns {_cells(lines[sep - 1])}, "
                                 f"this script writes {header}; fix the file or the script")
            lines.insert(sep + 1, row)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return row


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def training_cell(ips, mem, tflops, frac, device: str) -> str:
    """One configuration's figures as a RESULTS.md cell (OOM where it did not fit)."""
    if ips is None:
        return "OOM"
    return (f"{fmt(ips)} img/s, {fmt(mem)} GiB{'' if is_cuda(device) else ' RSS'}, {fmt(tflops)} TFLOP/s"
            + ("" if frac == "?" else f" ({frac} of peak)"))


def finish(args, argv, script: str, section: str, header: list[str], detail: str, figures: list[str]) -> None:
    """The row (date, machine, command with ``detail``, figures): printed, and recorded unless a smoke run
    without --results."""
    command = f"`{command_line(sys.argv if argv is None else [script, *argv])}` ({detail})"
    cells = [datetime.date.today().isoformat(), machine(args.device, args.smoke), command, *figures]
    if args.results is None and args.smoke:
        print("| " + " | ".join(cells) + " |   (smoke: not recorded; --results FILE records it)")
        return
    row = record_row(args.results or str(RESULTS), Path(script).name, section, header, cells)
    print(f"recorded in {args.results or RESULTS}:\n{row}")


# --- this benchmark ----------------------------------------------------------------------------------------
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


def build_base(folder: Path, smoke: bool) -> Path:
    """The SD1.5 architecture, or for --smoke the tiny SD of sidbench.gen.tiny (same classes, same layout)."""
    from sidbench.gen.tiny import build_tiny_sd

    return build_tiny_sd(folder) if smoke else build_sd15(folder)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny SD on the CPU, batch 2, 1 timed iteration: the same code path in seconds")
    ap.add_argument("--batch-per-device", type=int, default=None, help="default 4 (--smoke: 2)")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations; default 5 (--smoke: 1)")
    ap.add_argument("--device", default=None, help="default cuda (--smoke: cpu)")
    ap.add_argument("--gen-steps", type=int, default=1, help="few-step generator K (1-4); every iteration draws K'")
    ap.add_argument("--sharding", default="none", choices=("none", "zero1", "fsdp"),
                    help="the trainer's sharding over the processes torchrun starts")
    ap.add_argument("--teacher-sharding", default="replicate", choices=("replicate", "shard"))
    ap.add_argument("--recompute-teacher", action="store_true", help="gradient checkpointing in the teacher too")
    ap.add_argument("--collective-timeout-s", type=float, default=300,
                    help="under torchrun: a process out of memory leaves the others waiting in a collective; they "
                         "stop after this long (the rows measured so far are already printed). It bounds every "
                         "collective, the wait while process 0 builds and saves the base model too")
    ap.add_argument("--results", default=None, help="results file to add a row to (default bench/RESULTS.md; "
                    "with --smoke, none unless given: smoke figures are not benchmark results)")
    args = ap.parse_args(argv)
    args.batch_per_device = args.batch_per_device or (2 if args.smoke else 4)
    args.iters = args.iters or (1 if args.smoke else 5)
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    return args


def main(argv: list[str] | None = None) -> None:
    import sidbench  # noqa: F401
    from distill.config import resolve
    from distill.loop import Trainer
    from sidbench.gen.models import load_base
    from torch.utils.flop_counter import FlopCounterMode

    import torch.distributed as dist

    from sidbench.core import distributed

    args = parse_args(argv)
    distributed.init_if_launched(timeout_s=args.collective_timeout_s, device=args.device)
    world = dist.get_world_size() if dist.is_initialized() else 1
    main_process = distributed.is_main()
    if is_cuda(args.device) and world > 1:  # one GPU per process, as torchrun's LOCAL_RANK says
        args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    dev = args.device
    name = torch.cuda.get_device_name(torch.device(dev)) if is_cuda(dev) else "CPU"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    rows = []
    with tempfile.TemporaryDirectory() as own:
        tmp = [own]
        if world > 1:  # one folder, written by process 0 (the libraries' save_pretrained writes on the main one)
            dist.broadcast_object_list(tmp, src=0)
        tmp = tmp[0]
        sd = Path(tmp) / "sd"
        if main_process:
            build_base(sd, args.smoke)
            (Path(tmp) / "p.txt").write_text("\n".join(f"a photo of object {i} on a table" for i in range(1024)) + "\n")
        if world > 1:
            dist.barrier()
        for precision in ("fp32", "bf16"):
            for ckpt in (False, True):
                reset_peak_memory(dev)
                b = args.batch_per_device
                cfg = resolve(overrides=dict(base=str(sd), prompts=str(Path(tmp) / "p.txt"), run_dir=str(Path(tmp) / "r"),
                                             batch=b * world, batch_per_device=b, precision=precision,
                                             grad_checkpointing=ckpt, device=dev, lsg=1.5, gen_steps=args.gen_steps,
                                             sharding=args.sharding, teacher_sharding=args.teacher_sharding,
                                             recompute_teacher=args.recompute_teacher))
                tr = None
                try:
                    tr = Trainer(cfg, base=load_base(sd, device=dev))  # fresh: the options change the teacher
                    with FlopCounterMode(display=False) as fc:
                        tr.step()
                    flops = fc.get_total_flops()
                    sync(dev)
                    t0 = time.perf_counter()
                    for _ in range(args.iters):
                        tr.step()
                    sync(dev)
                    dt = (time.perf_counter() - t0) / args.iters
                    tflops = flops / dt / 1e12
                    mem = torch.tensor(trainer_peak_gib(tr, dev), device=dev if is_cuda(dev) else "cpu")
                    if world > 1:  # the largest device's peak: the one that has to fit
                        dist.all_reduce(mem, op=dist.ReduceOp.MAX)
                    rows.append((precision, ckpt, b * world / dt, float(mem), tflops,
                                 (f"{100 * tflops / peak[precision]:.0f}%" if peak else "?")))  # per device
                except torch.cuda.OutOfMemoryError:
                    rows.append((precision, ckpt, None, None, None, "OOM"))
                finally:
                    del tr
                if main_process:  # as it is measured: a later hang (one process out of memory) keeps the rows so far
                    print(f"measured: {precision}, checkpointing {'on' if ckpt else 'off'}: images/s {fmt(rows[-1][2])}, "
                          f"peak {fmt(rows[-1][3])} GiB, {fmt(rows[-1][4])} TFLOP/s, {rows[-1][5]}", flush=True)
        if world > 1:
            dist.barrier()  # process 0 removes the folder the others read
    if not main_process:
        return
    what = ("tiny SD (sidbench.gen.tiny)" if args.smoke else "SD1.5-architecture") + " random weights"
    sharding = "" if world == 1 and args.sharding == "none" else (
        f"; {world} process(es), sharding {args.sharding}, teacher {args.teacher_sharding}")
    what += sharding + ("; teacher recomputed" if args.recompute_teacher else "")
    mem = "peak memory (GiB)" if is_cuda(dev) else "peak RSS so far (GiB)"
    print(f"device: {name}; per-device batch {args.batch_per_device}; {args.iters} timed iteration(s); "
          f"LSG k=1.5; gen_steps {args.gen_steps}; {what}")
    print(f"| precision | grad checkpointing | images/s | {mem} | achieved TFLOP/s | of peak |")
    print("|---|---|---|---|---|---|")
    for p, c, ips, m, tf, frac in rows:
        print(f"| {p} | {'on' if c else 'off'} | {fmt(ips)} | {fmt(m)} | {fmt(tf)} | {frac} |")
    finish(args, argv, __file__, SECTION, HEADER,
           f"per-device batch {args.batch_per_device}, {args.iters} timed iteration(s), LSG k = 1.5, gen_steps "
           f"{args.gen_steps}, {what}, {dev}", [training_cell(ips, m, tf, frac, dev) for _, _, ips, m, tf, frac in rows])


if __name__ == "__main__":
    main()
