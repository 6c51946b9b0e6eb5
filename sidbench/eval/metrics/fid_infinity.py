"""FID-infinity (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to find them").

FID computed from N generated images is biased upward by a term that falls as 1/N (to first order). FID-infinity
computes FID_N on random subsets of the generated features at several N, fits FID_N = FID_inf + c / N by least
squares, and reports the intercept FID_inf: the FID an infinite sample would give, so numbers from 5K and 30K
images can be compared. The reference set's statistics are used whole. The subsets are nested prefixes of one
seeded shuffle (the reference code shuffles once per N; nesting lowers the variance of the fit and is said in
the results).
"""
from __future__ import annotations

import numpy as np

from sidbench.core.errors import SidbenchError
from sidbench.eval.metrics.fid import frechet_distance


def default_ns(n: int, points: int = 15, low: int = 5000) -> list[int]:
    """The reference's grid, linspace(5000, N, 15), scaled down to N / 10 .. N when N is small."""
    lo = min(low, max(2, n // 10))
    return sorted({int(v) for v in np.linspace(lo, n, points)})


def fid_infinity(gen_features, ref_mean, ref_cov, ns: list[int] | None = None, seed: int = 0) -> dict:
    x = np.asarray(gen_features, np.float64)
    n = len(x)
    ns = sorted(set(ns or default_ns(n)))
    if len(ns) < 2 or ns[0] < 2 or ns[-1] > n:
        raise SidbenchError(f"FID-infinity needs at least two subset sizes in 2..{n}, got {ns}")
    order = np.random.RandomState(seed).permutation(n)
    fids = []
    for m in ns:
        sub = x[order[:m]]
        fids.append(frechet_distance(sub.mean(0), np.cov(sub, rowvar=False), ref_mean, ref_cov))
    inv = 1 / np.asarray(ns, np.float64)
    slope, intercept = np.polyfit(inv, np.asarray(fids), 1)
    return {"value": float(intercept), "slope": float(slope), "ns": ns, "fids": [float(f) for f in fids],
            "seed": seed, "subsets": "nested prefixes of one seeded permutation",
            "fit": "least squares FID_N = FID_inf + slope / N"}
