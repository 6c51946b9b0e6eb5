"""Atomic file writes: a reader sees the old file or the complete new one, never half of one."""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterator

from sidbench.core.errors import SidbenchError
from sidbench.core.outputs import REFUSED_WRITE, os_error_in, write_error

_UMASK = os.umask(0)
os.umask(_UMASK)
STARTED = time.time()  # about when this process started: a temporary file older than this is not one of its own
# ``atomic_path``'s temporary names: "." + the target's name + "." + mkstemp's 8 random characters + the suffix;
# ``temporary_folder``'s: "partial" in place of the random characters (processes writing together agree on it)
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?:[a-z0-9_]{8}|partial)(?P<suffix>\.[A-Za-z0-9]+)$")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it over the target on success. A write the system
    refuses (full disk, permissions) is a ``WriteError`` naming the target, and leaves nothing behind."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=(suffix or ".tmp"), dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    for old in path.parent.glob(f".{glob.escape(path.name)}.*"):  # an earlier write of this file, killed midway
        if is_leftover(old):
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    try:
        yield Path(tmp)
        # mkstemp makes 0600 (and some writers, e.g. safetensors, recreate the file): outputs are meant to be shared
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        cause = None if isinstance(e, SidbenchError) else os_error_in(e)
        if cause is not None and cause.errno in REFUSED_WRITE:  # a download's broken connection stays what it is
            raise write_error(path, cause) from None
        raise


def temporary_folder(path: str | os.PathLike) -> Path:
    """Where a folder that several processes write (a distributed checkpoint) is put together before it is renamed
    to ``path``; ``remove_leftovers`` knows it by name."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial{path.suffix or '.tmp'}")


def is_leftover(path: Path) -> bool:
    """A temporary file of an atomic write, or a ``temporary_folder`` (by its name), that an earlier process left
    behind (by its age: a folder's changes when a file is added to it)."""
    m = _TEMPORARY.match(path.name)
    if not m or not (m["suffix"] in (".tmp", ".part") or m["target"].endswith(m["suffix"])):
        return False
    try:
        return (path.is_file() or path.is_dir()) and not path.is_symlink() and path.stat().st_mtime < STARTED
    except OSError:
        return False


def remove_leftovers(folder: str | os.PathLike, *, recursive: bool = False) -> int:
    """Remove what killed atomic writes left in ``folder`` (a checkpoint's can be tens of GB); return how many.
    Files written by this process, or by processes started after it, are newer and left alone."""
    import shutil

    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in list(folder.rglob(".*") if recursive else folder.glob(".*")):  # listed first: folders go whole
        if path.exists() and is_leftover(path):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed += 1
    return removed


def leftovers_note(count: int) -> str:
    """The words a console line adds for removed leftovers (nothing when there were none)."""
    return f"; removed {count} leftover temporary file(s) of interrupted writes" if count else ""


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
