"""One file of a Hugging Face hub repository, through ``huggingface_hub``: its cache, a pinned revision, its offline
switch, and the endpoint in ``HF_ENDPOINT`` (a mirror) read when the file is asked for.

The caller verifies the file's hash; a file that fails is removed from the cache with :func:`forget`, never kept.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sidbench.core import download
from sidbench.core.download import DownloadError


def endpoint() -> str | None:
    """The hub to ask: ``HF_ENDPOINT`` as it is now (None: huggingface_hub's default, huggingface.co)."""
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def resolve_url(repo: str, filename: str, revision: str) -> str:
    """The file's plain download address on the current endpoint (for a mirror fetched without the hub client)."""
    return f"{endpoint() or 'https://huggingface.co'}/{repo}/resolve/{revision}/{filename}"


def cache_dir() -> Path:
    """huggingface_hub's cache folder (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached(repo: str, filename: str, revision: str) -> Path | None:
    """The file in the hub cache at ``revision``, without asking the network (None when not there)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


@contextlib.contextmanager
def _progress_bars(enabled: bool):
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


def fetch(repo: str, filename: str, revision: str, *, fetch_hint: str, progress: bool = True) -> Path:
    """The cached file, else downloaded into the hub cache (refused with ``fetch_hint`` when downloads are off)."""
    have = cached(repo, filename, revision)
    if have is not None:
        return have
    download.require_online(f"{repo}/{filename} (revision {revision})", fetch_hint)
    from huggingface_hub import hf_hub_download

    where = endpoint() or "https://huggingface.co"
    try:
        with _progress_bars(progress):
            return Path(hf_hub_download(repo, filename, revision=revision, endpoint=endpoint()))
    except Exception as e:  # requests, httpx or hub errors depending on the installed version: one line, not a trace
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DownloadError(f"could not download {filename} of {repo} (revision {revision}) from {where}: {reason}. "
                            f"Run the same command again, or set HF_ENDPOINT to a mirror") from None


def forget(path: str | os.PathLike) -> None:
    """Remove a cached hub file (its snapshot link and the blob it points to), e.g. one that failed its pin."""
    path = Path(path)
    blob = Path(os.path.realpath(path))
    for p in (path, blob):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
