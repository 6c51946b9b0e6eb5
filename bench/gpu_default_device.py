"""GPU check (run when a GPU machine is lent): the README's commands with no ``--device`` run on the GPU.

A tiny random Stable Diffusion (``sidbench.gen.tiny``), a prompt list and a folder of reference images are made
in a temporary folder; then the command line runs as a user types it, with no ``--device`` anywhere: ``sidbench
generate`` (teacher, 2 steps), ``sidbench eval`` on the generated and reference folders (FID and KID with the
real Inception architecture, random weights: the GPU box has no network), and ``sidbench distill`` for two
iterations. All of it twice: as one process, and under ``torchrun --nproc-per-node 1``; each launch runs the three
commands one after another in one interpreter, through the entry point ``python -m sidbench`` calls (two interpreter
starts, not six: the figures are the commands' own seconds, imports after the first included). From what each wrote
(the generate sidecar, the eval results, the distill ``log.jsonl``) it asserts that the device recorded is the one
``--device auto`` resolves to here, and, unless ``--smoke``, that it is a GPU (``cuda:N``) on which the training
allocated memory. Prints a table (launch, command, device recorded, seconds) and adds a row to its section of
bench/RESULTS.md (``--results``).

Usage: python bench/gpu_default_device.py [--results bench/RESULTS.md]
       python bench/gpu_default_device.py --smoke     # the same commands wherever auto resolves (here: the CPU)
``tests/test_bench_smoke.py`` runs ``--smoke`` inside ``make test``. Needs diffusers + transformers on the GPU box.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gpu_distill_sd15 import finish  # bench/ is on sys.path

SECTION = "README commands with no --device run on the GPU"
HEADER = ["date", "machine", "command", "one process", "torchrun --nproc-per-node 1"]
LAUNCHES = {"one process": [sys.executable],
            "torchrun --nproc-per-node 1": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                            "--nproc-per-node", "1"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="accept whatever device auto resolves to (the CPU here)")
    ap.add_argument("--worker", metavar="PLAN", help=argparse.SUPPRESS)  # inside a launch: run PLAN's commands
    ap.add_argument("--results", default=None, help="results file to add a row to (default bench/RESULTS.md; "
                    "with --smoke, none unless given: smoke figures are not benchmark results)")
    args = ap.parse_args(argv)
    from sidbench.core.device import resolve_device

    args.device = str(resolve_device("auto"))  # what every command below must record
    return args


def make_inputs(tmp: Path) -> dict[str, Path]:
    """The tiny SD folder, four prompts and four reference images."""
    from PIL import Image

    from sidbench.gen.tiny import build_tiny_sd

    sd = build_tiny_sd(tmp / "sd")
    prompts = tmp / "prompts.txt"
    prompts.write_text("a red circle\na blue square\ntwo cats on a sofa\na boat at sea\n")
    ref = tmp / "ref"
    ref.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(ref / f"{i:06d}.png")
    return {"sd": sd, "prompts": prompts, "ref": ref}


def commands(inp: dict[str, Path], work: Path) -> dict[str, list[str]]:
    """The README's three heavy verbs, as a user types them: no --device."""
    return {
        "generate": ["generate", "--base", inp["sd"], "--prompts", inp["prompts"], "--steps", "2",
                     "--out", work / "gen", "-q"],
        "eval": ["eval", "--images", work / "gen", "--ref", inp["ref"], "--kid", "--kid-subset-size", "4",
                 "--random-weights", "--cache-dir", work / "cache", "--out", work / "r.json", "-q"],
        "distill": ["distill", "--base", inp["sd"], "--prompts", inp["prompts"], "--run-dir", work / "run",
                    "--batch", "2", "--batch-per-device", "2", "--duration-kimg", "0.004",
                    "--checkpoint-every", "0", "--trackers", "none", "-q"],
    }


