"""Files from the Hugging Face hub, through huggingface_hub: its cache, its revision pinning, the endpoint in
``HF_ENDPOINT`` (a mirror) read when a file is asked for, and sidbench's one offline switch
(``sidbench.core.download.offline()``). The hub's failures become one line that says what to do.

A file already in the hub cache is used without asking the network (at a pinned revision it cannot change); a
file downloaded now is checked against the pins given (size, sha256 or its prefix: for an LFS file the hub's
object id is its sha256) before it is returned, and removed from the cache when it fails them. Weight files
(``eval.extractors.weights``), base models and released generators (``gen``) and the prompt lists of a hub
archive (``data.prompts``) all come through here.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from sidbench.core.download import DownloadError, OfflineError, offline as downloads_off, verify
from sidbench.core.errors import SidbenchError

HUB = "https://huggingface.co"
_OFF = "downloads are off (--offline, SIDBENCH_OFFLINE or HF_HUB_OFFLINE)"


def endpoint() -> str | None:
    """The hub to ask: ``HF_ENDPOINT`` as it is now (None: huggingface_hub's default, huggingface.co); read at call
    time because huggingface_hub reads it once, at import."""
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def resolve_url(repo: str, filename: str, revision: str) -> str:
    """The file's plain download address on the current endpoint (for a mirror fetched without the hub client)."""
    return f"{endpoint() or HUB}/{repo}/resolve/{revision}/{filename}"


def cache_dir() -> Path:
    """huggingface_hub's cache folder (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached(repo: str, filename: str, revision: str | None = None) -> Path | None:
    """The file in the hub cache at ``revision`` (None: main), without asking the network (None when not there)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, filename, revision=revision)
    except Exception as e:  # a malformed id or revision: say which
        raise SidbenchError(f"cannot look up {repo}/{filename} in the Hugging Face cache: {_first_line(e)}") from None
    return Path(found) if isinstance(found, str) else None


def access_hint(repo: str) -> str:
    """How to get a gated or private model: the page to accept its licence on, and the token to log in with."""
    return (f"accept its licence at {HUB}/{repo} while logged in, then log in here with `hf auth login` "
            f"(or set HF_TOKEN)")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def hub_error(e: Exception, repo: str, what: str) -> SidbenchError:
    """One line for a huggingface_hub (or httpx/requests) failure about ``what`` in ``repo``."""
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    where = endpoint() or HUB
    again = "Run the same command again, or set HF_ENDPOINT to a mirror"
    if isinstance(e, LocalEntryNotFoundError):  # "not cached, and the hub said ...": what the hub said matters
        if e.__cause__ is None:
            return DownloadError(f"could not reach the hub ({where}) for {what} of {repo}. {again}")
        e = e.__cause__
    if isinstance(e, GatedRepoError):
        return SidbenchError(f"{repo} is a gated model: {access_hint(repo)}")
    if isinstance(e, RepositoryNotFoundError):  # the hub answers 401 for missing, private and gated repositories
        return SidbenchError(f"{repo}: no such model on the hub, or it is private or gated (check the id at "
                             f"{HUB}/{repo}; if it is gated, {access_hint(repo)})")
    if isinstance(e, RevisionNotFoundError):
        return SidbenchError(f"{repo}: the revision asked for ({what}) does not exist")
    if isinstance(e, EntryNotFoundError):
        return SidbenchError(f"{repo} has no file {what}")
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, HfHubHTTPError) and status in (401, 403):
        return SidbenchError(f"{repo}: access refused (HTTP {status}): {access_hint(repo)}")
    if isinstance(e, HfHubHTTPError):
        return DownloadError(f"could not download {what} from {repo} ({where}): HTTP {status}. {again}")
    return DownloadError(f"could not reach the hub ({where}) for {what} of {repo}: {_first_line(e)}. {again}")


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


def _refuse_offline(what: str, fetch_hint: str, offline: bool | None) -> None:
    if downloads_off() if offline is None else offline:
        raise OfflineError(f"{what} is not in the Hugging Face cache and {_OFF}. {fetch_hint}".rstrip())


