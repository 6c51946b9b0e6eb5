"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020), in bounded memory.

Definitions (NVIDIA ``pr50k3`` semantics, k = 3 by default):

- a sample's radius is the Euclidean distance to its k-th nearest neighbour within its own set, itself
  excluded (duplicates of it are ordinary neighbours at distance 0);
- a point is inside a manifold if its distance to some member is <= that member's radius;
- precision = share of generated samples inside the real manifold, recall = share of real samples inside
  the generated manifold (so swapping the two inputs swaps the two numbers);
- density = sum_j #{i : d(gen_j, real_i) <= r_i} / (k M) and coverage = share of real samples whose nearest
  generated sample lies within their radius (Naeem et al.; their reference code compares with a strict
  ``<``, we use ``<=`` like precision/recall: the two differ only on exact ties).

How it is computed. The N x N distance matrix is never formed (30K x 30K is 3.6 GB in float32). Distances
come in [row_block, col_block] tiles from ``|a|^2 + |b|^2 - 2 a.b`` (one matrix product per tile) on
centred data -- each set on its own mean for its radii, both on the mean of the union for the cross
distances -- which removes the common offset that makes that formula lose digits (and keeps a collapsed,
tight generated set precise). Only per-row state survives a tile: a running top-(k + 16) candidate list
per row for the radii, and per-row / per-column "inside" flags and counts for the membership tests. The
radii passes use only the tiles on and below the block diagonal (a distance serves both of its rows), so
the whole computation costs about (N^2 + M^2) / 2 + N M products of length d.

Round-off never decides anything. Every tile distance carries a rigorous error bound
(``(d + 32) u (|a|^2 + |b|^2)``, u the unit round-off of the compute dtype). Decisions the bound cannot
settle -- and every radius -- are recomputed exactly as ``sum((a - b)^2)`` in float64 from the input rows:
the k-th neighbour is taken among the candidates' exact distances, and a row whose candidate list cannot
provably contain its k nearest neighbours (near-duplicates, ties) gets all its possible neighbours
rechecked. The float32 and float64 paths therefore give the same answer as a brute-force float64
computation, including for data full of exact ties (integer lattices, duplicated images), and the
self-distance can never leak into a radius (self is masked by index, not by value).

Memory: the inputs as given (kept in their own dtype, never copied whole), one centred column tile, a few
[row_block, col_block] temporaries and O(N k) state. With the defaults that is about 50-100 MB over the
features themselves for 30K x 30K x 4096 (see bench/bench_prdc.py).
"""
from __future__ import annotations

import numpy as np
import torch

from sidbench.core.errors import SidbenchError

DEFINITION = ("k-NN manifolds (Kynkaenniemi et al. 2019, NVIDIA pr50k3): radius = Euclidean distance to the k-th "
              "nearest neighbour within its own set, self excluded; a point is inside a manifold if its distance "
              "to some member is <= that member's radius; precision = share of generated samples inside the real "
              "manifold, recall = share of real samples inside the generated manifold")
DC_DEFINITION = ("density = sum_j #{i: d(gen_j, real_i) <= r_i} / (k M), coverage = share of real samples with a "
                 "generated sample within their radius (Naeem et al. 2020, with <=)")

EXTRA_CANDIDATES = 16          # candidates kept per row beyond k, so that ties rarely force a full recheck
# Scratch sizes for the row-by-row passes: small enough to be reused from the heap (and to stay in cache);
# tens of MB per temporary would be fresh pages -- page faults -- on every chunk, 10x slower on CPU.
_RECHECK_BYTES = 1 << 20       # float64 scratch per chunk of exact recomputation
_CENTRE_BYTES = 2 << 20        # float64 scratch per chunk when centring or scanning rows


# --------------------------------------------------------------------------------------------------
# input handling
def _as_tensor(x, name: str) -> torch.Tensor:
    if torch.is_tensor(x):
        t = x.detach()
    else:
        try:
            a = np.asarray(x)
            if a.dtype.kind not in "fiu" or a.dtype == np.float16:
                a = a.astype(np.float32)
            t = torch.from_numpy(np.ascontiguousarray(a))
        except (TypeError, ValueError) as e:
            raise SidbenchError(f"{name}: expected a 2-d array of numbers, got {type(x).__name__} ({e})") from None
    if t.dtype == torch.bool or t.is_complex():
        raise SidbenchError(f"{name}: features must be real numbers, got dtype {t.dtype}")
    return t


def _check(x: torch.Tensor, name: str, k: int) -> float:
    """Validate one feature matrix; return its largest absolute value."""
    if x.ndim != 2:
        raise SidbenchError(f"{name}: features must be a 2-d array [samples, dim], got shape {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise SidbenchError(f"{name}: features have zero width")
    if x.shape[0] < k + 1:
        raise SidbenchError(f"{name}: precision/recall with k={k} needs at least {k + 1} samples per set "
                            f"(the k-th neighbour excludes the sample itself), got {x.shape[0]}")
    biggest = 0.0
    step = _row_chunk(x.shape[1])
    for s in range(0, x.shape[0], step):
        block = x[s:s + step]
        top = float(block.abs().amax())                    # NaN and inf propagate into the maximum
        if not np.isfinite(top):
            bad = s + int((~torch.isfinite(block)).any(1).nonzero()[0, 0])
            raise SidbenchError(f"{name}: features contain NaN or infinite values (first at row {bad})")
        biggest = max(biggest, top)
    return biggest


# --------------------------------------------------------------------------------------------------
# numerical helpers
def _row_chunk(d: int, bytes_: int = _CENTRE_BYTES) -> int:
    return max(1, bytes_ // (8 * d))


def _centred(x: torch.Tensor, i0: int, i1: int, mu: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Rows i0:i1 minus the centre, rounded once to ``dtype`` (the tiles' rows, and the rows their norms use).

    Input already in ``dtype``: one subtraction of the centre rounded to ``dtype`` (any centre will do, and the
    difference of two ``dtype`` numbers is rounded once). Otherwise the subtraction runs in float64.
    """
    if x.dtype == dtype:
        return x[i0:i1].to(mu.device) - mu.to(dtype)
    out = torch.empty((i1 - i0, x.shape[1]), dtype=dtype, device=mu.device)
    step = _row_chunk(x.shape[1])
    for s in range(i0, i1, step):
        e = min(i1, s + step)
        out[s - i0:e - i0].copy_(x[s:e].to(mu.device, torch.float64) - mu)
    return out


