"""Statistics and CLIP sums merged across processes: float64 sums all-reduced, kept features gathered with indices."""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from sidbench.core.distributed import collective_device
from sidbench.eval.stats import FeatureStats


def all_reduce_stats(stats: FeatureStats, skipped: list) -> tuple[FeatureStats, list]:
    """Combine every process's statistics; all processes get the merged result."""
    dev = collective_device()
    n = torch.tensor([stats.n], dtype=torch.float64, device=dev)
    dist.all_reduce(n)
    sums = outer = None
    if stats.moments:
        sums = torch.from_numpy(stats.sum).to(dev)
        outer = torch.from_numpy(stats.outer).to(dev)
        dist.all_reduce(sums)
        dist.all_reduce(outer)
    stats._flush()
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (stats.features, stats.indices, skipped))
    out = FeatureStats(stats.dim, n=int(n.item()), sum=None if sums is None else sums.cpu().numpy(),
                       outer=None if outer is None else outer.cpu().numpy(), moments=stats.moments,
                       keep_features=stats.keep_features, meta=dict(stats.meta))
    if stats.keep_features:
        out.features = np.concatenate([g[0] for g in gathered if g[0] is not None] or [np.zeros((0, stats.dim), np.float32)])
        out.indices = np.concatenate([g[1] for g in gathered if g[1] is not None] or [np.zeros(0, np.int64)])
    all_skipped = [s for g in gathered for s in g[2]]
    out.meta["processes"] = dist.get_world_size()
    return out, all_skipped


def all_reduce_clip(scorer) -> None:
    """Sum CLIP totals, counts and truncation counts over processes (in place)."""
    dev = collective_device()
    t = torch.tensor([scorer.total, float(scorer.n), float(scorer.truncated)], dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    scorer.total, scorer.n, scorer.truncated = float(t[0]), int(t[1]), int(t[2])


def all_reduce_sums(scorer) -> None:
    """Sum a mean-score scorer's total and count over processes (in place)."""
    dev = collective_device()
    t = torch.tensor([scorer.total, float(scorer.n)], dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    scorer.total, scorer.n = float(t[0]), int(t[1])


def gather_values(values: dict) -> dict:
    """Every process's per-image values (index -> value), merged (all processes get them)."""
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, values)
    return {k: v for g in gathered for k, v in g.items()}


def gather_skipped(skipped: list) -> list:
    """Every process's list of skipped inputs, concatenated in rank order (all processes get it)."""
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, skipped)
    return [s for g in gathered for s in g]
