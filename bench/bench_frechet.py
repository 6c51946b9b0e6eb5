"""Our Fréchet distance (symmetric eigen route) vs clean-fid's (scipy sqrtm) on 2048-d statistics.

Same inputs, same run; prints both times, the ratio and the relative difference.
Usage: python bench/bench_frechet.py [--dim 2048] [--repeats 3]
"""
import argparse
import time
import warnings

import numpy as np

import sidbench  # noqa: F401
from cleanfid.fid import frechet_distance as cleanfid_fd
from sidbench.eval.metrics.fid import frechet_distance


def statistics(dim, n, seed):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    x = np.maximum(rng.normal(size=(n, dim)) @ mix + rng.normal(size=dim) * 0.1, 0)  # ReLU-like, correlated
    return x.mean(0), np.cov(x, rowvar=False)


def best_time(fn, repeats):
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    m1, c1 = statistics(args.dim, args.n, 0)
    m2, c2 = statistics(args.dim, args.n, 1)
    warnings.simplefilter("ignore")
    t_ours, v_ours = best_time(lambda: frechet_distance(m1, c1, m2, c2), args.repeats)
    t_ref, v_ref = best_time(lambda: cleanfid_fd(m1, c1, m2, c2), args.repeats)
    rel = abs(v_ours - v_ref) / abs(v_ref)
    print(f"dim {args.dim}, N {args.n}, best of {args.repeats}")
    print(f"sidbench frechet_distance : {t_ours:8.3f} s   FD {v_ours:.10f}")
    print(f"clean-fid frechet_distance: {t_ref:8.3f} s   FD {v_ref:.10f}")
    print(f"speed-up {t_ref / t_ours:.2f}x   relative difference {rel:.2e}   "
          f"(goals: >= 3x, <= 1e-6) -> {'PASS' if t_ref / t_ours >= 3 and rel <= 1e-6 else 'MISS'}")


if __name__ == "__main__":
    main()
