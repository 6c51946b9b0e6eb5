"""Atomic checkpoints holding everything needed to continue exactly; "latest" found by name."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from sidbench.core.atomic import atomic_path
from sidbench.core.errors import SidbenchError
from sidbench.gen.models import CHECKPOINT_FORMAT as FORMAT, read_checkpoint  # one reader: gen's generator loader uses it too

_NAME = re.compile(r"^ckpt-(\d{8})\.(pt|dcp)$")  # a file, or a distributed (FSDP) checkpoint folder


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save(run_dir: str | Path, iteration: int, state: dict, keep: int = 2) -> Path:
    folder = checkpoint_dir(run_dir)
    path = folder / f"ckpt-{iteration:08d}.pt"
    with atomic_path(path, ".pt") as tmp:
        torch.save(dict(state, format=FORMAT), tmp)
    prune(run_dir, keep)
    return path


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


def load(path: str | Path) -> dict:
    return read_checkpoint(path)


def find_resume(run_dir: str | Path, resume: str | None) -> Path | None:
    """``auto``: the latest checkpoint in the run folder (None if there is none); a path: that file."""
    if resume in (None, "", "none"):
        return None
    if resume == "auto":
        found = list_checkpoints(run_dir)
        return found[-1] if found else None
    p = Path(resume)
    if not (p.is_file() or (p.is_dir() and _NAME.match(p.name))):
        raise SidbenchError(f"--resume {resume}: no such checkpoint")
    return p
