"""The one feature-statistics class: float64 running sums, exact merges, portable self-describing files.

Memory is O(d^2) whatever N. Shards (or processes) accumulate separately and merge by adding sums,
which equals one pass up to float64 rounding. Features themselves are kept only when a metric needs
them (KID), together with their global indices so merged shards come back in the single-run order.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from sidbench.core.atomic import atomic_path
from sidbench.core.errors import SidbenchError, StatsMismatchError

STATS_FORMAT = "sidbench.feature-stats/1"

# Settings that must agree for two statistics to be compared or merged.
COMPAT_KEYS = ("extractor", "extractor_weights_sha256", "extractor_random_seed", "dim", "fid_mode",
               "pre_resize")


@dataclass
class FeatureStats:
    dim: int
    n: int = 0
    sum: np.ndarray | None = None            # float64 [d]
    outer: np.ndarray | None = None          # float64 [d, d], sum of x x^T
    features: np.ndarray | None = None       # float32 [n, d], only when kept
    indices: np.ndarray | None = None        # int64 [n], global image index of each kept row
    keep_features: bool = False
    moments: bool = True                     # running sums for FID; off for features kept only for PR
    meta: dict = field(default_factory=dict)  # provenance: extractor, weights hash, preprocessing, inputs
    _chunks: list = field(default_factory=list, repr=False)
    _chunk_idx: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        if self.sum is None and self.moments:
            self.sum = np.zeros(self.dim, np.float64)
        if self.outer is None and self.moments:
            self.outer = np.zeros((self.dim, self.dim), np.float64)

    # -- accumulation -----------------------------------------------------------------------
    def update(self, feats: torch.Tensor | np.ndarray, indices=None) -> None:
        """Add a batch of features [b, d]; float64 from here on."""
        x = torch.as_tensor(feats).detach().to("cpu")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise SidbenchError(f"features of shape {tuple(x.shape)} do not match dimension {self.dim}")
        if not torch.isfinite(x).all():
            raise SidbenchError("the feature extractor returned NaN or infinite values")
        if self.moments:
            x64 = x.to(torch.float64)
            self.sum += x64.sum(0).numpy()
            self.outer += (x64.T @ x64).numpy()
        self.n += x.shape[0]
        if self.keep_features:
            if indices is None:
                raise SidbenchError("keeping features needs the global index of each row")
            self._chunks.append(x.to(torch.float32).numpy().copy())
            self._chunk_idx.append(np.asarray(indices, np.int64).copy())

    def _flush(self) -> None:
        if self._chunks:
            parts = ([self.features] if self.features is not None else []) + self._chunks
            idx = ([self.indices] if self.indices is not None else []) + self._chunk_idx
            self.features, self.indices = np.concatenate(parts), np.concatenate(idx)
            self._chunks, self._chunk_idx = [], []

    def ordered_features(self) -> np.ndarray:
        """Kept features sorted by global image index (the order of a single pass)."""
        self._flush()
        if self.features is None:
            raise SidbenchError("these statistics hold no per-image features (needed for KID); "
                                "recompute them with KID enabled")
        order = np.argsort(self.indices, kind="stable")
        return self.features[order]

    # -- results ----------------------------------------------------------------------------
    @property
    def mean(self) -> np.ndarray:
        self._need(1)
        return self.sum / self.n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (N - 1), float64, as ``np.cov``."""
        self._need(2)
        mu = self.sum / self.n
        c = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return (c + c.T) / 2  # exact symmetry for the eigen route

    @property
    def singular(self) -> bool:
        """N <= d: the sample covariance cannot be full rank."""
        return self.n <= self.dim

    def _need(self, k: int) -> None:
        if not self.moments:
            raise SidbenchError("these statistics keep features only (no running moments for FID)")
        if self.n < k:
            raise SidbenchError(f"statistics over {self.n} image(s); at least {k} needed")

    # -- merging ----------------------------------------------------------------------------
    def compatible_with(self, other: "FeatureStats", *, what: str = "statistics") -> None:
        """Refuse to mix statistics made under different settings; name what differs."""
        diffs = [f"{k}: {self.meta.get(k)!r} vs {other.meta.get(k)!r}" for k in COMPAT_KEYS
                 if self.meta.get(k) != other.meta.get(k)]
        if self.dim != other.dim:
            diffs.append(f"dim: {self.dim} vs {other.dim}")
        if diffs:
            raise StatsMismatchError(f"{what} were made under different settings and cannot be mixed:\n  "
                                     + "\n  ".join(diffs))

    @classmethod
    def merged(cls, parts: list["FeatureStats"]) -> "FeatureStats":
        if not parts:
            raise SidbenchError("nothing to merge")
        first = parts[0]
        for p in parts[1:]:
            first.compatible_with(p, what="shard statistics")
        _check_shards(parts)
        moments = all(p.moments for p in parts)
        out = cls(first.dim, keep_features=all(p.keep_features for p in parts), moments=moments, meta=dict(first.meta))
        for p in parts:
            if moments:
                out.sum += p.sum
                out.outer += p.outer
            out.n += p.n
        if out.keep_features:
            for p in parts:
                p._flush()
            feats = np.concatenate([p.features for p in parts if p.features is not None] or [np.zeros((0, first.dim), np.float32)])
            idx = np.concatenate([p.indices for p in parts if p.indices is not None] or [np.zeros(0, np.int64)])
            if len(np.unique(idx)) != len(idx):
                raise SidbenchError("the shards overlap: some image indices appear in more than one")
            out.features, out.indices = feats, idx
        shards = [p.meta.get("shard") for p in parts]
        out.meta["shard"] = None
        out.meta["merged_from"] = shards
        return out

    def extended(self, other: "FeatureStats") -> "FeatureStats":
        """These images followed by ``other``'s (the streaming metrics' merge): sums added, ``other``'s kept
        features renumbered after this one's, so the result is one set whatever the two came from."""
        self.compatible_with(other, what="the two metrics' statistics")
        if self.moments != other.moments or self.keep_features != other.keep_features:
            raise SidbenchError("cannot extend statistics that keep different things (moments / features)")
        out = FeatureStats(self.dim, n=self.n + other.n, keep_features=self.keep_features, moments=self.moments,
                           meta=dict(self.meta))
        if self.moments:
            out.sum, out.outer = self.sum + other.sum, self.outer + other.outer
        if self.keep_features:
            feats, idx, offset = [], [], 0
            for part in (self, other):
                part._flush()
                if part.features is not None and len(part.indices):
                    feats.append(part.features)
                    idx.append(part.indices + offset)
                    offset = int(idx[-1].max()) + 1
            if feats:
                out.features, out.indices = np.concatenate(feats), np.concatenate(idx)
        return out

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write an .npz: sums for exact merging, mu/sigma for clean-fid users, provenance as JSON."""
        self._flush()
        arrays = {"format": np.array(STATS_FORMAT), "meta": np.array(json.dumps(self.meta, sort_keys=True)),
                  "n": np.array(self.n, np.int64), "dim": np.array(self.dim, np.int64)}
        if self.moments:
            arrays["sum"], arrays["outer"] = self.sum, self.outer
        if self.moments and self.n >= 2:
            arrays["mu"], arrays["sigma"] = self.mean, self.cov
        if self.keep_features and self.features is not None:
            arrays["features"], arrays["indices"] = self.features, self.indices
        with atomic_path(path, ".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "format" not in z or str(z["format"]) != STATS_FORMAT:
                    raise SidbenchError(f"{path} is not a sidbench statistics file (format {STATS_FORMAT}); "
                                        f"it holds {sorted(z.keys())}")
                meta = json.loads(str(z["meta"]))
                if "outer" in z:
                    out = cls(int(z["outer"].shape[0]), n=int(z["n"]), sum=z["sum"].astype(np.float64),
                              outer=z["outer"].astype(np.float64), meta=meta)
                else:
                    out = cls(int(z["dim"]), n=int(z["n"]), moments=False, meta=meta)
                if "features" in z:
                    out.features, out.indices, out.keep_features = z["features"], z["indices"], True
        except SidbenchError:
            raise
        except Exception as e:
            raise SidbenchError(f"cannot read statistics file {path}: {type(e).__name__}: {e}") from None
        return out


def stats_count(path: str | os.PathLike) -> int:
    """Images behind a statistics file, reading only its count (not the d x d sums)."""
    with np.load(path, allow_pickle=False) as z:
        return int(z["n"])


def stats_provenance(path: str | os.PathLike) -> dict:
    """A statistics file's provenance (``meta``), reading only that (not the d x d sums)."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))


def _check_shards(parts: list["FeatureStats"]) -> None:
    """Shards must come from the same input and, when labelled, cover it once each."""
    ids = {json.dumps({k: (p.meta.get("input") or {}).get(k) for k in ("listing_sha256", "data_sha256", "used")},
                      sort_keys=True) for p in parts}
    if len(ids) > 1:
        raise StatsMismatchError("the shard statistics come from different inputs (file lists or arrays differ)")
    labels = [p.meta.get("shard") for p in parts]
    if all(labels):
        counts = {n for _, n in labels}
        seen = sorted(i for i, _ in labels)
        if len(counts) != 1 or seen != list(range(next(iter(counts)))):
            raise SidbenchError(f"shards {[f'{i}/{n}' for i, n in labels]} do not cover the input exactly once")


def is_stats_file(path: str | os.PathLike) -> bool:
    p = str(path)
    if not (p.endswith(".npz") and os.path.isfile(p)):
        return False
    try:
        with np.load(p, allow_pickle=False) as z:
            return "format" in z.files and str(z["format"]) == STATS_FORMAT
    except Exception:
        return False
