"""Multi-process evaluation: each process takes a disjoint index shard; statistics merge exactly.

Works under ``torchrun`` and ``accelerate launch`` (both set RANK / WORLD_SIZE / MASTER_ADDR). The backend follows
the device the run resolved: NCCL for CUDA tensors, gloo for everything else (a CPU run under torchrun on a GPU
machine included). Merging statistics across processes lives with them (``sidbench.eval.reduce``).
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from sidbench.core.device import AUTO, resolve_device


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_if_launched(timeout_s: float | None = None, device: str | torch.device | None = AUTO) -> bool:
    """Join the process group a launcher set up (no-op for a single process). ``device``: the run's device
    (resolved here if it is ``auto``); NCCL and ``torch.cuda.set_device`` only when it is a GPU. ``timeout_s``:
    how long a collective may wait for a process that never comes (torch's default: 10 minutes)."""
    if dist.is_available() and dist.is_initialized():
        return True
    if world_size_from_env() <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    dev = resolve_device(device)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend, **({"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}))
    return True


def collective_device() -> torch.device:
    """Where tensors handed to a collective must live: this process's GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def process_shard() -> tuple[int, int] | None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return None


def is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    """Wait until every process gets here (no-op for a single process); under NCCL on this process's GPU."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    dev = collective_device()
    dist.barrier(device_ids=[dev.index] if dev.type == "cuda" else None)
