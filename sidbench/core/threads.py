"""How many CPU threads a process uses: the cores divided by the processes on this machine, unless told.

Two processes that each take every core run ~100x slower on a 2-core box (measured: 0.28 vs 24 img/s), so
the default shares the cores, and a setting that oversubscribes them is said out loud.
"""
from __future__ import annotations

import os
import warnings

from sidbench.core.errors import SidbenchError, SidbenchWarning


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_processes() -> int:
    """Processes of this job on this machine (torchrun / accelerate set LOCAL_WORLD_SIZE)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))


def default_threads() -> int:
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # the user (or a launcher) already chose
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, available_cores() // local_processes())


def oversubscription(threads: int) -> str | None:
    """Why ``threads`` per process is too many here, or None."""
    cores, procs = available_cores(), local_processes()
    if threads * procs > cores:
        return (f"{procs} process(es) x {threads} threads on {cores} cores: oversubscribed, expect a large "
                f"slowdown; use --threads {max(1, cores // procs)}")
    return None


def set_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads for this process; returns the number, warning when oversubscribed."""
    import torch

    if requested is not None and requested < 1:
        raise SidbenchError(f"--threads must be at least 1, got {requested}")
    n = requested or default_threads()
    torch.set_num_threads(n)
    problem = oversubscription(n)
    if problem:
        warnings.warn(problem, SidbenchWarning, stacklevel=2)
    return n
