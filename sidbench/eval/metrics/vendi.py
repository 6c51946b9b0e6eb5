"""Vendi score (Friedman & Dieng 2023): the effective number of distinct samples under a similarity kernel.

VS_q = exp(H_q(lambda)), lambda the eigenvalues of K / n for an n x n similarity matrix K with K_ii = 1;
H_1 is Shannon's entropy -sum lambda log lambda, H_q = log(sum lambda^q) / (1 - q), H_inf = -log max lambda.
With the cosine kernel on L2-normalised features, K = X X^T and K / n has the nonzero eigenvalues of
X^T X / n (d x d), so memory is bounded by the feature dimension, not n (the reference's ``score_dual``).
Known answers: n copies of one point -> 1; k equal, mutually orthogonal clusters -> k; cluster shares p -> e^H(p).
"""
from __future__ import annotations

import math

import numpy as np

from sidbench.core.errors import SidbenchError


def _entropy_exp(lam: np.ndarray, q: float) -> float:
    lam = lam[lam > 1e-12]
    lam = lam / lam.sum()  # the eigenvalues of K / n sum to tr(K) / n = 1; renormalise round-off
    if q == 1:
        return float(math.exp(-(lam * np.log(lam)).sum()))
    if math.isinf(q):
        return float(1 / lam.max())
    return float(math.exp(math.log((lam ** q).sum()) / (1 - q)))


def vendi_score(features, q: float = 1.0, normalise: bool = True) -> float:
    """Vendi score of [n, d] features with the cosine kernel (rows L2-normalised unless ``normalise=False``)."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 1:
        raise SidbenchError(f"Vendi score needs [n, d] features, got shape {x.shape}")
    if q < 0:
        raise SidbenchError(f"Vendi score order q must be >= 0, got {q}")
    if normalise:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise SidbenchError("Vendi score: a feature vector is all zeros (no direction to compare)")
        x = x / norms
    n, d = x.shape
    gram = x.T @ x / n if n > d else x @ x.T / n
    return _entropy_exp(np.linalg.eigvalsh((gram + gram.T) / 2), q)


def vendi_score_kernel(k, q: float = 1.0) -> float:
    """Vendi score from a given n x n similarity matrix with unit diagonal."""
    k = np.asarray(k, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or not np.allclose(np.diag(k), 1):
        raise SidbenchError("Vendi score needs a square similarity matrix with a unit diagonal")
    return _entropy_exp(np.linalg.eigvalsh((k + k.T) / 2 / len(k)), q)
