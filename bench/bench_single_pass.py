"""`sidbench eval --fid --clip --pr`: one pass over the images (this checkout) vs one pass per metric (an older commit).

BEFORE runs the command from the source of a git commit (default 4a83795, the last one that decoded every image
once per metric), exported with `git archive` (sidbench/ and distill/, which its CLI imports) into a temp folder;
AFTER runs the same command from this checkout's working tree (or, with --after COMMIT, from that commit's source).
Both are child processes of the same Python, one after the other, on the same folders (N generated + N reference
PNGs of 512 px, smooth seeded random images) and N prompts, with random-weight networks (FID Inception, VGG16 fc2,
open_clip ViT-B-32) and no reference cache. Each child checks that it imported both packages from the intended source
and counts its decodes at `sidbench.data.images.load_image_file`. Times are each child's wall time (start-up and
network builds included, the same for both). The four metrics must agree to 1e-6 relative.
Usage: python bench/bench_single_pass.py [--n 128] [--before 4a83795] [--after COMMIT] [--threads T]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_folder_fid import make_folder  # the same photo-like PNGs (bench/ is on sys.path as a script)

REPO = Path(__file__).resolve().parent.parent

# The child: import sidbench and distill (its CLI imports both) from $BENCH_SRC, asserted; count decodes;
# then run `python -m sidbench` with our argv.
CHILD = """
import atexit, os, runpy, sys
import distill, sidbench, sidbench.data.images as m
src = os.path.realpath(os.environ["BENCH_SRC"])
for pkg in (sidbench, distill):
    assert os.path.realpath(pkg.__file__).startswith(src + os.sep), f"{pkg.__name__} from {pkg.__file__}, not {src}"
calls, real = [], m.load_image_file
m.load_image_file = lambda path: (calls.append(path), real(path))[1]
atexit.register(lambda: open(os.environ["BENCH_COUNT"], "w").write(str(len(calls))))
sys.argv = ["sidbench", *sys.argv[1:]]
runpy.run_module("sidbench", run_name="__main__", alter_sys=True)
"""


def export(commit: str, dest: Path) -> Path:
    """sidbench/ and distill/ of ``commit`` under ``dest`` (plain files, no git)."""
    dest.mkdir()
    tar = subprocess.run(["git", "-C", str(REPO), "archive", commit, "sidbench", "distill"],
                         check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest


def run_eval(src: Path, args: list[str], tmp: Path, tag: str) -> tuple[float, int, dict]:
    """Wall time, decode count and results JSON of one `sidbench eval` child importing sidbench from ``src``."""
    out, count = tmp / f"{tag}.json", tmp / f"{tag}.decodes"
    env = dict(os.environ, PYTHONPATH=str(src), BENCH_SRC=str(src), BENCH_COUNT=str(count))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, "eval", *args, "--out", str(out)], env=env, cwd=tmp,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"{tag} failed (source {src}):\n{proc.stdout}{proc.stderr}")
    return wall, int(count.read_text()), json.loads(out.read_text())


def metric_values(res: dict) -> dict:
    m = res["metrics"]
    return {"FID": m["fid"]["value"], "CLIP": m["clip"]["value"],
            "precision": m["pr"]["precision"], "recall": m["pr"]["recall"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=128, help="generated images = reference images = prompts")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--before", default="4a83795", help="git commit whose eval decodes once per metric")
    ap.add_argument("--after", default=None, help="git commit for AFTER (default: this checkout's working tree)")
    ap.add_argument("--threads", type=int, default=None, help="passed to both as --threads (decode threads)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_folder(tmp / "gen", args.n, args.size, 0)
        make_folder(tmp / "ref", args.n, args.size, 1)
        (tmp / "prompts.txt").write_text("".join(f"a photo of thing number {i}\n" for i in range(args.n)))
        before_src = export(args.before, tmp / "before_src")
        after_src = export(args.after, tmp / "after_src") if args.after else REPO
        cmd = ["--fid", "--clip", "--pr", "--random-weights", "--clip-model", "ViT-B-32", "--no-cache",
               "--pre-resize", "256", "--prompts", str(tmp / "prompts.txt"), "--images", str(tmp / "gen"),
               "--ref", str(tmp / "ref"), "-q"] + (["--threads", str(args.threads)] if args.threads else [])
        t_before, d_before, r_before = run_eval(before_src, cmd, tmp, "before")
        t_after, d_after, r_after = run_eval(after_src, cmd, tmp, "after")
    v_before, v_after = metric_values(r_before), metric_values(r_after)
    worst = max(abs(v_after[k] - v_before[k]) / max(abs(v_before[k]), 1e-12) for k in v_before)
    print(f"{args.n}+{args.n} PNGs of {args.size} px, {args.n} prompts; sidbench eval --fid --clip --pr --pre-resize 256 "
          f"(random-weight FID Inception, VGG16 fc2, open_clip ViT-B-32); OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    for tag, t, d, v in ((f"before ({args.before})", t_before, d_before, v_before),
                         (f"after ({args.after or 'checkout'})", t_after, d_after, v_after)):
        print(f"{tag:>18}: {t:7.1f} s  {d:6d} decodes  " + "  ".join(f"{k} {x:.6f}" for k, x in v.items()))
    print(f"speed-up {t_before / t_after:.2f}x   decodes {d_before} -> {d_after}   worst relative metric difference "
          f"{worst:.1e} -> {'EQUAL' if worst <= 1e-6 else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
