"""Multi-process evaluation: each process takes a disjoint index shard; statistics merge exactly.

Works under ``torchrun`` and ``accelerate launch`` (both set RANK / WORLD_SIZE / MASTER_ADDR), with gloo
on CPU and NCCL on GPUs. Merging statistics across processes lives with them (``sidbench.eval.reduce``).
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist



def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_if_launched(timeout_s: float | None = None) -> bool:
    """Join the process group a launcher set up (no-op for a single process). ``timeout_s``: how long a
    collective may wait for a process that never comes (torch's default: 10 minutes)."""
    if dist.is_available() and dist.is_initialized():
        return True
    if world_size_from_env() <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, **({"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}))
    return True


def process_shard() -> tuple[int, int] | None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return None


def is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
