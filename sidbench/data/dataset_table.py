"""The datasets sidbench can fetch: one JSON manifest each, package data in ``sidbench/data/dataset_sets/``.

A manifest names the official archive (URL, bytes, sha256), what is extracted from it (its top folder, or only some
members), how many images it holds, and where each of those facts comes from (``sources``). The protocol registry
(``sidbench.eval.protocols``) names its reference dataset here, so a reference set's image count is written in its
manifest and nowhere else.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sidbench.core.errors import SidbenchError

MANIFEST_PACKAGE = "sidbench.data.dataset_sets"
MANIFEST_SCHEMA = "sidbench.datasets.manifest/1"
# Every field a manifest has, in the order it is written.
MANIFEST_FIELDS = ("schema", "name", "description", "kind", "url", "archive", "bytes", "sha256", "top_folder",
                   "extract", "images", "sources", "licence", "licence_source")
SOURCE_FIELDS = ("url", "bytes", "sha256", "images")
KINDS = ("images", "annotations")
_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")


@dataclass(frozen=True)
class KnownDataset:
    """A dataset sidbench fetches: its official archive, what it holds, and the source of each fact."""

    name: str
    description: str
    kind: str                          # images | annotations
    url: str                           # the official archive
    archive: str                       # its file name
    bytes: int
    sha256: str | None                 # None: no primary source publishes one (sources["sha256"] says so)
    top_folder: str                    # every extracted path starts with it
    extract: tuple[str, ...] | None    # only these members (None: the whole archive)
    images: int | None                 # images in the set (None: not an image set)
    sources: dict                      # fact -> where it comes from
    licence: str
    licence_source: str
    manifest: str | None = None        # where the manifest was read from


def _error(where, problem: str) -> SidbenchError:
    return SidbenchError(f"dataset manifest {where}: {problem}")


def parse_manifest(where, text: str, stem: str) -> KnownDataset:
    """Check one manifest's fields; every problem names the file."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise _error(where, f"not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise _error(where, "expected a JSON object")
    unknown = sorted(set(doc) - set(MANIFEST_FIELDS))
    missing = [k for k in MANIFEST_FIELDS if k not in doc]
    if unknown or missing:
        raise _error(where, f"unknown field(s) {unknown or 'none'}, missing field(s) {missing or 'none'}; "
                            f"a manifest has: {', '.join(MANIFEST_FIELDS)}")

    def bad(key: str, want: str) -> SidbenchError:
        return _error(where, f"field {key!r} must be {want}, got {doc[key]!r}")

    if doc["schema"] != MANIFEST_SCHEMA:
        raise bad("schema", repr(MANIFEST_SCHEMA))
    for key in ("name", "description", "url", "archive", "top_folder", "licence", "licence_source"):
        if not isinstance(doc[key], str) or not doc[key].strip():
            raise bad(key, "a non-empty string")
    if not _NAME.fullmatch(doc["name"]) or doc["name"] != stem:
        raise _error(where, f"field 'name' is {doc['name']!r}: it must be the file's name ({stem!r}) in lower-case "
                            f"letters, digits, '.' and '-'")
    if doc["kind"] not in KINDS:
        raise bad("kind", " or ".join(KINDS))
    if not isinstance(doc["bytes"], int) or isinstance(doc["bytes"], bool) or doc["bytes"] < 1:
        raise bad("bytes", "a positive integer")
    if doc["sha256"] is not None and not (isinstance(doc["sha256"], str) and re.fullmatch("[0-9a-f]{64}", doc["sha256"])):
        raise bad("sha256", "64 lower-case hex digits, or null (with the reason in sources.sha256)")
    images = doc["images"]
    if doc["kind"] == "images" and (not isinstance(images, int) or isinstance(images, bool) or images < 1):
        raise bad("images", "a positive integer for an image set")
    if doc["kind"] != "images" and images is not None:
        raise bad("images", "null for a set that is not images")
    extract = doc["extract"]
    if extract is not None and (not isinstance(extract, list) or not extract
                                or not all(isinstance(m, str) and m.startswith(doc["top_folder"] + "/") for m in extract)):
        raise bad("extract", f"null or a list of archive members under {doc['top_folder']!r}/")
    sources = doc["sources"]
    if not isinstance(sources, dict) or sorted(sources) != sorted(SOURCE_FIELDS) or not all(
            isinstance(v, str) and v.strip() for v in sources.values()):
        raise bad("sources", f"an object saying where each of {', '.join(SOURCE_FIELDS)} comes from")
    return KnownDataset(name=doc["name"], description=doc["description"], kind=doc["kind"], url=doc["url"],
                        archive=doc["archive"], bytes=doc["bytes"], sha256=doc["sha256"],
                        top_folder=doc["top_folder"], extract=tuple(extract) if extract else None, images=images,
                        sources=dict(sources), licence=doc["licence"], licence_source=doc["licence_source"],
                        manifest=str(where))


def load_manifests(folder=None) -> dict[str, KnownDataset]:
    """Every ``<name>.json`` of ``folder`` (default: the packaged manifests), checked."""
    root = resources.files(MANIFEST_PACKAGE) if folder is None else Path(folder)
    out = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json") and entry.is_file():
            try:
                text = entry.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise _error(entry, f"cannot read it ({e})") from None
            spec = parse_manifest(entry, text, entry.name[: -len(".json")])
            out[spec.name] = spec
    return out


# The table of known datasets, built from the manifests; protocols refer to entries by name.
KNOWN_DATASETS: dict[str, KnownDataset] = load_manifests()


def get_dataset(name: str) -> KnownDataset:
    if name not in KNOWN_DATASETS:
        raise SidbenchError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)} (sidbench data list)")
    return KNOWN_DATASETS[name]
