"""``sidbench data fetch``: a known dataset's archive downloaded, verified, extracted whole, then described.

The archive goes through the one downloader (resumed from ``ARCHIVE.part``, its size and sha256 checked before it
is put in place) into the folder that holds DIR. It is extracted into a hidden folder beside DIR, counted, and
renamed to DIR only when complete, with a manifest (``DIR/sidbench-dataset.json``: the dataset's name, the
archive's URL, size and sha256, the image count and the hash of the file list) that later verbs read. A DIR that
already holds the complete dataset is left as it is.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

from sidbench.core.atomic import write_json
from sidbench.core.errors import SidbenchError
from sidbench.core.outputs import REFUSED_WRITE, check_output, write_error
from sidbench.data.dataset_table import KnownDataset, get_dataset
from sidbench.data.images import list_image_files, listing_sha256

FOLDER_MANIFEST = "sidbench-dataset.json"
FOLDER_SCHEMA = "sidbench.dataset/1"
LISTING_RULE = ("sha256 over 'relative path TAB size' per line, one line per image file (every extracted file of a "
                "set that is not images), sorted by path: the listing_sha256 of statistics made from the folder")


def content_files(folder: Path, spec: KnownDataset) -> list[str]:
    """The files a dataset's folder is identified by: its images (as every verb lists them), else every file."""
    if spec.kind == "images":
        return list_image_files(folder)
    found = [os.path.join(root, f) for root, _, files in os.walk(folder) for f in files if f != FOLDER_MANIFEST]
    return sorted(found)


def read_folder_manifest(folder: str | os.PathLike) -> dict | None:
    """``DIR/sidbench-dataset.json`` as written by a fetch, or None where there is none."""
    path = Path(folder) / FOLDER_MANIFEST
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise SidbenchError(f"{path}: cannot read it ({e}); remove the folder and fetch the dataset again") from None
    if not isinstance(doc, dict) or doc.get("schema") != FOLDER_SCHEMA or not isinstance(doc.get("name"), str):
        raise SidbenchError(f"{path} is not a dataset manifest written by `sidbench data fetch` (schema "
                            f"{FOLDER_SCHEMA}); remove it or the folder")
    return doc


def check_folder(folder: str | os.PathLike, doc: dict) -> None:
    """Refuse a fetched folder whose files changed since (the listing hash in its manifest no longer holds)."""
    spec = get_dataset(doc["name"])
    now = listing_sha256(folder, content_files(Path(folder), spec))
    if now != doc.get("listing_sha256"):
        raise SidbenchError(f"{folder} held {doc['name']} when it was fetched, but its files have changed since "
                            f"(file-list hash {now[:12]}…, the manifest says {str(doc.get('listing_sha256'))[:12]}…); "
                            f"remove the folder and run `sidbench data fetch {doc['name']} {folder}` again")


def dataset_record(doc: dict, folder: str | os.PathLike) -> dict:
    """What a statistics file or result records of the dataset a folder holds (from its manifest)."""
    return {"name": doc["name"], "listing_sha256": doc["listing_sha256"], "images": doc.get("images"),
            "archive_sha256": doc["archive"]["sha256"], "source_url": doc["source_url"],
            "manifest": os.path.abspath(os.path.join(folder, FOLDER_MANIFEST))}


def archive_path(spec: KnownDataset, dest: str | os.PathLike) -> Path:
    """Where the archive is downloaded: beside DIR (a copy already there is verified and used)."""
    return Path(os.path.abspath(dest)).parent / spec.archive


