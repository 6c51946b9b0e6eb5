"""Stopping a run cleanly: SIGTERM or SIGINT (a scheduler's preemption, Ctrl-C) or a wall-clock limit
(``--max-time``) ends the iteration in flight; the trainer then checkpoints, leaves ``stopped.json`` in the run
folder and exits non-zero. Every process of a multi-process run stops at the same iteration (the stop is agreed by
an all-reduce each iteration); a second signal exits at once."""
from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist

from sidbench.core.atomic import write_json
from sidbench.core.distributed import collective_device
from sidbench.core.errors import SidbenchError

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_MAX_TIME = 1  # the agreed reason's code; a signal's code is its number (all above 1), so MAX picks a signal
SAVE_BYTES_PER_S = 100e6  # a guess of the checkpoint write speed, until a write has been timed
# A launcher forwards the scheduler's signal to processes the scheduler signalled too: within this many seconds a
# repeat is the same request, not a second one
SAME_REQUEST_S = 2.0
# Left in the run folder by a stopped run, removed when the run starts again: a launcher (torchrun) reports any
# failed process as exit 1, so a job script that requeues itself tests this file, not the exit status
MARKER = "stopped.json"


class StopRequested(SidbenchError):
    """The run stopped early on request, after its checkpoint was written; ``exit_code`` is the shell's."""

    def __init__(self, message: str, exit_code: int, why: str = "", iteration: int = 0):
        super().__init__(message)
        self.exit_code, self.why, self.iteration = exit_code, why, iteration


def write_marker(run_dir, stop: StopRequested, checkpoint) -> None:
    """Say in the run folder that the run stopped on request, where, and how to continue."""
    write_json(Path(run_dir) / MARKER, {"stopped_by": stop.why, "iteration": stop.iteration,
                                        "exit_code": stop.exit_code, "checkpoint": str(checkpoint),
                                        "resume": "--resume auto"})


def clear_marker(run_dir) -> None:
    (Path(run_dir) / MARKER).unlink(missing_ok=True)


def parse_max_time(text: str | None) -> float | None:
    """``HH:MM`` (or ``HH:MM:SS``; hours may exceed 24) -> seconds; None stays None."""
    if text in (None, ""):
        return None
    m = re.fullmatch(r"(\d+):([0-5]\d)(?::([0-5]\d))?", text.strip())
    if not m:
        raise SidbenchError(f"--max-time {text!r}: expected HH:MM (the job's wall-clock limit, e.g. 47:30)")
    return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3] or 0)


class StopWatch:
    """Catches SIGTERM/SIGINT while a run trains (the previous handlers come back on exit) and watches a
    wall-clock limit counted from ``started``. ``decide()`` is collective in a multi-process run."""

    def __init__(self, max_time_s: float | None = None, started: float | None = None, max_time_text: str = ""):
        self.max_time_s, self.max_time_text = max_time_s, max_time_text
        self.started = time.time() if started is None else started
        self.signal: int | None = None
        self._signalled_at = 0.0
        self.slowest_iteration = 0.0
        self.slowest_save: float | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopWatch":
        if threading.current_thread() is threading.main_thread():  # Python lets only the main thread set handlers
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _on_signal(self, signum, frame) -> None:
        if self.signal is None:
            self.signal, self._signalled_at = signum, time.monotonic()
        elif time.monotonic() - self._signalled_at > SAME_REQUEST_S:  # a second request: end now, the default way
            for s in SIGNALS:
                signal.signal(s, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def timed_iteration(self, seconds: float) -> None:
        self.slowest_iteration = max(self.slowest_iteration, seconds)

    def timed_save(self, seconds: float) -> None:
        self.slowest_save = max(self.slowest_save or 0.0, seconds)

    def _local_code(self, state_bytes) -> int:
        if self.signal is not None:
            return int(self.signal)
        if self.max_time_s is not None:
            save = self.slowest_save if self.slowest_save is not None else state_bytes() / SAVE_BYTES_PER_S
            # One more iteration and a checkpoint must still fit: stop now if they might not
            if time.time() - self.started + self.slowest_iteration + save >= self.max_time_s:
                return _MAX_TIME
        return 0

    def decide(self, state_bytes=lambda: 0) -> int:
        """0 to go on, else the reason every process agrees on (the largest code any process saw).
        ``state_bytes()``: the checkpoint's size, asked only while no write has been timed.

        One process decides alone, with no collective. Several all-reduce one integer each iteration (a signal
        may reach one process only, and they must stop at the same iteration); reading it back waits for the
        iteration's last kernels (the optimiser step, the EMA update), a wait of the same order as the reads of
        losses and gradient norms each phase already makes."""
        code = self._local_code(state_bytes)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = torch.tensor([code], dtype=torch.int64, device=collective_device())
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            code = int(t.item())
        return code

    def stop_error(self, code: int, iteration: int) -> StopRequested:
        if code == _MAX_TIME:
            why, exit_code = f"--max-time {self.max_time_text}", 124  # timeout(1)'s status for "ran out of time"
        else:
            why, exit_code = f"{signal.Signals(code).name}", 128 + code  # the shell's status for a signal's death
        return StopRequested(f"stopped by {why} at iteration {iteration}; resume with --resume auto", exit_code,
                             why, iteration)
