"""Fréchet distance in float64 by the symmetric eigen route (no scipy ``sqrtm``).

tr((S1 S2)^{1/2}) = tr((A S2 A)^{1/2}) with A = S1^{1/2}: A S2 A is symmetric PSD, so two ``eigh`` calls
suffice, eigenvalues below zero (round-off) are clipped, and nothing can go complex or NaN.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from sidbench.core.errors import SidbenchError


def _sym_eig(m: np.ndarray, values_only: bool = False):
    # LAPACK's divide-and-conquer driver: the fastest symmetric solver on large matrices.
    if values_only:
        return scipy.linalg.eigh(m, eigvals_only=True, driver="evd", check_finite=False)
    return scipy.linalg.eigh(m, driver="evd", check_finite=False)


def sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = _sym_eig(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
    """tr((cov1 cov2)^{1/2}) for symmetric PSD cov1, cov2."""
    a = sqrtm_psd(cov1)
    m = a @ cov2 @ a
    w = _sym_eig((m + m.T) / 2, values_only=True)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}), all in float64."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise SidbenchError(f"Fréchet distance needs matching shapes, got mu {mu1.shape}/{mu2.shape} "
                            f"and cov {cov1.shape}/{cov2.shape}")
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("cov1", cov1), ("cov2", cov2)):
        if not np.isfinite(arr).all():
            raise SidbenchError(f"Fréchet distance: {name} holds NaN or infinite values")
    cov1, cov2 = (cov1 + cov1.T) / 2, (cov2 + cov2.T) / 2
    diff = mu1 - mu2
    value = diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt_product(cov1, cov2)
    return float(max(value, 0.0))
