"""Folder-to-folder FID: `sidbench eval` vs clean-fid's `compute_fid`, same folders, same extractor, same run.

The extractor is the FID Inception architecture with seeded random weights (no real weights offline;
the compute is the same). Reference caching is off for ours, so both do all the work.
Usage: python bench/bench_folder_fid.py [--n 256] [--size 512] [--workers 12]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import sidbench  # noqa: F401
from cleanfid import fid as cfid
from sidbench.eval.api import EvalConfig, evaluate
from sidbench.eval.extractors.registry import build_extractor


def make_folder(folder: Path, n: int, size: int, seed: int) -> None:
    """Photo-like PNGs: smooth colour fields plus texture, so decode and resize cost what real images cost."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        base = rng.integers(0, 256, size=(9, 9, 3)).astype(np.uint8)
        im = np.asarray(Image.fromarray(base).resize((size, size), Image.BICUBIC)).astype(np.int16)
        im = np.clip(im + rng.integers(-12, 13, im.shape), 0, 255).astype(np.uint8)
        Image.fromarray(im).save(folder / f"{i:06d}.png")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=12, help="clean-fid's num_workers (its default is 12)")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "gen", Path(tmp) / "ref"
        make_folder(a, args.n, args.size, 0)
        make_folder(b, args.n, args.size, 1)
        ours_ext = build_extractor("inception-v3-tf", mode="clean", random_weights=True)
        t = time.perf_counter()
        res = evaluate(str(a), str(b), EvalConfig(use_cache=False, batch_size=args.batch, progress=False),
                       extractor=ours_ext)
        t_ours = time.perf_counter() - t
        ref_ext = build_extractor("inception-v3-tf", mode="clean", random_weights=True)
        t = time.perf_counter()
        v_ref = cfid.compute_fid(str(a), str(b), mode="clean", custom_feat_extractor=ref_ext, device=torch.device("cpu"),
                                 num_workers=args.workers, batch_size=args.batch, verbose=False)
        t_ref = time.perf_counter() - t
    v_ours = res["metrics"]["fid"]["value"]
    print(f"{args.n}+{args.n} PNGs of {args.size}px, FID Inception architecture (random weights), "
          f"torch threads {torch.get_num_threads()}")
    print(f"sidbench eval        : {t_ours:7.1f} s  ({2 * args.n / t_ours:5.1f} img/s)  FID {v_ours:.6f}")
    print(f"clean-fid compute_fid: {t_ref:7.1f} s  ({2 * args.n / t_ref:5.1f} img/s)  FID {v_ref:.6f}  "
          f"(num_workers={args.workers})")
    print(f"speed-up {t_ref / t_ours:.2f}x   |FID difference| {abs(v_ours - v_ref):.2e}   "
          f"(goals: >= 1.5x, <= 1e-3) -> {'PASS' if t_ref / t_ours >= 1.5 and abs(v_ours - v_ref) <= 1e-3 else 'MISS'}")


if __name__ == "__main__":
    main()