def _sq_norms(x: torch.Tensor, mu: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """float64 squared norms of the centred rows exactly as they enter the tiles."""
    out = torch.empty(x.shape[0], dtype=torch.float64, device=mu.device)
    step = _row_chunk(x.shape[1])
    for s in range(0, x.shape[0], step):
        e = min(x.shape[0], s + step)
        out[s:e] = _centred(x, s, e, mu, dtype).to(torch.float64).square_().sum(1)
    return out


def _exact_sq(a: torch.Tensor, ia: torch.Tensor, b: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
    """float64 ``sum((a[ia] - b[ib])^2)`` pair by pair, straight from the input rows, in bounded chunks."""
    out = torch.empty(ia.shape[0], dtype=torch.float64, device=ia.device)
    step = _row_chunk(a.shape[1], _RECHECK_BYTES if ia.device.type == "cpu" else 64 * _RECHECK_BYTES)
    for s in range(0, ia.shape[0], step):
        e = min(ia.shape[0], s + step)
        diff = a.index_select(0, ia[s:e]).to(torch.float64)
        diff.sub_(b.index_select(0, ib[s:e]))             # promoted: the subtraction runs in float64
        out[s:e] = torch.linalg.vecdot(diff, diff)
    return out


class _Tiles:
    """Approximate squared distances between rows of ``a`` and ``b`` tile by tile, with error bounds.

    Each tile value ``|a|^2 + |b|^2 - 2 a.b`` (centred rows, ``dtype`` arithmetic) is within
    ``E = g (|a|^2 + |b|^2)`` of the exact squared distance, g = (d + 32) u: the d u part is the textbook
    bound on a length-d dot product, the rest covers the rounding of the centred rows, of the norms and of
    the additions (including forming D - E and D + E).

    ``symmetric=True`` (``a`` is ``b``): only the tiles on or below the block diagonal -- rows from the
    column block's first row on, row tiles cut at the block's end -- so each pair of distinct rows in
    different column blocks comes once (the caller uses it for both rows), pairs within a block twice.
    """

    def __init__(self, a, na, b, nb, mu, dtype, row_block, col_block, symmetric=False):
        self.a, self.b, self.mu, self.dtype = a, b, mu, dtype
        self.row_block, self.col_block, self.symmetric = row_block, col_block, symmetric
        self.u = 2.0 ** -53 if dtype == torch.float64 else 2.0 ** -24
        self.g = (a.shape[1] + 32) * self.u
        self.na, self.nb = na.to(dtype), nb.to(dtype)

    def __iter__(self):
        """Yields (i0, i1, j0, j1, D, E): D the approximate squared distances, E their error bound."""
        n_a, n_b = self.a.shape[0], self.b.shape[0]
        for j0 in range(0, n_b, self.col_block):
            j1 = min(n_b, j0 + self.col_block)
            bt = _centred(self.b, j0, j1, self.mu, self.dtype).T
            nb = self.nb[j0:j1]
            i0 = j0 if self.symmetric else 0
            while i0 < n_a:
                i1 = min(n_a, i0 + self.row_block)
                if self.symmetric and i0 < j1:
                    i1 = min(i1, j1)
                at = _centred(self.a, i0, i1, self.mu, self.dtype)
                s = self.na[i0:i1, None] + nb[None, :]
                d = torch.addmm(s, at, bt, beta=1, alpha=-2)
                yield i0, i1, j0, j1, d, s.mul_(self.g)
                i0 = i1


def _mean(x: torch.Tensor, dev: torch.device) -> torch.Tensor:
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=dev)
    step = _row_chunk(x.shape[1])
    for s in range(0, x.shape[0], step):
        total += x[s:s + step].to(dev, torch.float64).sum(0)
    return total / x.shape[0]


def _radii_sq(x, dtype, k, row_block, col_block, dev) -> tuple[torch.Tensor, int, int]:
    """Exact float64 squared k-NN radii of the rows of x (self excluded). Returns (r2, fallback rows, rechecks).

    Within one set the tiles are centred on that set's own mean, so that a tight (collapsed) set keeps small
    norms and hence small error bounds.
    """
    n = x.shape[0]
    mu = _mean(x, dev)
    nx = _sq_norms(x, mu, dtype)
    kc = min(k + EXTRA_CANDIDATES, n - 1)
    vals = torch.full((n, kc), float("inf"), dtype=dtype, device=dev)     # lower bounds, ascending
    ups = torch.full((n, kc), float("inf"), dtype=dtype, device=dev)      # the same candidates' upper bounds
    idx = torch.zeros((n, kc), dtype=torch.long, device=dev)

    def merge(rows, t_val, t_up, t_idx):
        mv, mi = torch.cat([vals[rows], t_val], 1).topk(kc, dim=1, largest=False)
        ups[rows] = torch.cat([ups[rows], t_up], 1).gather(1, mi)
        idx[rows] = torch.cat([idx[rows], t_idx], 1).gather(1, mi)
        vals[rows] = mv

    for i0, i1, j0, j1, d, e in _Tiles(x, nx, x, nx, mu, dtype, row_block, col_block, symmetric=True):
        up = d + e
        low = d.sub_(e)                                                   # lower bound on each distance
        if i0 < j1:                                                       # diagonal block: self masked by index
            r = torch.arange(i0, i1, device=dev)
            low[r - i0, r - j0] = float("inf")
        else:                                                             # below it: the columns' lists too
            t_val, t_idx = low.topk(min(kc, i1 - i0), dim=0, largest=False)
            merge(slice(j0, j1), t_val.T, up.gather(0, t_idx).T, t_idx.T + i0)
        t_val, t_idx = low.topk(min(kc, j1 - j0), dim=1, largest=False)
        merge(slice(i0, i1), t_val, up.gather(1, t_idx), t_idx + j0)
        del up, low

    # The k-th smallest upper bound is >= the true radius, so only candidates whose lower bound is below it
    # can be among the k nearest: only those (usually about k per row) are recomputed exactly.
    need = vals <= ups.kthvalue(k, dim=1, keepdim=True).values
    rows, cols = need.nonzero(as_tuple=True)
    exact = torch.full((n, kc), float("inf"), dtype=torch.float64, device=dev)
    exact[rows, cols] = _exact_sq(x, rows, x, idx[rows, cols])
    r2 = exact.kthvalue(k, dim=1).values
    rechecks = int(rows.numel())
    # Every point outside the candidate list has a lower bound >= the largest kept lower bound; if that is
    # >= the candidates' k-th exact distance, the k nearest neighbours are provably among the candidates.
    if kc == n - 1:
        return r2, 0, rechecks
    # A radius of exactly 0 (k duplicates among the candidates) needs no proof: distances are >= 0.
    bad = ((vals[:, -1].to(torch.float64) < r2) & (r2 > 0)).nonzero().flatten()
    batch = max(row_block, (64 << 20) // (x.shape[1] * x.element_size()))   # bounded copies of those rows
    for s in range(0, bad.numel(), batch):
        rows = bad[s:s + batch]
        r2[rows], extra = _radii_full(x, nx, mu, dtype, k, rows, r2[rows], row_block, col_block)
        rechecks += extra
    return r2, int(bad.numel()), rechecks


def _radii_full(x, nx, mu, dtype, k, rows, bound, row_block, col_block) -> tuple[torch.Tensor, int]:
    """Exact radii of some rows by rechecking every point whose lower bound is <= ``bound`` (>= the radius)."""
    dev = mu.device
    sub = x[rows.to(x.device)]                               # the few rows in question, as given
    best = torch.full((rows.numel(), k), float("inf"), dtype=torch.float64, device=dev)
    tiles = _Tiles(sub, nx[rows], x, nx, mu, dtype, row_block, col_block)
    rechecks = 0
    for i0, i1, j0, j1, d, e in tiles:
        cand = d.sub_(e) <= bound[i0:i1, None].to(dtype) * (1 + 4 * tiles.u)
        own = rows[i0:i1, None] - j0                         # self, masked by index
        inside = (own >= 0) & (own < j1 - j0)
        cand[inside.nonzero()[:, 0], own[inside]] = False
        pi, pj = cand.nonzero(as_tuple=True)
        if pi.numel() == 0:
            continue
        rechecks += pi.numel()
        full = torch.full(d.shape, float("inf"), dtype=torch.float64, device=dev)
        full[pi, pj] = _exact_sq(sub, pi + i0, x, pj + j0)
        t = full.topk(min(k, j1 - j0), dim=1, largest=False).values
        best[i0:i1] = torch.cat([best[i0:i1], t], 1).topk(k, dim=1, largest=False).values
    return best[:, k - 1], rechecks


# --------------------------------------------------------------------------------------------------
def precision_recall(real_features, gen_features, *, k: int = 3, row_block: int = 512, col_block: int = 2048,
                     density_coverage: bool = False, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> dict:
    """Improved precision and recall of generated features against real ones (and optionally density/coverage).

    ``real_features`` [N, d] and ``gen_features`` [M, d]: numpy arrays or tensors (kept in their dtype; blocks
    are converted as they are used). ``row_block`` x ``col_block`` is the tile size; ``dtype`` the tile
    arithmetic (float32 or float64: same answer, see the module docstring); float32 products run at
    ``torch.set_float32_matmul_precision("highest")`` for the duration (TF32 would void the error bounds).
    ``device``: where the tiles are computed (the inputs are moved there once when it is not the CPU).

    Returns a dict with precision, recall, (density, coverage), k, n_real, n_gen, definition, and for
    diagnosis exact_rechecks (pairs recomputed in float64), radius_fallback_rows and tile_dtype.
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise SidbenchError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    for nm, v in (("row_block", row_block), ("col_block", col_block)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise SidbenchError(f"{nm} must be a positive integer, got {v!r}")
    if dtype not in (torch.float32, torch.float64):
        raise SidbenchError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    real = _as_tensor(real_features, "real features")
    gen = _as_tensor(gen_features, "generated features")
    biggest = max(_check(real, "real features", k), _check(gen, "generated features", k))
    if real.shape[1] != gen.shape[1]:
        raise SidbenchError(f"real and generated features differ in width: {real.shape[1]} vs {gen.shape[1]} "
                            "(were they made by the same extractor?)")
    dev = torch.device(device)
    if dev.type != "cpu":                                   # one transfer, not one per tile
        real, gen = real.to(dev), gen.to(dev)
    n, m, d = real.shape[0], gen.shape[0], real.shape[1]
    if dtype == torch.float32 and 4.0 * biggest ** 2 * d > 1e30:
        dtype = torch.float64                               # squared distances could overflow float32

    prev_precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")           # TF32/bf16 products would void the error bounds
    try:
        with torch.no_grad():
            r2_real, fb_real, rc_real = _radii_sq(real, dtype, k, row_block, col_block, dev)
            r2_gen, fb_gen, rc_gen = _radii_sq(gen, dtype, k, row_block, col_block, dev)
            mu = (_mean(real, dev) * n + _mean(gen, dev) * m) / (n + m)    # cross distances: the union's mean
            n_real = _sq_norms(real, mu, dtype)
            n_gen = _sq_norms(gen, mu, dtype)
            out = _membership(real, n_real, r2_real, gen, n_gen, r2_gen, mu, dtype, row_block, col_block,
                              density_coverage)
    finally:
        torch.set_float32_matmul_precision(prev_precision)

    result = {"precision": out["precision_count"] / m, "recall": out["recall_count"] / n}
    if density_coverage:
        result["density"] = out["density_count"] / (k * m)
        result["coverage"] = out["coverage_count"] / n
    result.update({
        "k": k, "n_real": n, "n_gen": m,
        "definition": DEFINITION + ("; " + DC_DEFINITION if density_coverage else ""),
        "exact_rechecks": rc_real + rc_gen + out["rechecks"],
        "radius_fallback_rows": fb_real + fb_gen,
        "tile_dtype": str(dtype).replace("torch.", ""),
    })
    return result


def _membership(real, n_real, r2_real, gen, n_gen, r2_gen, mu, dtype, row_block, col_block, want_density):
    """One pass over real x gen tiles for precision, recall, density and coverage."""
    dev = mu.device
    tiles = _Tiles(real, n_real, gen, n_gen, mu, dtype, row_block, col_block)
    u = tiles.u
    # Thresholds rounded outward to dtype, so that "sure" decisions stay sure after the rounding.
    rin_lo, rin_hi = (r2_real * (1 - 4 * u)).to(dtype), (r2_real * (1 + 4 * u)).to(dtype)
    gin_lo, gin_hi = (r2_gen * (1 - 4 * u)).to(dtype), (r2_gen * (1 + 4 * u)).to(dtype)
    recall_in = torch.zeros(real.shape[0], dtype=torch.bool, device=dev)     # real i inside gen manifold
    covered = torch.zeros(real.shape[0], dtype=torch.bool, device=dev)       # real i has a gen within r_i
    precision_in = torch.zeros(gen.shape[0], dtype=torch.bool, device=dev)   # gen j inside real manifold
    density = torch.zeros(gen.shape[0], dtype=torch.long, device=dev)        # #{i : d(gen j, real i) <= r_i}
    rechecks = 0
    for i0, i1, j0, j1, d, e in tiles:
        hi = d + e
        lo = d.sub_(e)
        # I: d(real i, gen j) <= r_real[i]  (precision, density, coverage)
        i_sure = hi <= rin_lo[i0:i1, None]
        i_maybe = (lo <= rin_hi[i0:i1, None]) & ~i_sure
        # J: d(real i, gen j) <= r_gen[j]   (recall)
        j_sure = hi <= gin_lo[None, j0:j1]
        j_maybe = (lo <= gin_hi[None, j0:j1]) & ~j_sure
        del hi, lo
        recall_in[i0:i1] |= j_sure.any(1)
        covered[i0:i1] |= i_sure.any(1)
        precision_in[j0:j1] |= i_sure.any(0)
        if want_density:
            density[j0:j1] += i_sure.sum(0)
        else:                                   # undecided pairs matter only where nothing is decided yet
            i_maybe &= ~precision_in[None, j0:j1] | ~covered[i0:i1, None]
        j_maybe &= ~recall_in[i0:i1, None]
        pi, pj = i_maybe.nonzero(as_tuple=True)
        if pi.numel():
            rechecks += pi.numel()
            ok = _exact_sq(real, pi + i0, gen, pj + j0) <= r2_real[pi + i0]
            pi, pj = pi[ok] + i0, pj[ok] + j0
            covered[pi] = True
            precision_in[pj] = True
            density.index_add_(0, pj, torch.ones_like(pj))
        pi, pj = j_maybe.nonzero(as_tuple=True)
        if pi.numel():
            rechecks += pi.numel()
            ok = _exact_sq(real, pi + i0, gen, pj + j0) <= r2_gen[pj + j0]
            recall_in[pi[ok] + i0] = True
    return {"precision_count": int(precision_in.sum()), "recall_count": int(recall_in.sum()),
            "density_count": int(density.sum()), "coverage_count": int(covered.sum()), "rechecks": rechecks}
