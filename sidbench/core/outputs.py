"""Outputs checked before the work starts, and a write that fails at the end told in one line (where, and why in
words), so hours of computing never end in a traceback about a path."""
from __future__ import annotations

import errno
import os
from pathlib import Path

from sidbench.core.errors import SidbenchError

# What to do about a write the system refused, by errno (the reason itself is the system's own words)
_NEXT_STEP = {
    errno.ENOSPC: "free some space and run the command again",
    errno.EDQUOT: "free some space (the disk quota is used up) and run the command again",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f, or the file system's limit)",
    errno.EROFS: "choose a writable location",
    errno.EACCES: "choose a writable location",
    errno.EPERM: "choose a writable location",
}
REFUSED_WRITE = frozenset(_NEXT_STEP)  # errnos that mean the system refused a write (not a network read's failure)


class WriteError(SidbenchError):
    """A write the system refused (full disk, permissions, ...); ``reason`` in words, e.g. "No space left on
    device"."""

    def __init__(self, path: str | os.PathLike, reason: str, next_step: str | None = None):
        self.path, self.reason = Path(path), reason
        super().__init__(f"cannot write {path}: {reason}" + (f"; {next_step}" if next_step else ""))


def os_error_in(error: BaseException | None) -> OSError | None:
    """The OSError behind an exception (itself, or what it was raised from or during: torch.save wraps the file
    object's error in a RuntimeError that says nothing about space)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def write_error(path: str | os.PathLike, error: OSError) -> WriteError:
    reason = error.strerror or str(error) or type(error).__name__
    return WriteError(path, reason, _NEXT_STEP.get(error.errno or 0))


def check_output(path: str | os.PathLike, what: str, *, folder: bool = False) -> None:
    """Refuse, before any work, an output that could not be written: a file (``folder`` False) or a folder whose
    parent folders exist or can be made, with nothing but folders in the way, and writable. Nothing is created."""
    p = Path(path)
    if p.exists():
        if folder and not p.is_dir():
            raise SidbenchError(f"{what} {p}: a file is there, not a folder; choose another path")
        if not folder and p.is_dir():
            raise SidbenchError(f"{what} {p} is a folder; give a file path inside it or elsewhere")
        if not os.access(p, os.W_OK):
            raise SidbenchError(f"{what} {p}: not writable (permission denied); choose a writable location")
    there = p if folder else p.parent
    while not there.exists() and there != there.parent:  # the nearest part of the path that exists
        there = there.parent
    if not there.is_dir():
        raise SidbenchError(f"{what} {p}: {there} is a file, so no folder can be made there; choose another path")
    if not os.access(there, os.W_OK | os.X_OK):
        raise SidbenchError(f"{what} {p}: the folder {there} is not writable (permission denied); choose a "
                            f"writable location")
