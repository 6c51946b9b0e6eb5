"""`distill --plan`'s activation measurement, same run: our O(1)-per-op storage count (distill/memory_trace.py)
against torch's MemTracker, on the full-size SD1.5 UNet on fake tensors (one training forward + backward, batch 1),
in fp32 and bf16 autocast, with and without gradient checkpointing. Prints seconds, the ratio, and both readings:
ours (the most activations + temporaries held at any moment) and MemTracker's (activations + temporaries when its
total with gradients peaks), which the plan used before.

Usage: python bench/bench_plan_count.py [--name "SD1.5 UNet"]   (its last line is the bench/RESULTS.md row)
"""
import argparse
import datetime
import platform
import time

import torch

import sidbench  # noqa: F401
from distill.plan import _fake, measure_activations
from sidbench.gen.architectures import ARCHITECTURES


def memtracker_reading(net, inputs, precision: str, checkpointing: bool) -> int:
    from torch.distributed._tools.mem_tracker import MemTracker

    if checkpointing:
        net.enable_gradient_checkpointing()
    net.train()
    args, kwargs = inputs
    tracker = MemTracker()
    tracker.track_external(net)
    with tracker, torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = net(*args, **kwargs)
        getattr(out, "sample", out).float().pow(2).mean().backward()
    peak = tracker.get_tracker_snapshot("peak")
    return int(sum(n for dev in peak.values() for k, n in dev.items() if getattr(k, "name", "") in ("ACT", "TEMP")))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="SD1.5 UNet", choices=sorted(ARCHITECTURES))
    a = ap.parse_args(argv)
    arch = ARCHITECTURES[a.name]
    cells, ours_total, theirs_total = [], 0.0, 0.0
    for precision in ("fp32", "bf16"):
        for ckpt in (False, True):
            with FakeTensorMode():
                ours, t_ours = timed(lambda: measure_activations(arch.build(), _fake(arch.example_inputs(1)),
                                                                 precision=precision, grad_checkpointing=ckpt))
            with FakeTensorMode():
                theirs, t_theirs = timed(lambda: memtracker_reading(arch.build(), _fake(arch.example_inputs(1)),
                                                                    precision, ckpt))
            ours_total, theirs_total = ours_total + t_ours, theirs_total + t_theirs
            cell = (f"{t_ours:.1f} s vs {t_theirs:.1f} s ({t_theirs / t_ours:.1f}x); {ours / 1e9:.2f} GB held at most, "
                    f"MemTracker read {theirs / 1e9:.2f} GB")
            print(f"{precision}{' + checkpointing' if ckpt else ''}: {cell}", flush=True)
            cells.append(cell)
    print(f"all four: ours {ours_total:.1f} s, MemTracker {theirs_total:.1f} s, {theirs_total / ours_total:.1f}x")
    machine = f"{torch.get_num_threads()}-thread {platform.machine()} CPU, torch {torch.__version__}"
    cmd = f"`python bench/bench_plan_count.py --name \"{a.name}\"`"
    print(f"| {datetime.date.today()} | {machine} | {cmd} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
