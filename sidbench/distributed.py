"""Multi-process evaluation: each process takes a disjoint index shard; statistics merge exactly.

Works under ``torchrun`` and ``accelerate launch`` (both set RANK / WORLD_SIZE / MASTER_ADDR), with gloo
on CPU and NCCL on GPUs. Float64 sums are all-reduced; kept features are gathered with their indices.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from sidbench.stats import FeatureStats


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_if_launched() -> bool:
    """Join the process group a launcher set up (no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        return True
    if world_size_from_env() <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def process_shard() -> tuple[int, int] | None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return None


def is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def all_reduce_stats(stats: FeatureStats, skipped: list) -> tuple[FeatureStats, list]:
    """Combine every process's statistics; all processes get the merged result."""
    dev = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
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
    dev = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([scorer.total, float(scorer.n), float(scorer.truncated)], dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    scorer.total, scorer.n, scorer.truncated = float(t[0]), int(t[1]), int(t[2])