def hub_file(repo: str, filename: str, *, revision: str | None = None, sha256: str | None = None,
             size: int | None = None, sha256_prefix: str | None = None, fetch_hint: str = "",
             offline: bool | None = None, progress: bool = True) -> Path:
    """The path of ``filename`` of ``repo`` in the hub cache, downloaded first where it is not there.

    ``offline``: this call's switch; None follows --offline and the environment (``core.download.offline``).
    A fresh download that fails a pin is removed from the cache and refused.
    """
    where = f"{repo}/{filename}" + (f"@{revision[:12]}" if revision else "")
    have = cached(repo, filename, revision)
    if have is not None:
        return have
    _refuse_offline(where, fetch_hint, offline)
    from huggingface_hub import hf_hub_download

    try:
        with _progress_bars(progress):
            path = Path(hf_hub_download(repo, filename, revision=revision, endpoint=endpoint()))
    except Exception as e:  # hub, httpx or requests errors depending on the installed version: one line
        raise hub_error(e, repo, filename) from None
    if sha256 or size or sha256_prefix:
        try:
            verify(path, sha256=sha256, size=size, sha256_prefix=sha256_prefix)
        except DownloadError as e:
            forget(path)
            problem = str(e).removeprefix(f"{path} ").split(": it is corrupt")[0]
            raise DownloadError(f"{where}: the file downloaded from {endpoint() or HUB} does not match its pin "
                                f"({problem}); it was removed from the hub cache, not kept. Run the same command "
                                f"again") from None
    return path


def cached_files(repo: str, revision: str | None = None) -> list[str]:
    """The files of ``repo`` at ``revision`` that the hub cache holds (its documented layout: refs/<branch> names
    the commit, snapshots/<commit>/ holds the files), without the network."""
    folder = cache_dir() / f"models--{repo.replace('/', '--')}"
    ref = folder / "refs" / (revision or "main")
    snapshot = folder / "snapshots" / (ref.read_text().strip() if ref.is_file() else revision or "main")
    if not snapshot.is_dir():
        return []
    return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())


def list_files(repo: str, revision: str | None = None, *, fetch_hint: str = "",
               offline: bool | None = None) -> list[str]:
    """The file names of ``repo`` at ``revision`` as the hub lists them; with downloads off, those the cache
    holds (refused when it holds none)."""
    name = f"the file list of {repo}" + (f"@{revision[:12]}" if revision else "")
    if downloads_off() if offline is None else offline:
        have = cached_files(repo, revision)
        if not have:
            _refuse_offline(name, fetch_hint, True)
        return have
    from huggingface_hub import HfApi

    try:
        return list(HfApi(endpoint=endpoint()).list_repo_files(repo, revision=revision))
    except Exception as e:
        raise hub_error(e, repo, "the file list") from None


def commit_of(path: str | os.PathLike) -> str | None:
    """The commit a file of the hub cache was read at (its snapshot folder's name), None outside the cache."""
    path = Path(path)
    for parent in path.parents:
        if parent.parent.name == "snapshots":
            return parent.name
    return None


def read_hub_json(repo: str, filename: str, *, revision: str | None = None,
                  offline: bool | None = None) -> tuple[dict, str | None]:
    """A JSON file of a hub repository (e.g. model_index.json) and the commit it was read at."""
    path = hub_file(repo, filename, revision=revision, offline=offline,
                    fetch_hint=f"Run it once online to cache {repo}, or give a local diffusers folder.")
    try:
        return json.loads(path.read_text()), commit_of(path)
    except ValueError as e:
        raise SidbenchError(f"{repo}/{filename}: not valid JSON ({e})") from None


# The files a transformers model folder needs (config, tokenizer, processor, weights in safetensors): not the
# pickled, TensorFlow or Flax copies of the same weights that many repositories also hold.
TRANSFORMERS_FILES = ["*.json", "*.txt", "model.safetensors"]


def hub_folder(repo: str, *, revision: str | None = None, allow: list[str] | None = None, fetch_hint: str = "",
               offline: bool | None = None, progress: bool = True) -> Path:
    """A snapshot of ``repo`` (the files matching ``allow``) in the hub cache. Online, huggingface_hub fetches only
    what the cache lacks (so a cut download completes); offline, the cached snapshot or the refusal."""
    from huggingface_hub import snapshot_download

    if downloads_off() if offline is None else offline:
        try:
            return Path(snapshot_download(repo, revision=revision, allow_patterns=allow, local_files_only=True))
        except Exception:  # not cached
            _refuse_offline(repo + (f"@{revision[:12]}" if revision else ""), fetch_hint, True)
    try:
        with _progress_bars(progress):
            return Path(snapshot_download(repo, revision=revision, allow_patterns=allow, endpoint=endpoint()))
    except Exception as e:
        raise hub_error(e, repo, "its files") from None


def forget(path: str | os.PathLike) -> None:
    """Remove a cached hub file (its snapshot link and the blob it points to), e.g. one that failed its pin."""
    path = Path(path)
    blob = Path(os.path.realpath(path))
    for p in (path, blob):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
