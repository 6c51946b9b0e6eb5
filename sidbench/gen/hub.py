"""Files from the Hugging Face hub, through huggingface_hub: its cache, its revision pinning, and sidbench's one
offline switch (``sidbench.core.download.offline()``); the hub's failures as one line that says what to do.

A file already in the hub cache is used without asking the network (at a pinned revision it cannot change); a
file downloaded now is checked against its pins (size, sha256: the hub's LFS object id) before it is used, and
removed from the cache when it fails them.
"""
from __future__ import annotations

import os
from pathlib import Path

from sidbench.core.download import DownloadError, OfflineError, offline as downloads_off, verify
from sidbench.core.errors import SidbenchError
from sidbench.gen.teachers import HUB, access_hint


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None  # read at call time: huggingface_hub reads it once, at import


def hub_error(e: Exception, repo_id: str, what: str) -> SidbenchError:
    """One line for a huggingface_hub (or httpx) failure about ``what`` in ``repo_id``."""
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    if isinstance(e, LocalEntryNotFoundError):  # "not cached, and the hub said ...": what the hub said matters
        if e.__cause__ is None:
            return DownloadError(f"could not reach the hub ({_endpoint() or HUB}) for {what} of {repo_id}")
        e = e.__cause__
    if isinstance(e, GatedRepoError):
        return SidbenchError(f"{repo_id} is a gated model: {access_hint(repo_id)}")
    if isinstance(e, RepositoryNotFoundError):  # the hub answers 401 for missing, private and gated repositories
        return SidbenchError(f"{repo_id}: no such model on the hub, or it is private or gated (check the id at "
                             f"{HUB}/{repo_id}; if it is gated, {access_hint(repo_id)})")
    if isinstance(e, RevisionNotFoundError):
        return SidbenchError(f"{repo_id}: the revision asked for ({what}) does not exist")
    if isinstance(e, EntryNotFoundError):
        return SidbenchError(f"{repo_id} has no file {what}")
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, HfHubHTTPError) and status in (401, 403):
        return SidbenchError(f"{repo_id}: access refused (HTTP {status}): {access_hint(repo_id)}")
    if isinstance(e, HfHubHTTPError):
        return DownloadError(f"could not download {what} from {repo_id}: HTTP {status}")
    return DownloadError(f"could not reach the hub ({_endpoint() or HUB}) for {what} of {repo_id}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def _discard(path: Path) -> None:
    """Remove a cached file that failed its pins: the snapshot link and the blob it points to."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def hub_file(repo_id: str, filename: str, *, revision: str | None = None, sha256: str | None = None,
             size: int | None = None, fetch_hint: str = "", offline: bool | None = None) -> Path:
    """The path of ``filename`` of ``repo_id`` in the hub cache, downloaded first where it is not there.
    ``offline``: this call's switch; None follows --offline and the environment (``core.download.offline``)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    where = f"{repo_id}/{filename}" + (f"@{revision[:12]}" if revision else "")
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        pass  # not cached: download it below
    except Exception as e:  # a cache that cannot be read
        raise hub_error(e, repo_id, filename) from None
    if downloads_off() if offline is None else offline:
        raise OfflineError(f"{where} is not in the Hugging Face cache and downloads are off (--offline, "
                           f"SIDBENCH_OFFLINE or HF_HUB_OFFLINE). {fetch_hint}".rstrip())
    try:
        path = Path(hf_hub_download(repo_id, filename, revision=revision, endpoint=_endpoint()))
    except Exception as e:
        raise hub_error(e, repo_id, filename) from None
    if sha256 or size:
        try:
            verify(path, sha256=sha256, size=size, source=f"{_endpoint() or HUB}/{repo_id}")
        except DownloadError as e:
            _discard(path)
            raise DownloadError(f"{where}: the downloaded file does not match its pin ({e}); it was removed from "
                                f"the cache, not used") from None
    return path


def read_hub_json(repo_id: str, filename: str, *, revision: str | None = None,
                  offline: bool | None = None) -> tuple[dict, str | None]:
    """A JSON file of a hub repository (e.g. model_index.json) and the commit it was read at."""
    import json

    path = hub_file(repo_id, filename, revision=revision, offline=offline,
                    fetch_hint=f"Run it once online to cache {repo_id}, or give a local diffusers folder.")
    commit = path.parent.name if path.parent.parent.name == "snapshots" else None
    try:
        return json.loads(path.read_text()), commit
    except ValueError as e:
        raise SidbenchError(f"{repo_id}/{filename}: not valid JSON ({e})") from None