def recorded(step: str, work: Path) -> tuple[str, dict]:
    """The device a finished command wrote down, and the record it is in."""
    if step == "generate":
        side = json.loads((work / "gen" / "sidbench_generate.json").read_text())
        return side["networks"]["device"], side["networks"]
    if step == "eval":
        res = json.loads((work / "r.json").read_text())
        ran = {res["provenance"]["device"]["device"], res["extractors"]["fid"]["device"]}
        return (ran.pop() if len(ran) == 1 else f"mixed {sorted(ran)}"), res["provenance"]["device"]
    log = [json.loads(x) for x in (work / "run" / "log.jsonl").read_text().splitlines()]
    ran = {x["device"] for x in log}
    return (ran.pop() if len(ran) == 1 else f"mixed {sorted(ran)}"), log[-1]


def worker(plan: str) -> None:
    """Inside a launch: each command of the plan as ``sidbench ARGS`` (the same entry point), timed."""
    from sidbench.cli.app import main

    todo = json.loads(Path(plan).read_text())
    seconds = {}
    for step, args in todo["commands"].items():
        sys.argv = ["sidbench", *args]
        t0 = time.perf_counter()
        try:
            main()
        except SystemExit as e:  # the command line ends with sys.exit, 0 on success
            if e.code not in (0, None):
                raise SystemExit(f"sidbench {step} failed (exit {e.code})") from None
        seconds[step] = time.perf_counter() - t0
    Path(todo["timings"]).write_text(json.dumps(seconds))


def run_launch(name: str, inp: dict[str, Path], work: Path, env: dict) -> tuple[list, str]:
    """Every command under one launch: rows (step, device recorded, its name, seconds, record) and the stderr."""
    work.mkdir(parents=True)
    plan = work / "plan.json"
    plan.write_text(json.dumps({"commands": {k: list(map(str, v)) for k, v in commands(inp, work).items()},
                                "timings": str(work / "seconds.json")}))
    r = subprocess.run([*LAUNCHES[name], str(Path(__file__).resolve()), "--worker", str(plan)], capture_output=True,
                       text=True, env=env, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"{name}: failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    seconds = json.loads((work / "seconds.json").read_text())
    rows = []
    for step in commands(inp, work):
        dev, record = recorded(step, work)
        rows.append((step, dev, record.get("device_name", ""), seconds[step], record))
    return rows, r.stderr


def check(rows, stderr: str, name: str, expected: str, smoke: bool) -> None:
    """Each command recorded the resolved device and said so at its start; on a GPU run, training used the GPU."""
    for step, dev, _, _, record in rows:
        if dev != expected:
            raise SystemExit(f"{name}: sidbench {step} recorded device {dev}, expected {expected} (--device auto)")
        if step == "distill" and not smoke and not record.get("cuda_max_mb"):
            raise SystemExit(f"{name}: the distill log shows no CUDA memory use: {record}")
    said = stderr.count(f"device {expected} (") + stderr.count(f"on {expected} (")  # generate, eval; distill's start
    if said != len(rows):
        raise SystemExit(f"{name}: {said} of {len(rows)} commands printed device {expected} at the start:\n"
                         f"{stderr[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if not args.smoke and not args.device.startswith("cuda"):
        raise SystemExit(f"no GPU: --device auto resolves to {args.device} here (use --smoke to check the path)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # each launch sets its own
    if args.smoke:
        env["OMP_NUM_THREADS"] = "1"
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inp = make_inputs(tmp)
        print(f"--device auto resolves to {args.device} here\n")
        print("| launch | command | device recorded | device name | seconds |\n|---|---|---|---|---|")
        for k, name in enumerate(LAUNCHES):
            rows, stderr = run_launch(name, inp, tmp / f"launch{k}", env)
            for step, dev, dev_name, dt, _ in rows:
                print(f"| {name} | sidbench {step} | {dev} | {dev_name} | {dt:.1f} |", flush=True)
            check(rows, stderr, name, args.device, args.smoke)
            cells.append(", ".join(f"{step} on {dev} {dt:.1f} s" for step, dev, _, dt, _ in rows))
    print()
    finish(args, argv, "gpu_default_device.py", SECTION, HEADER,
           "tiny SD; generate 4 images, eval FID+KID (Inception, random weights), distill 2 iterations; no --device",
           cells)


if __name__ == "__main__":
    main()