def fetch_dataset(name: str, dest: str | os.PathLike, *, url: str | None = None, keep_archive: bool = False,
                  progress: bool = True) -> tuple[dict, bool]:
    """Put the dataset ``name`` in ``dest``; returns its folder manifest and whether anything was done.

    ``url``: a mirror of the archive (the pins still apply). The archive is removed after a complete extraction
    unless ``keep_archive``.
    """
    from sidbench.core.download import download

    spec = get_dataset(name)
    dest = Path(dest)
    existing = read_folder_manifest(dest) if dest.is_dir() else None
    if existing is not None:
        if existing["name"] != spec.name:
            raise SidbenchError(f"{dest} already holds {existing['name']}, not {spec.name}; choose another folder")
        check_folder(dest, existing)
        return existing, False
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise SidbenchError(f"{dest} exists and is not a folder fetched by sidbench (no {FOLDER_MANIFEST}); "
                            f"give a new or empty folder")
    check_output(dest, "DIR", folder=True)  # before gigabytes are downloaded
    archive = archive_path(spec, dest)
    source = url or spec.url
    sha = download(source, archive, sha256=spec.sha256, size=spec.bytes, desc=spec.archive, progress=progress,
                   fetch_hint=f"Online, run: sidbench data fetch {spec.name} {dest}; or download {spec.url} "
                              f"(sha256 {spec.sha256}) to {archive} and run that command again.")
    doc = _extract(spec, archive, dest, progress)
    doc.update(source_url=source, official_url=spec.url,
               archive={"name": spec.archive, "bytes": spec.bytes, "sha256": sha})
    tmp = _staging(dest)
    write_json(tmp / FOLDER_MANIFEST, doc)
    if dest.is_dir():
        dest.rmdir()  # empty (checked above): the complete folder takes its place
    os.replace(tmp, dest)
    if not keep_archive:
        archive.unlink()
    return doc, True


def _staging(dest: Path) -> Path:
    return Path(os.path.abspath(dest)).parent / f".{dest.name}.extracting"


def _members(spec: KnownDataset, zf: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    """The members to extract, each checked to lie under the dataset's top folder (no absolute or '..' paths)."""
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if spec.extract is not None:
        by_name = {i.filename: i for i in infos}
        missing = [m for m in spec.extract if m not in by_name]
        if missing:
            raise SidbenchError(f"{archive} has no {', '.join(missing)}: it is not {spec.archive} as {spec.name} "
                                f"describes it")
        infos = [by_name[m] for m in spec.extract]
    for i in infos:
        parts = i.filename.replace("\\", "/").split("/")
        if i.filename.startswith("/") or ".." in parts or parts[0] != spec.top_folder:
            raise SidbenchError(f"{archive}: member {i.filename!r} is not under {spec.top_folder}/; it is not "
                                f"{spec.archive} as {spec.name} describes it, and nothing was extracted")
    return infos


def _extract(spec: KnownDataset, archive: Path, dest: Path, progress: bool) -> dict:
    """Extract into a hidden folder beside ``dest``, count and hash what came out; the folder manifest's fields."""
    from tqdm import tqdm

    from sidbench import __version__

    tmp = _staging(dest)
    if tmp.exists():
        shutil.rmtree(tmp)  # an extraction that stopped half way: start it again
    tmp.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _members(spec, zf, archive)
            for info in tqdm(members, desc=f"extract {spec.archive}", unit="file", disable=not progress,
                             file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 10.0):
                zf.extract(info, tmp)
        files = content_files(tmp, spec)
        if spec.images is not None and len(files) != spec.images:
            raise SidbenchError(f"{archive} holds {len(files):,} images, not the {spec.images:,} of {spec.name}; "
                                f"nothing was kept")
    except zipfile.BadZipFile as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SidbenchError(f"{archive} is not a readable zip archive ({e}); delete it and fetch again") from None
    except OSError as e:  # a full disk while extracting: one line; the verified archive stays for the next try
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno not in REFUSED_WRITE:
            raise
        raise write_error(tmp, e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"schema": FOLDER_SCHEMA, "name": spec.name, "description": spec.description, "kind": spec.kind,
            "images": len(files) if spec.kind == "images" else None, "files": len(files),
            "listing_sha256": listing_sha256(tmp, files), "listing": LISTING_RULE, "sidbench_version": __version__}
