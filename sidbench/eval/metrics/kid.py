"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, over random subsets.

Subsets are drawn exactly as clean-fid draws them (``choice(N, m, replace=False)``, the reference set
first, then the generated set, per subset), but from a seeded ``numpy.random.RandomState`` instead of
the unseeded global one; seeding numpy's global RNG with the same seed makes clean-fid agree. We also
report the standard deviation over subsets (ddof 0, as torch-fidelity).
"""
from __future__ import annotations

import numpy as np

from sidbench.core.errors import SidbenchError


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    m, d = x.shape
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    a = kxx + kyy
    return float(((a.sum() - np.diag(a).sum()) / (m - 1) - kxy.sum() * 2 / m) / m)


def kernel_inception_distance(gen_features: np.ndarray, ref_features: np.ndarray, *, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int = 0) -> dict:
    gen = np.asarray(gen_features, np.float64)
    ref = np.asarray(ref_features, np.float64)
    if gen.ndim != 2 or ref.ndim != 2 or gen.shape[1] != ref.shape[1]:
        raise SidbenchError(f"KID needs two feature matrices of equal width, got {gen.shape} and {ref.shape}")
    m = min(gen.shape[0], ref.shape[0], max_subset_size)
    if m < 2:
        raise SidbenchError(f"KID needs at least 2 images per side, got {gen.shape[0]} and {ref.shape[0]}")
    rng = np.random.RandomState(seed)
    values = np.empty(num_subsets, np.float64)
    for s in range(num_subsets):
        x = ref[rng.choice(ref.shape[0], m, replace=False)]
        y = gen[rng.choice(gen.shape[0], m, replace=False)]
        values[s] = _mmd2_unbiased(x, y)
    return {"mean": float(values.mean()), "std": float(values.std()), "num_subsets": num_subsets,
            "subset_size": m, "seed": seed,
            "sampling": "numpy RandomState(seed).choice without replacement, reference then generated (clean-fid order)"}
