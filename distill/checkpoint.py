"""Atomic checkpoints holding everything needed to continue exactly; "latest" found by name."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from sidbench.core.atomic import atomic_path
from sidbench.core.errors import SidbenchError
from sidbench.core.outputs import WriteError
from sidbench.gen.models import CHECKPOINT_FORMAT as FORMAT, read_checkpoint  # one reader: gen's generator loader uses it too

_NAME = re.compile(r"^ckpt-(\d{8})\.(pt|dcp)$")  # a file, or a distributed (FSDP) checkpoint folder


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save(run_dir: str | Path, iteration: int, state: dict, keep: int = 2) -> Path:
    folder = checkpoint_dir(run_dir)
    path = folder / f"ckpt-{iteration:08d}.pt"
    try:
        with atomic_path(path, ".pt") as tmp, open(tmp, "wb") as f:
            torch.save(dict(state, format=FORMAT), f)  # a file object: a full disk surfaces as its OSError
    except WriteError as e:
        raise WriteError(path, e.reason, previous_intact(run_dir, path)) from None
    prune(run_dir, keep)
    return path


def previous_intact(run_dir: str | Path, failed: Path) -> str:
    """The next step after a checkpoint write failed: the newest earlier checkpoint, untouched, by name."""
    earlier = [p for p in list_checkpoints(run_dir) if p != failed]
    if not earlier:
        return "no earlier checkpoint exists; free some space and start the run again"
    return (f"the previous checkpoint {earlier[-1]} is intact: free some space and continue from it with "
            f"--resume auto")


def prune(run_dir: str | Path, keep: int) -> None:
    """Keep the latest ``keep`` checkpoints (files or DCP folders)."""
    import shutil

    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _NAME.match(p.name)), key=lambda p: int(_NAME.match(p.name)[1]))


class UnreadableCheckpoint(SidbenchError):
    """A checkpoint that cannot be read (cut short, corrupt, not ours), as opposed to one that is refused."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"cannot read checkpoint {path}: {reason}")


def unreadable(path: str | Path, error: BaseException) -> UnreadableCheckpoint:
    """The error of a checkpoint whose reader failed, with a reason a person can act on."""
    p = Path(path)
    if p.is_file() and p.stat().st_size == 0:
        return UnreadableCheckpoint(p, "an empty file (0 bytes: its write was cut short)")
    text = str(error).removeprefix(f"cannot read checkpoint {p}: ")
    return UnreadableCheckpoint(p, text or type(error).__name__)


def load(path: str | Path) -> dict:
    try:
        return read_checkpoint(path)
    except SidbenchError as e:  # the one reader's refusal: unreadable, or not a distillation checkpoint
        raise unreadable(path, e) from None


def find_resume(run_dir: str | Path, resume: str | None) -> list[Path]:
    """The checkpoints to try, in order: ``auto``, the run folder's, newest first (a fallback for an unreadable
    newest one); a path, that one alone; ``none``, nothing."""
    if resume in (None, "", "none"):
        return []
    if resume == "auto":
        return list_checkpoints(run_dir)[::-1]
    p = Path(resume)
    if not (p.is_file() or (p.is_dir() and _NAME.match(p.name))):
        raise SidbenchError(f"--resume {resume}: no such checkpoint")
    return [p]


def load_first_readable(candidates: list[Path], load_one, *, fallback: bool = True,
                        main: bool = True) -> tuple[Path | None, list[str]]:
    """Load the first readable checkpoint with ``load_one(path)``: (its path, a warning for each unreadable newer
    one, moved aside to ``NAME.unreadable`` by the main process so no later resume trips on it again).
    Without ``fallback`` (a checkpoint the user named) an unreadable one is an error."""
    bad: list[UnreadableCheckpoint] = []
    for path in candidates:
        try:
            load_one(path)
        except UnreadableCheckpoint as e:
            if not fallback:
                raise SidbenchError(f"{e}; name another checkpoint with --resume PATH") from None
            bad.append(e)
            continue
        notes = []
        for e in bad:
            aside = e.path.with_name(e.path.name + ".unreadable")
            if main:
                e.path.replace(aside)
            notes.append(f"warning: checkpoint {e.path} is unreadable ({e.reason}); moved to {aside.name}, "
                         f"resuming from {path.name}")
        return path, notes
    if bad:
        raise SidbenchError(f"no readable checkpoint in {bad[0].path.parent}: " + "; ".join(
            f"{e.path.name} ({e.reason})" for e in bad) + "; restore one, or move them out and start afresh with "
            "--resume none (or use a new --run-dir)")
    return None, []
