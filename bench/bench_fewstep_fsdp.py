"""Training cost on CPU, tiny random SD (sidbench.gen.tiny), same run:

1. one iteration of 1-, 2- and 4-step SiD (`gen_steps` K; K' ~ U{1..K} per iteration, the drawn K' listed), in
   process, the same seed and batch for every K;
2. FSDP2 against DDP with 2 gloo processes (torchrun, one thread each): seconds per iteration and the trained state
   per process (`static_mb` of the log: the generator's and fake score's weights, gradients, Adam moments, and the
   EMA), the ratio printed.

Usage: python bench/bench_fewstep_fsdp.py [--iters N] [--results bench/RESULTS.md]
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import sidbench  # noqa: F401
from distill.config import resolve
from distill.loop import Trainer
from sidbench.gen.tiny import build_tiny_sd

PROMPTS = "a red circle\na blue square\ntwo cats\na dog on a mat\n"


def few_step_times(sd: Path, tmp: Path, iters: int) -> dict:
    (tmp / "p.txt").write_text(PROMPTS)
    out = {}
    for k in (1, 2, 4):
        cfg = resolve(overrides=dict(base=str(sd), prompts=str(tmp / "p.txt"), run_dir=str(tmp / f"k{k}"), batch=4,
                                     batch_per_device=4, lr_gen=1e-4, lr_fake=1e-4, trackers="none", gen_steps=k))
        tr = Trainer(cfg)
        tr.step()  # warm-up
        per = {}  # K' drawn -> the seconds of each iteration that drew it
        for _ in range(iters):
            t0 = time.perf_counter()
            kd = tr.step().get("gen_steps_drawn", 1)
            per.setdefault(kd, []).append(time.perf_counter() - t0)
        out[k] = (sum(sum(v) for v in per.values()) / iters,
                  {kd: sorted(v)[len(v) // 2] for kd, v in sorted(per.items())})
    return out


def distributed_run(sd: Path, tmp: Path, name: str, iters: int, sharding: str) -> dict:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    run = tmp / name
    cmd = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "sidbench", "distill", "--base", str(sd),
           "--prompts", str(tmp / "p.txt"), "--run-dir", str(run), "--batch", "4", "--batch-per-device", "2",
           "--duration-kimg", str((iters + 1) * 4 / 1000), "--lr-gen", "1e-4", "--lr-fake", "1e-4",
           "--checkpoint-every", "0", "--sharding", sharding, "--trackers", "none", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()][1:]  # the first is warm-up
    return {"sec_per_iter": sum(x["sec_per_kimg"] * 4 / 1000 for x in log) / len(log),
            "static_mb": log[-1]["static_mb"], "loss_fake": [x["loss_fake"] for x in log]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--results", default=None, help="add rows to this results file (e.g. bench/RESULTS.md)")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        sd = build_tiny_sd(tmp / "tiny-sd")
        fs = few_step_times(sd, tmp, a.iters)
        for k, (sec, by) in fs.items():
            per = ", ".join(f"K'={kd}: {v:.3f} s" for kd, v in by.items())
            print(f"gen_steps {k}: {sec:.3f} s/iteration on average, {sec / fs[1][0]:.2f}x the 1-step "
                  f"(median per drawn K': {per})")
        ddp = distributed_run(sd, tmp, "ddp", a.iters, "none")
        fsdp = distributed_run(sd, tmp, "fsdp", a.iters, "fsdp")
    print(f"2 gloo processes: DDP {ddp['sec_per_iter']:.3f} s/iteration, {ddp['static_mb']:.2f} MB trained state per "
          f"process; FSDP2 {fsdp['sec_per_iter']:.3f} s/iteration ({fsdp['sec_per_iter'] / ddp['sec_per_iter']:.2f}x), "
          f"{fsdp['static_mb']:.2f} MB ({fsdp['static_mb'] / ddp['static_mb']:.2f}x)")
    if a.results:
        day = datetime.date.today().isoformat()
        machine = f"{os.cpu_count()}-core {platform.machine()} CPU, torch {torch.__version__}"
        by4 = ", ".join(f"K'={kd} {v:.3f} s" for kd, v in fs[4][1].items())
        rows = [f"| {day} | {machine} | `python bench/bench_fewstep_fsdp.py --iters {a.iters}` | "
                + " / ".join(f"{fs[k][0]:.3f}" for k in (1, 2, 4)) + " s ("
                + " / ".join(f"{fs[k][0] / fs[1][0]:.2f}x" for k in (1, 2, 4)) + f"; K = 4 by K': {by4}) | "
                f"{ddp['sec_per_iter']:.3f} s, {ddp['static_mb']:.2f} MB | {fsdp['sec_per_iter']:.3f} s "
                f"({fsdp['sec_per_iter'] / ddp['sec_per_iter']:.2f}x), {fsdp['static_mb']:.2f} MB "
                f"({fsdp['static_mb'] / ddp['static_mb']:.2f}x) |"]
        print("\n".join(rows))


if __name__ == "__main__":
    main()
