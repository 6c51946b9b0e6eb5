"""Which of two results on the same prompts is better: a paired test on per-image scores.

``sidbench eval --per-sample FILE.csv`` (or ``FILE.parquet``) writes every image's scores (index, file, prompt, CLIP,
aesthetic). Two such files
made from the same prompt list pair image i with image i. The difference of means comes with a percentile
bootstrap interval (resampling prompts, so the pairing is kept) and a two-sided p-value from a paired
sign-flip permutation test (Monte Carlo, R seeded draws; p = (1 + #{|mean of flipped| >= |observed|}) / (1 + R)).
FID has no per-image value and is not compared here.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from sidbench.core.atomic import atomic_path
from sidbench.core.errors import SidbenchError

SCORES = ("clip", "aesthetic", "hps", "pickscore", "image_reward")  # per-image scores an eval pass produces


def write_per_sample(path: str | os.PathLike, indices: list[int], prompts: list[str] | None,
                     files: list[str] | None, scores: dict[str, dict[int, float]]) -> Path:
    """One row per image: index, file, prompt and each score (CSV, or Parquet for a .parquet path; atomically)."""
    path = Path(path)
    names = [k for k in SCORES if k in scores]
    if path.suffix == ".parquet":
        import pandas as pd

        table = pd.DataFrame({"index": indices, "file": [files[i] if files else "" for i in indices],
                              "prompt": [prompts[i] if prompts else "" for i in indices],
                              **{k: [float(scores[k][i]) for i in indices] for k in names}})
        with atomic_path(path, ".parquet") as tmp:
            table.to_parquet(tmp, index=False)
        return path
    with atomic_path(path, path.suffix or ".csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["index", "file", "prompt", *names])
            for i in indices:
                w.writerow([i, files[i] if files else "", prompts[i] if prompts else "",
                            *(repr(float(scores[k][i])) for k in names)])
    return path


def read_per_sample(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SidbenchError(f"per-sample file not found: {path} (write one with sidbench eval --per-sample FILE.csv)")
    if path.suffix == ".parquet":
        import pandas as pd

        try:
            rows = pd.read_parquet(path).to_dict("records")
        except (OSError, ValueError) as e:
            raise SidbenchError(f"{path}: not a readable Parquet file ({e})") from None
    else:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    if not rows or "index" not in rows[0]:
        raise SidbenchError(f"{path}: not a per-sample file (expected a CSV with columns index, file, prompt, ...)")
    return {"index": [int(r["index"]) for r in rows], "prompt": [r["prompt"] for r in rows],
            "file": [r.get("file") or "" for r in rows],
            "scores": {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k in SCORES}}


def paired_compare(a, b, *, metric: str = "clip", b_boot: int = 2000, r_perm: int = 10000, seed: int = 0,
                   level: float = 0.95) -> dict:
    """B minus A on the same images: mean difference, its bootstrap interval and the permutation p-value."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise SidbenchError(f"a paired comparison needs two equal-length lists of scores, got {a.shape} and {b.shape}")
    d = b - a
    obs = float(d.mean())
    rng = np.random.default_rng(seed)
    boots = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(b_boot)])
    lo, hi = np.percentile(boots, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    signs = rng.choice([-1.0, 1.0], size=(r_perm, len(d)))
    flipped = np.abs((signs * d).mean(1))
    p = (1 + int((flipped >= abs(obs) - 1e-15).sum())) / (1 + r_perm)
    return {"metric": metric, "n": len(d), "mean_a": float(a.mean()), "mean_b": float(b.mean()), "difference": obs,
            "interval": {"low": float(lo), "high": float(hi), "level": level, "replicates": b_boot},
            "p_value": p, "test": f"paired sign-flip permutation, {r_perm} draws, two-sided", "seed": seed}


def compare_files(path_a, path_b, **kw) -> list[dict]:
    """Every score two per-sample files share, compared pairwise (they must hold the same prompts in order)."""
    a, b = read_per_sample(path_a), read_per_sample(path_b)
    if a["index"] != b["index"] or a["prompt"] != b["prompt"]:
        raise SidbenchError(f"{path_a} and {path_b} are not on the same images' prompts (index {len(a['index'])} vs "
                            f"{len(b['index'])} rows, or other prompts): a paired test needs image i of both from "
                            f"prompt i")
    shared = [k for k in a["scores"] if k in b["scores"]]
    if not shared:
        raise SidbenchError(f"{path_a} and {path_b} share no per-image score")
    return [paired_compare(a["scores"][k], b["scores"][k], metric=k, **kw) for k in shared]
