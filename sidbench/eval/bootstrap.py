"""Bootstrap confidence intervals: resample the images (with replacement), recompute, B seeded replicates.

A mean (CLIP, preference scores): the percentile interval. FD: each replicate reweights the per-image features by
multinomial counts (chunked weighted sums: d x d memory, not a copy of the features). FD is biased upward at
finite N (~ d(d+1)/4N for Gaussian features), and a replicate, which repeats images, sits about one such bias
above the estimate; a percentile interval is then shifted up by the bias and, measured here (16-d Gaussian
features, N = 300, 60 data sets), covered the true FD 0 times in 60. The FD interval is therefore the basic
(reverse-percentile) one, [2 FD - q_hi, 2 FD - q_lo], an interval for the population FD (the same simulation:
59 of 60 covered), with the bootstrap bias estimate beside it. ``std`` (all metrics) is the sampling spread of the
number itself at this N: what a rerun on fresh images would scatter by; reports print value ± z std.
CMMD: the same basic interval (its V-statistic counts each image's k(x, x) = 1 once per 1/n^2, a replicate about
twice), all B replicates from one blockwise pass over the kernel (memory block x n + n x B, never n x n).
"""
from __future__ import annotations

import numpy as np

from sidbench.core.errors import SidbenchError
from sidbench.eval.metrics.fid import frechet_distance


def _interval(reps: np.ndarray, estimate: float, level: float, b: int, seed: int, basic: bool = False) -> dict:
    lo, hi = np.percentile(reps, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    if basic:  # FD and MMD^2 are never negative: the interval is cut at 0 (its coverage is unchanged)
        lo, hi = max(2 * estimate - hi, 0.0), 2 * estimate - lo
    return {"low": float(lo), "high": float(hi), "std": float(reps.std(ddof=1)), "estimate": float(estimate),
            "bias": float(reps.mean() - estimate), "level": level, "replicates": b, "seed": seed,
            "method": ("basic (reverse-percentile) bootstrap over images: an interval for the population value"
                       if basic else "percentile bootstrap over images")}


def spread(ci: dict) -> float:
    """z_level x std: the ± a report prints (the number's sampling spread at its N)."""
    from scipy.stats import norm

    return float(norm.ppf((1 + ci["level"]) / 2) * ci["std"])


def _check(b: int, level: float) -> None:
    if b < 2:
        raise SidbenchError(f"a bootstrap needs at least 2 replicates, got {b}")
    if not 0 < level < 1:
        raise SidbenchError(f"a confidence level is in (0, 1), got {level}")


def bootstrap_mean(values, b: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Interval for the mean of per-image values (a CLIP score, a preference score)."""
    _check(b, level)
    v = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    reps = np.array([v[rng.integers(0, len(v), len(v))].mean() for _ in range(b)])
    return _interval(reps, float(v.mean()), level, b, seed)


def weighted_moments(x: np.ndarray, w: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of the rows of x repeated w times (sum w = N), in chunks of rows."""
    n = float(w.sum())
    mean = (w @ x) / n
    s = np.zeros((x.shape[1], x.shape[1]))
    for i in range(0, len(x), chunk):
        xc, wc = x[i:i + chunk], w[i:i + chunk]
        s += (xc * wc[:, None]).T @ xc
    cov = (s - n * np.outer(mean, mean)) / (n - 1)
    return mean, cov


def bootstrap_fd(gen_features, ref_mean, ref_cov, b: int = 100, seed: int = 0, level: float = 0.95) -> dict:
    """Interval for FD between the generated images (resampled) and the reference's fixed statistics."""
    _check(b, level)
    x = np.asarray(gen_features, np.float64)
    n = len(x)
    rng = np.random.default_rng(seed)
    est = frechet_distance(x.mean(0), np.cov(x, rowvar=False), ref_mean, ref_cov)
    reps = []
    for _ in range(b):
        w = rng.multinomial(n, np.full(n, 1 / n)).astype(np.float64)
        m, c = weighted_moments(x, w)
        reps.append(frechet_distance(m, c, ref_mean, ref_cov))
    return _interval(np.asarray(reps), est, level, b, seed, basic=True)


def bootstrap_cmmd(gen_embeddings, ref_embeddings, b: int = 100, seed: int = 0, level: float = 0.95,
                   sigma: float | None = None, scale: float | None = None, block: int = 2048) -> dict:
    """Interval for CMMD with the generated images resampled and the reference set fixed, as for FD. Replicate r
    with multinomial counts w_r: scale (w_r' Kxx w_r / n^2 + mean Kyy - 2 w_r' mean_j Kxy / n)."""
    from sidbench.eval.metrics import cmmd as C

    _check(b, level)
    sigma = C.SIGMA if sigma is None else sigma
    scale = C.SCALE if scale is None else scale
    x, y = np.asarray(gen_embeddings, np.float64), np.asarray(ref_embeddings, np.float64)
    n, gamma = len(x), 1 / (2 * sigma ** 2)
    rng = np.random.default_rng(seed)
    w = np.stack([rng.multinomial(n, np.full(n, 1 / n)) for _ in range(b)], 1).astype(np.float64)  # n x B
    xn, yn = (x * x).sum(1), (y * y).sum(1)
    quad, cross = np.zeros(b), np.zeros(n)
    for i in range(0, n, block):
        k = np.exp(-gamma * (xn[i:i + block, None] + xn[None, :] - 2 * x[i:i + block] @ x.T))
        quad += (w[i:i + block] * (k @ w)).sum(0)
        cross[i:i + block] = np.exp(-gamma * (xn[i:i + block, None] + yn[None, :] - 2 * x[i:i + block] @ y.T)).mean(1)
    kyy = C._mean_kernel(y, y, gamma, block)
    reps = scale * (quad / n ** 2 + kyy - 2 * (cross @ w) / n)
    est = C.cmmd(x, y, sigma, scale, block)
    return _interval(reps, est, level, b, seed, basic=True)
