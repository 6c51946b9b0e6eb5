"""CMMD (Jayasumana et al. 2024, "Rethinking FID"): MMD between CLIP image embeddings with a Gaussian kernel.

    CMMD = scale * (mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j)),
    k(a, b) = exp(-|a - b|^2 / (2 sigma^2)),   sigma = 10, scale = 1000,

on L2-normalised CLIP ViT-L/14@336 image embeddings, as the reference code (google-research cmmd, distance.py)
computes it: the means run over all pairs, the diagonal included, so this is the biased (V-statistic) MMD^2
estimator; identical sets give exactly 0 and it is never negative. Computed in float64, in row blocks (memory
block x n, not n x n), with |a - b|^2 expanded as |a|^2 + |b|^2 - 2 a.b as the reference does.
"""
from __future__ import annotations

import numpy as np

from sidbench.core.errors import SidbenchError

SIGMA, SCALE = 10.0, 1000.0
DEFINITION = ("1000 x squared MMD, Gaussian kernel sigma 10, between L2-normalised CLIP ViT-L/14@336px image "
              "embeddings (Jayasumana et al. 2024, google-research cmmd/distance.py)")


def _mean_kernel(x: np.ndarray, y: np.ndarray, gamma: float, block: int) -> float:
    xn, yn = (x * x).sum(1), (y * y).sum(1)
    total = 0.0
    for i in range(0, len(x), block):
        xb = x[i:i + block]
        d2 = xn[i:i + block, None] + yn[None, :] - 2 * xb @ y.T
        total += np.exp(-gamma * d2).sum()
    return total / (len(x) * len(y))


def cmmd(x, y, sigma: float = SIGMA, scale: float = SCALE, block: int = 2048) -> float:
    """CMMD between two sets of embeddings [n, d] and [m, d] (normalise them first, as the reference does)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise SidbenchError(f"CMMD needs two [n, d] embedding arrays of one width, got {x.shape} and {y.shape}")
    gamma = 1 / (2 * sigma ** 2)
    value = scale * (_mean_kernel(x, x, gamma, block) + _mean_kernel(y, y, gamma, block)
                     - 2 * _mean_kernel(x, y, gamma, block))
    return float(value)


def normalise(embeddings) -> np.ndarray:
    e = np.asarray(embeddings, np.float64)
    return e / np.linalg.norm(e, axis=1, keepdims=True)
