"""One way to download a file: streamed, resumable, verified, and in place only once verified.

A partial download is kept beside its target as ``NAME.part`` and resumed with an HTTP range request on the next
try; a file whose size or sha256 contradicts the pin is removed, never put in place. Downloads are off when the user
says so (``--offline``, ``SIDBENCH_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``): then a missing file is an error that names
the command which fetches it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from sidbench.core.errors import SidbenchError
from sidbench.core.outputs import check_output, write_error

_TRUE = {"1", "true", "yes", "on"}
_offline_override: bool | None = None  # set by --offline for this process


class OfflineError(SidbenchError):
    """A file is needed that is not here, and downloads are off."""


class DownloadError(SidbenchError):
    """A download failed, was cut short or did not verify."""


def offline() -> bool:
    """Whether downloads are off: --offline for this process, else SIDBENCH_OFFLINE or HF_HUB_OFFLINE in the environment."""
    if _offline_override is not None:
        return _offline_override
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("SIDBENCH_OFFLINE", "HF_HUB_OFFLINE"))


_hf_env_before: list = []  # HF_HUB_OFFLINE as it was before set_offline(True) changed it


def set_offline(value: bool | None) -> None:
    """--offline: forbid downloads in this process (None: follow the environment again, as it was). Hub libraries
    follow too, through HF_HUB_OFFLINE."""
    global _offline_override
    _offline_override = value
    if value and not _hf_env_before:
        _hf_env_before.append(os.environ.get("HF_HUB_OFFLINE"))
        os.environ["HF_HUB_OFFLINE"] = "1"  # huggingface_hub, diffusers and transformers read it
    elif value is None and _hf_env_before:
        before = _hf_env_before.pop()
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def require_online(what: str, fetch_hint: str) -> None:
    """Raise the offline error for ``what`` when downloads are off; ``fetch_hint`` says how to get it by hand."""
    if offline():
        raise OfflineError(f"{what} is not here and downloads are off (--offline, SIDBENCH_OFFLINE or HF_HUB_OFFLINE). "
                           f"{fetch_hint}")


def _locks_dir() -> Path:
    """Where download locks live: $SIDBENCH_LOCKS, else ~/.cache/sidbench/locks (never in the user's folders)."""
    env = os.environ.get("SIDBENCH_LOCKS")
    return Path(env) if env else Path.home() / ".cache" / "sidbench" / "locks"


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock on ``path``'s download, so the processes of one launch fetch a file once, not once each.

    The lock file is named by the target's absolute path and kept in one folder: deleting it after use would let a
    late process lock a new file while another still holds the old one. Where no lock can be had, none is taken.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    try:
        folder = _locks_dir()
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / f"{key}.lock", "a")
    except OSError:  # a read-only home: the download still works, only unguarded against a second process
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _hash_existing(path: Path, h) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
            n += len(block)
    return n


def _progress(total: int | None, done: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled, file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 10.0)


def download(url: str, target: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
             sha256_prefix: str | None = None, desc: str | None = None, progress: bool = True,
             timeout: float = 60.0, fetch_hint: str | None = None, shown: str | None = None) -> str:
    """Download ``url`` to ``target`` (resuming ``target.part``), verify the pins, put it in place; its sha256.

    An existing ``target`` is not fetched again (its hash is checked against the pins). A transfer cut short
    keeps the part for the next try; a complete file that fails its pins is removed. ``shown``: what errors call
    the file, when ``target`` is a staging name the user never sees.
    """
    target = Path(target)
    desc = desc or target.name
    shown = shown or str(target)
    hint = fetch_hint or f"Download {url} and put it at {shown}."
    if target.is_file():
        return verify(target, sha256=sha256, size=size, sha256_prefix=sha256_prefix, source=url)
    require_online(shown, hint)  # before anything is made on disk
    check_output(target, "download to")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(target.parent, e) from None
    with _lock(target):
        if target.is_file():  # another process fetched it while this one waited
            return verify(target, sha256=sha256, size=size, sha256_prefix=sha256_prefix, source=url)
        part = target.with_name(target.name + ".part")
        h = hashlib.sha256()
        have = _hash_existing(part, h) if part.is_file() else 0
        if size is not None and have > size:  # a part longer than the file: start again
            part.unlink()
            h, have = hashlib.sha256(), 0
        if size is not None and have == size:
            got = have
        else:
            got, h = _transfer(url, part, h, have, size, desc, progress, timeout)
        digest = h.hexdigest()
        problem = _pin_problem(digest, got, sha256, size, sha256_prefix)
        if problem:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the downloaded file {problem}; it was removed, not kept. Run again, or "
                                f"check the source")
        os.chmod(part, 0o644)
        os.replace(part, target)
        return digest


def _transfer(url: str, part: Path, h, have: int, size: int | None, desc: str, progress: bool, timeout: float):
    """Stream ``url`` into ``part`` from byte ``have`` on; returns the bytes now in ``part`` and their running sha256."""
    req = urllib.request.Request(url, headers={"User-Agent": "sidbench", **({"Range": f"bytes={have}-"} if have else {})})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the server says the part is already whole
            return have, h
        raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"could not download {url}: {reason}") from None
    with resp:
        if have and resp.status != 206:  # the server ignored the range: start again
            h, have = hashlib.sha256(), 0
        mode = "ab" if have else "wb"
        length = resp.headers.get("Content-Length")
        announced = (have + int(length)) if length and length.isdigit() else None
        total = announced or size
        got = have
        try:
            f = open(part, mode)
        except OSError as e:
            raise write_error(part, e) from None
        with f, _progress(total, have, desc, progress) as bar:
            while True:
                try:
                    block = resp.read(1 << 20)
                except OSError as e:  # the connection, not the disk
                    raise DownloadError(f"download of {url} stopped at {got:,} of {total or '?'} bytes ({e}); the "
                                        f"part is kept at {part}: run the same command again to resume") from None
                if not block:
                    break
                try:
                    f.write(block)
                except OSError as e:  # a full disk or quota: what is written stays, to resume once there is room
                    raise write_error(part, e) from None
                h.update(block)
                got += len(block)
                bar.update(len(block))
    expected = announced if announced is not None else size  # short of what the server announced: cut, not wrong
    if expected is not None and got < expected:
        raise DownloadError(f"download of {url} stopped at {got:,} of {expected:,} bytes; the part is kept at "
                            f"{part}: run the same command again to resume")
    return got, h


def _pin_problem(digest: str, got: int, sha256: str | None, size: int | None, prefix: str | None) -> str | None:
    if size is not None and got != size:
        return f"has {got:,} bytes, not the pinned {size:,}"
    if sha256 and digest != sha256:
        return f"has sha256 {digest}, not the pinned {sha256}"
    if prefix and not digest.startswith(prefix):
        return f"has sha256 {digest}, which does not start with the pinned prefix {prefix}"
    return None


def verify(path: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
           sha256_prefix: str | None = None, source: str | None = None) -> str:
    """The file's sha256, after checking it against whichever pins are given (a mismatch names the file)."""
    path = Path(path)
    h = hashlib.sha256()
    got = _hash_existing(path, h)
    problem = _pin_problem(h.hexdigest(), got, sha256, size, sha256_prefix)
    if problem:
        raise DownloadError(f"{path} {problem}: it is corrupt or a different file; delete it and fetch it again"
                            + (f" ({source})" if source else ""))
    return h.hexdigest()
