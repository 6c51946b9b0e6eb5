"""A prompt list that is one member of a tar archive in a Hugging Face hub repository (SiD-LSG's training prompts).

The archive's name is not published, so it is found by listing the repository at the manifest's revision (the
``.tar`` files, those named like the list first) and opening each until one holds the member; where the pinned
revision has no archive at all, the manifest's fallback revision is listed instead. Archives come through
``sidbench.core.hub`` (its cache: a second fetch, or one offline, sends nothing). No source publishes the list's
hash, so what was extracted is recorded in a sidecar ``<list>.json`` (repository, commit, archive, member, md5,
sha256, lines): the list's identity from then on.
"""
from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from sidbench.core import hub
from sidbench.core.atomic import atomic_path, write_json
from sidbench.core.download import OfflineError
from sidbench.core.errors import SidbenchError

ARCHIVES = (".tar", ".tar.gz", ".tgz")


def _candidates(files: list[str], member: str) -> list[str]:
    """The repository's archives in the order to open them: named as the member (aesthetics_6_plus.tar), then
    sharing its first word (aesthetics_...), then the others."""
    stem = member.split(".")[0].lower()

    def order(f: str):
        name = Path(f).name.lower()
        return name.split(".")[0] != stem, stem.split("_")[0] not in name, f

    return sorted((f for f in files if f.endswith(ARCHIVES)), key=order)


def _member_of(archive: Path, member: str) -> tarfile.TarInfo | None:
    with tarfile.open(archive) as tar:
        for info in tar:
            if info.isfile() and Path(info.name).name == member:
                return info
    return None


def _find(spec, hint: str) -> tuple[Path, str, str, tarfile.TarInfo]:
    """(archive in the hub cache, its name in the repository, the revision listed, the member's entry)."""
    h = spec.hub
    refused = None
    for revision in dict.fromkeys((h["revision"], h["fallback_revision"])):
        try:
            archives = _candidates(hub.list_files(h["repo"], revision, fetch_hint=hint), h["member"])
        except OfflineError as e:  # offline, the other revision may be the one in the cache
            refused = refused or e
            continue
        for name in archives:
            path = hub.hub_file(h["repo"], name, revision=revision, fetch_hint=hint)
            try:
                info = _member_of(path, h["member"])
            except (tarfile.TarError, OSError, EOFError) as e:
                hub.forget(path)
                raise SidbenchError(f"{h['repo']}/{name}: not a readable tar archive ({e}); it was removed from the "
                                    f"hub cache. Run the same command again") from None
            if info is not None:
                return path, name, revision, info
            hub.forget(path)  # another archive: not kept in the cache
        if archives:  # archives there, none with the list: another revision is not asked
            raise SidbenchError(f"none of the archives of {h['repo']} at {revision} ({', '.join(archives)}) holds "
                                f"{h['member']}. {hint}")
    if refused is not None:
        raise refused
    raise SidbenchError(f"{h['repo']} has no .tar archive at {h['revision']} nor at {h['fallback_revision']}. {hint}")


def _same_as_recorded(target: Path) -> dict | None:
    """The sidecar of an earlier fetch when ``target`` is still the file it describes."""
    import json

    from sidbench.data.prompts import prompts_md5, sidecar_path

    try:
        meta = json.loads(sidecar_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("md5") == prompts_md5(target) else None


def fetch_from_hub_archive(spec, target: Path) -> dict:
    """Put ``spec``'s list at ``target`` and its sidecar beside it; returns the sidecar (what was extracted).
    An existing ``target`` is kept when its sidecar says it is this list, else refused (never overwritten)."""
    from sidbench.data.prompts import describe_prompts, sidecar_path

    h = spec.hub
    if target.exists():
        meta = _same_as_recorded(target)
        if meta is None or meta.get("list") != spec.name:
            raise SidbenchError(f"{target} already exists and is not {spec.name} as fetched before (no sidecar "
                                f"{sidecar_path(target).name} with its md5); remove it or choose another --out")
        return meta
    hint = (f"Download the .tar holding {h['member']} from {hub.HUB}/{h['repo']}/tree/{h['revision']}, extract "
            f"{h['member']} and give it to --prompts (check it with `sidbench prompts check FILE`).")
    archive, name, revision, info = _find(spec, hint)
    with atomic_path(target) as tmp:  # put in place only once it reads as a prompt list
        with tarfile.open(archive) as tar, tar.extractfile(info) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        try:
            d = describe_prompts(tmp)
        except SidbenchError as e:  # named by where it came from, not by the temporary file
            raise SidbenchError(f"{h['member']} in {h['repo']}/{name}: {str(e).removeprefix(f'{tmp}: ')}; it was "
                                f"not kept") from None
    meta = {"list": spec.name, "source": f"{hub.HUB}/{h['repo']}", "repo": h["repo"], "revision": revision,
            "commit": hub.commit_of(archive), "archive": name, "member": info.name, "md5": d["md5"],
            "sha256": d["sha256"], "bytes": d["bytes"], "lines": d["lines"], "distinct": d["distinct"],
            "published_hash": None, "why_no_published_hash": spec.unpinned}
    write_json(sidecar_path(target), meta)
    return meta
