"""Precision/recall on N x N random 4096-d float32 features: ours (row/column tiles) vs torch-fidelity's.

Each implementation runs in its own subprocess, so that each peak resident memory (ru_maxrss) is its own;
every subprocess draws the same seeded features itself (in chunks, so drawing them costs no extra peak).
Reported per run: wall time of the metric alone, peak RSS of the process, and the baseline RSS before the
metric (interpreter + torch + the two feature matrices: 2 x N x 4096 x 4 bytes = 983 MB at N = 30K), so
peak - baseline is the metric's own working memory.

torch-fidelity's default path (``prc_features_to_metric``, save_cpu_ram=False) holds three full N x N
float32 distance matrices (3 x 3.6 GB at 30K) and takes about as long as ours, so by default it runs at
--tf-n (10K); ours runs at --n and at --tf-n, and the two are compared (time, memory, equal counts) at --tf-n.

Usage: python bench/bench_prdc.py [--n 30000] [--tf-n 10000] [--dim 4096] [--tf-mode full|part]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

import sidbench  # noqa: F401  (torchvision guard before torch_fidelity)


def features(n, dim, seed, scale=1.0, shift=0.0, rank=64, chunk=2048):
    """ReLU of a shared random rank-64 map of Gaussian latents, plus noise: non-negative, correlated, like
    fc2_relu features. ``seed`` draws the latents and the noise; ``scale``/``shift`` move the latents."""
    w = torch.randn(rank, dim, generator=torch.Generator().manual_seed(12345)) / rank ** 0.5
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(n, dim)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        z = torch.randn(e - s, rank, generator=g) * scale + shift
        out[s:e] = torch.relu(z @ w + 0.3 * torch.randn(e - s, dim, generator=g))
    return out


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(impl, n, dim, tf_mode, row_block, col_block):
    torch.set_num_threads(os.cpu_count() or 1)
    real = features(n, dim, 0)
    gen = features(n, dim, 1, scale=0.9, shift=0.2)          # a narrower, shifted generator
    base = rss_mb()
    t = time.perf_counter()
    if impl == "ours":
        from sidbench.eval.metrics.prdc import precision_recall
        r = precision_recall(real, gen, row_block=row_block, col_block=col_block)
        extra = {"exact_rechecks": r["exact_rechecks"], "radius_fallback_rows": r["radius_fallback_rows"]}
    else:
        from torch_fidelity.metric_prc import prc_features_to_metric
        # torch-fidelity 0.4.0: features_1 = generated, features_2 = real (its orientation is correct).
        r = prc_features_to_metric(gen, real, prc_neighborhood=3, prc_batch_size=10000,
                                   save_cpu_ram=(tf_mode == "part"), verbose=False)
        extra = {}
    wall = time.perf_counter() - t
    print(json.dumps({"impl": impl, "n": n, "wall_s": wall, "peak_mb": rss_mb(), "base_mb": base,
                      "precision_count": round(r["precision"] * n), "recall_count": round(r["recall"] * n),
                      "precision": r["precision"], "recall": r["recall"], **extra}))


def run(impl, n, args):
    cmd = [sys.executable, __file__, "--worker", impl, "--n", str(n), "--dim", str(args.dim),
           "--tf-mode", args.tf_mode, "--row-block", str(args.row_block), "--col-block", str(args.col_block)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"impl": impl, "n": n, "error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def show(label, r):
    if "error" in r:
        print(f"{label:34s} N={r['n']:6d}  FAILED: {r['error']}")
        return
    print(f"{label:34s} N={r['n']:6d}  {r['wall_s']:8.1f} s   peak RSS {r['peak_mb']:7.0f} MB "
          f"(baseline {r['base_mb']:5.0f} MB, metric +{r['peak_mb'] - r['base_mb']:5.0f} MB)   "
          f"precision {r['precision']:.6f} recall {r['recall']:.6f}"
          + (f"   rechecks {r['exact_rechecks']}" if "exact_rechecks" in r else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30000)
    ap.add_argument("--tf-n", type=int, default=10000, help="N for torch-fidelity (and ours, to compare)")
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--tf-mode", choices=("full", "part"), default="full",
                    help="torch-fidelity save_cpu_ram=False (full, its default) or True (part)")
    ap.add_argument("--row-block", type=int, default=512)
    ap.add_argument("--col-block", type=int, default=2048)
    ap.add_argument("--skip-tf", action="store_true")
    ap.add_argument("--worker", choices=("ours", "tf"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.n, args.dim, args.tf_mode, args.row_block, args.col_block)

    tf_n = min(args.tf_n, args.n)
    print(f"random {args.dim}-d float32 features, k=3, {os.cpu_count()} CPU threads, torch {torch.__version__}")
    runs = {}
    if not args.skip_tf:
        runs["ours@tf"] = run("ours", tf_n, args)
        show("sidbench precision_recall", runs["ours@tf"])
        runs["tf"] = run("tf", tf_n, args)
        show(f"torch-fidelity ({args.tf_mode})", runs["tf"])
        a, b = runs["ours@tf"], runs["tf"]
        if "error" not in a and "error" not in b:
            same = (a["precision_count"], a["recall_count"]) == (b["precision_count"], b["recall_count"])
            print(f"at N={tf_n}: speed-up {b['wall_s'] / a['wall_s']:.2f}x, peak RSS ratio (tf / ours) "
                  f"{b['peak_mb'] / a['peak_mb']:.2f}x, metric memory ratio "
                  f"{(b['peak_mb'] - b['base_mb']) / max(1.0, a['peak_mb'] - a['base_mb']):.1f}x, "
                  f"counts {'equal' if same else 'DIFFER'}")
    if args.n != tf_n or args.skip_tf:
        runs["ours"] = run("ours", args.n, args)
        show("sidbench precision_recall", runs["ours"])
        if args.n != tf_n and not args.skip_tf:
            print(f"torch-fidelity not run at N={args.n}: its default path holds three {args.n}x{args.n} float32 "
                  f"distance matrices ({3 * args.n ** 2 * 4 / 2 ** 30:.1f} GiB); compared at N={tf_n} instead")
    ours = runs.get("ours") or runs.get("ours@tf")
    if ours and "error" not in ours:
        print(f"goal: ours at most 1.5 GB peak RSS at N={ours['n']} -> "
              f"{'PASS' if ours['peak_mb'] <= 1536 else 'MISS'} ({ours['peak_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
