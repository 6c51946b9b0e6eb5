"""Prompt lists: read and check them, recognise the published ones by hash, draw seeded COCO samples.

A prompt list is a UTF-8 text file with one prompt per line. Prompt ``i`` goes with seed ``i`` and
image ``{i:06d}.png``, so the exact bytes of the list are part of an evaluation protocol: the
``coco2014-30k`` protocol uses one fixed list, recognised by its md5. The lists the project knows are
described by one JSON manifest each in the repository's top-level ``prompts/`` folder, installed as the
package data ``sidbench.data.prompt_sets``; :data:`KNOWN_PROMPT_LISTS` is built from them (and the
protocol registry names its list there, so no hash is written twice). Third-party lists are fetched and
verified (:func:`fetch_prompt_list`); the lists the project defines (the demo world's) are shipped.
When that list is not at hand, :func:`sample_coco_captions` draws a seeded sample from a COCO
captions annotation file; such a list is a *different* protocol and is labelled so in its sidecar.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, NamedTuple

from sidbench.core.atomic import atomic_path, write_json
from sidbench.core.download import DownloadError, download
from sidbench.core.outputs import check_output
from sidbench.core.errors import SidbenchError


@dataclass(frozen=True)
class KnownPromptList:
    """A prompt list the project knows, identified by the md5 of its bytes (one manifest in ``prompts/``)."""

    name: str
    description: str
    protocol: str          # the protocol (docs/spec) this list belongs to
    md5: str | None        # None only for a list no source publishes a hash of (``unpinned`` says why)
    lines: int | None
    distinct: int | None
    url: str | None        # where a third-party list is fetched from (None: shipped with sidbench)
    filename: str
    sha256: str | None = None
    bytes: int | None = None
    packaged: bool = False  # the list itself is package data beside its manifest
    licence: str | None = dataclasses.field(default=None, repr=False)
    licence_source: str | None = dataclasses.field(default=None, repr=False)
    made_by: str | None = dataclasses.field(default=None, repr=False)
    manifest: str | None = dataclasses.field(default=None, repr=False)  # where the manifest was read from
    hub: dict | None = None         # a member of an archive in a hub repository: repo, revision, member
    unpinned: str | None = None     # why md5 etc. are unknown (no source publishes them); None: pinned


# --------------------------------------------------------------------------------------------
# Manifests: the repository's top-level prompts/ folder, installed as this package
# --------------------------------------------------------------------------------------------

MANIFEST_PACKAGE = "sidbench.data.prompt_sets"
MANIFEST_SCHEMA = "sidbench.prompts.manifest/1"
# Every field a manifest has, in the order it is written.
MANIFEST_FIELDS = ("schema", "name", "description", "protocol", "filename", "packaged", "md5", "sha256", "bytes",
                   "lines", "distinct", "source_url", "licence", "licence_source", "made_by")
# Fields only a list taken from a hub archive has, written after those: where it is, and why it has no hashes.
OPTIONAL_FIELDS = ("source_hub", "unpinned")
HUB_FIELDS = ("repo", "revision", "fallback_revision", "member")
_MEASURED = ("md5", "sha256", "bytes", "lines", "distinct")  # null together, and only with 'unpinned'
_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")
_HEX_DIGITS = {"md5": 32, "sha256": 64}


def _manifest_error(where, problem: str) -> SidbenchError:
    return SidbenchError(f"prompt manifest {where}: {problem}")


def _parse_manifest(where, text: str, stem: str) -> KnownPromptList:
    """Check one manifest's fields; every problem names the file."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise _manifest_error(where, f"not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise _manifest_error(where, "expected a JSON object")
    unknown = sorted(set(doc) - set(MANIFEST_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise _manifest_error(where, f"unknown field(s) {', '.join(map(repr, unknown))}; a manifest has: "
                                     f"{', '.join(MANIFEST_FIELDS)} (and may have {', '.join(OPTIONAL_FIELDS)})")
    missing = [k for k in MANIFEST_FIELDS if k not in doc]
    if missing:
        raise _manifest_error(where, f"missing field(s) {', '.join(map(repr, missing))}")

    def bad(key: str, want: str):
        return _manifest_error(where, f"field {key!r} must be {want}, got {doc[key]!r}")

    if doc["schema"] != MANIFEST_SCHEMA:
        raise bad("schema", repr(MANIFEST_SCHEMA))
    for key in ("name", "description", "protocol", "filename", "licence", "licence_source", "made_by"):
        if not isinstance(doc[key], str) or not doc[key].strip():
            raise bad(key, "a non-empty string")
    if not _NAME.fullmatch(doc["name"]):
        raise bad("name", "lower-case letters, digits, '.' and '-'")
    if doc["name"] != stem:
        raise _manifest_error(where, f"field 'name' is {doc['name']!r} but the file is named {stem!r}.json; "
                                     f"a list is known by its file name")
    if "/" in doc["filename"] or "\\" in doc["filename"] or doc["filename"] in (".", ".."):
        raise bad("filename", "a plain file name")
    if not isinstance(doc["packaged"], bool):
        raise bad("packaged", "true or false")
    hub = doc.get("source_hub")
    if hub is not None and not (isinstance(hub, dict) and set(hub) == set(HUB_FIELDS)
                                and all(isinstance(v, str) and v.strip() for v in hub.values())):
        raise bad("source_hub", f"an object of strings {', '.join(HUB_FIELDS)}")
    unpinned = doc.get("unpinned")
    if unpinned is not None:
        if not isinstance(unpinned, str) or not unpinned.strip():
            raise bad("unpinned", "the reason no hash is known (a non-empty string)")
        if hub is None or doc["packaged"]:  # a URL's download and a shipped list are checked against their md5
            raise _manifest_error(where, "'unpinned' is only for a list taken from a hub archive ('source_hub')")
        if any(doc[key] is not None for key in _MEASURED):
            raise _manifest_error(where, f"'unpinned' says no hash is known, so {', '.join(_MEASURED)} must be null")
    else:
        for key, digits in _HEX_DIGITS.items():
            if not isinstance(doc[key], str) or not re.fullmatch(f"[0-9a-f]{{{digits}}}", doc[key]):
                raise bad(key, f"{digits} lower-case hex digits")
        for key in ("bytes", "lines", "distinct"):
            if not isinstance(doc[key], int) or isinstance(doc[key], bool) or doc[key] < 1:
                raise bad(key, "a positive integer")
    if doc["distinct"] is not None and doc["distinct"] > doc["lines"]:
        raise _manifest_error(where, f"'distinct' ({doc['distinct']}) is more than 'lines' ({doc['lines']})")
    url = doc["source_url"]
    if url is not None and not (isinstance(url, str) and url.startswith(("https://", "http://"))):
        raise bad("source_url", "an http(s) URL or null")
    if url is None and not doc["packaged"]:
        raise _manifest_error(where, "'source_url' is null but the list is not packaged: there is no way to get it")
    return KnownPromptList(name=doc["name"], description=doc["description"], protocol=doc["protocol"],
                           md5=doc["md5"], lines=doc["lines"], distinct=doc["distinct"], url=url,
                           filename=doc["filename"], sha256=doc["sha256"], bytes=doc["bytes"],
                           packaged=doc["packaged"], licence=doc["licence"], licence_source=doc["licence_source"],
                           made_by=doc["made_by"], manifest=str(where), hub=hub, unpinned=unpinned)


def _manifest_root():
    try:
        return resources.files(MANIFEST_PACKAGE)
    except ModuleNotFoundError:
        raise SidbenchError(f"the prompt manifests (package data {MANIFEST_PACKAGE}, the repository's prompts/ "
                            f"folder) are not installed; reinstall sidbench (in a checkout: make install)") from None


def load_manifests(folder: str | os.PathLike | None = None) -> dict[str, KnownPromptList]:
    """Read every ``<name>.json`` manifest of ``folder`` (default: the packaged ``prompts/`` folder).

    Each is checked field by field (:data:`MANIFEST_FIELDS`, nothing more, nothing less); a wrong field is
    an error naming the file. A packaged list must be there beside its manifest, and two manifests may not
    claim the same md5 (a list is recognised by it).
    """
    root = _manifest_root() if folder is None else Path(folder)
    out: dict[str, KnownPromptList] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json") or not entry.is_file():
            continue
        try:
            text = entry.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise _manifest_error(entry, f"cannot read it ({e})") from None
        spec = _parse_manifest(entry, text, entry.name[: -len(".json")])
        if spec.packaged and not root.joinpath(spec.filename).is_file():
            raise _manifest_error(entry, f"the list is packaged but {spec.filename!r} is not beside the manifest")
        for other in out.values():
            if spec.md5 is not None and other.md5 == spec.md5:
                raise _manifest_error(entry, f"md5 {spec.md5} is also {other.name}'s ({other.manifest})")
        out[spec.name] = spec
    return out


def make_manifest(data: bytes, *, name: str, description: str, protocol: str, filename: str, packaged: bool,
                  source_url: str | None, licence: str, licence_source: str, made_by: str) -> dict:
    """The manifest of the list ``data`` (its bytes): hashes and counts computed, the rest as given.

    Deterministic (no dates, no versions), so a regenerated manifest equals the committed one.
    """
    prompts = _decode_prompts(data, filename)
    doc = {"schema": MANIFEST_SCHEMA, "name": name, "description": description, "protocol": protocol,
           "filename": filename, "packaged": packaged, "md5": hashlib.md5(data).hexdigest(),
           "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "lines": len(prompts),
           "distinct": len(set(prompts)), "source_url": source_url, "licence": licence,
           "licence_source": licence_source, "made_by": made_by}
    _parse_manifest(f"{name}.json (being made)", json.dumps(doc), name)
    return doc


def manifest_text(doc: dict) -> str:
    return json.dumps({k: doc[k] for k in MANIFEST_FIELDS + OPTIONAL_FIELDS if k in doc}, indent=2,
                      ensure_ascii=False) + "\n"


def write_packaged_list(folder: str | os.PathLike, prompts: list[str], **fields) -> dict:
    """Write ``<name>.txt`` (UTF-8, ``\\n``, final newline) and its manifest ``<name>.json`` into ``folder``.

    For lists the project itself defines (they are shipped: ``packaged`` is true, ``source_url`` null).
    ``fields`` are :func:`make_manifest`'s descriptive ones. Returns the manifest.
    """
    from sidbench.core.atomic import write_text

    name = fields["name"]
    _check_writable(prompts)
    data = _canonical_bytes(prompts)
    doc = make_manifest(data, filename=f"{name}.txt", packaged=True, source_url=None, **fields)
    folder = Path(folder)
    with atomic_path(folder / doc["filename"]) as tmp:
        tmp.write_bytes(data)
    write_text(folder / f"{name}.json", manifest_text(doc))
    return doc


# The table of known lists, built from the manifests; the protocol registry refers to entries by name.
KNOWN_PROMPT_LISTS: dict[str, KnownPromptList] = load_manifests()

LOADERS = ("json", "datasets")


class ImageRef(NamedTuple):
    """A COCO image a sampled caption came from."""

    image_id: int
    file_name: str


# --------------------------------------------------------------------------------------------
# Reading, describing and writing lists
# --------------------------------------------------------------------------------------------

def _read_bytes(path: str | os.PathLike, what: str) -> bytes:
    p = Path(path)
    if not p.exists():
        raise SidbenchError(f"{what} not found: {p}")
    if not p.is_file():
        raise SidbenchError(f"{what} is not a file: {p}")
    try:
        return p.read_bytes()
    except OSError as e:
        raise SidbenchError(f"cannot read {what} {p}: {e}") from None


def _decode_prompts(data: bytes, path: str | os.PathLike) -> list[str]:
    try:
        # utf-8-sig: plain UTF-8, but a leading byte-order mark is not glued onto prompt 0.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SidbenchError(f"{path}: not UTF-8 text (undecodable byte at line {line}, byte offset {e.start}); "
                            f"a prompt list must be UTF-8, one prompt per line") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.endswith("\n"):
        text = text[:-1]          # one final newline ends the last line; it does not start a new prompt
    if not text:
        raise SidbenchError(f"{path}: the prompt list is empty")
    prompts = text.split("\n")
    for i, p in enumerate(prompts):
        if not p.strip():
            raise SidbenchError(f"{path}: line {i + 1} is empty; every line must hold a prompt (an empty "
                                f"prompt would shift the caption/seed/image-index pairing silently)")
    return prompts


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Read a prompt list: UTF-8, one prompt per line.

    Line endings are normalised (``\\r\\n`` and ``\\r`` become ``\\n``) and a final newline does not
    make an empty last prompt. An empty (or whitespace-only) line anywhere else is an error naming
    the line: the SiD-LSG reference loader silently kept such lines as empty prompts (an image is
    then generated and scored for an empty caption, unnoticed); we refuse instead. Prompts are
    otherwise returned exactly as written (no stripping).
    """
    return _decode_prompts(_read_bytes(path, "prompt list"), path)


def prompts_md5(path: str | os.PathLike) -> str:
    """md5 of the file's bytes (the hash published prompt lists are known by)."""
    return hashlib.md5(_read_bytes(path, "prompt list")).hexdigest()


def _canonical_bytes(prompts: Iterable[str]) -> bytes:
    return "".join(p + "\n" for p in prompts).encode("utf-8")


def list_md5(prompts: Iterable[str]) -> str:
    """A prompt list's identity: the md5 of the list as read (UTF-8 without a byte-order mark, ``\\n`` after every
    prompt), so a copy with other line endings or a BOM is the same list. For a file already in that form (the
    published lists are) it is the file's md5 too."""
    return hashlib.md5(_canonical_bytes(prompts)).hexdigest()


def known_list_by_md5(md5: str) -> KnownPromptList | None:
    """The known list with this md5, if any."""
    for k in KNOWN_PROMPT_LISTS.values():
        if k.md5 == md5:
            return k
    return None


def describe_prompts(path: str | os.PathLike) -> dict:
    """Counts and hashes of a prompt list, and which known list it is (if any).

    Returns ``path, lines, distinct, bytes, md5, list_md5, sha256, known_list, known_list_match, description,
    protocol``. ``known_list`` is the table name of a recognised list or None. ``known_list_match`` is
    ``"exact"`` when the file's bytes match, ``"normalised"`` when only the prompts match (the file
    differs in line endings, a byte-order mark or the final newline), else None.
    """
    data = _read_bytes(path, "prompt list")
    prompts = _decode_prompts(data, path)
    md5 = hashlib.md5(data).hexdigest()
    known, match = known_list_by_md5(md5), "exact"
    if known is None:
        known, match = known_list_by_md5(list_md5(prompts)), "normalised"
    if known is None:
        match = None
    return {
        "path": str(path),
        "lines": len(prompts),
        "distinct": len(set(prompts)),
        "bytes": len(data),
        "md5": md5,
        "list_md5": list_md5(prompts),
        "sha256": hashlib.sha256(data).hexdigest(),
        "known_list": known.name if known else None,
        "known_list_match": match,
        "description": known.description if known else None,
        "protocol": known.protocol if known else None,
    }


def _check_writable(prompts: list[str]) -> None:
    """Refuse what could not be read back as the same list: no prompts, non-strings, line breaks, empty prompts."""
    if not prompts:
        raise SidbenchError("refusing to write an empty prompt list")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise SidbenchError(f"prompt {i} is not a string: {p!r}")
        if "\n" in p or "\r" in p:
            raise SidbenchError(f"prompt {i} contains a line break ({p!r}); one prompt per line is required")
        if not p.strip():
            raise SidbenchError(f"prompt {i} is empty")


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the JSON describing how a list was made lives: ``<path>.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def write_prompts(path: str | os.PathLike, prompts: list[str], *, sidecar: dict) -> dict:
    """Write a prompt list atomically (UTF-8, ``\\n``, final newline) plus its sidecar ``<path>.json``.

    ``sidecar`` says how the list was made (source file and its sha256, seed, sampling rule,
    one-caption-per-image, protocol label, ...). This function adds ``n``, the md5/sha256 of the
    written list, ``tool_version`` and ``created`` (these override same-named keys in ``sidecar``).
    Prompts containing a newline (or carriage return) or empty prompts are refused, because the file
    could not be read back as the same list. Returns the sidecar as written.
    """
    from sidbench import __version__
    from sidbench.core.provenance import now_iso

    prompts = list(prompts)
    _check_writable(prompts)
    data = _canonical_bytes(prompts)
    meta = {
        **sidecar,
        "n": len(prompts),
        "prompts_file": Path(path).name,
        "prompts_md5": hashlib.md5(data).hexdigest(),
        "prompts_sha256": hashlib.sha256(data).hexdigest(),
        "tool": "sidbench",
        "tool_version": __version__,
        "created": now_iso(),
    }
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    write_json(sidecar_path(path), meta)
    return meta


# --------------------------------------------------------------------------------------------
# Seeded samples from a COCO captions annotation file
# --------------------------------------------------------------------------------------------

def _load_coco_json(path: Path) -> tuple[list, list]:
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except OSError as e:
        raise SidbenchError(f"cannot read annotation file {path}: {e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise SidbenchError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise SidbenchError(f"{path}: expected a JSON object with 'images' and 'annotations' (COCO captions format)")
    for key in ("images", "annotations"):
        if key not in doc:
            raise SidbenchError(f"{path}: missing key {key!r} (expected a COCO captions annotation file, "
                                f"e.g. captions_val2014.json)")
        if not isinstance(doc[key], list):
            raise SidbenchError(f"{path}: {key!r} must be a list")
    return doc["images"], doc["annotations"]


def _load_coco_datasets(path: Path) -> tuple[list, list]:
    """The same two lists, read through ``datasets.load_dataset("json", field=...)`` from the local file."""
    import tempfile

    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    out = []
    try:
        with tempfile.TemporaryDirectory(prefix="sidbench-coco-") as cache:
            for field in ("images", "annotations"):
                try:
                    ds = datasets.load_dataset("json", data_files=str(path), field=field, split="train",
                                               cache_dir=cache)
                except Exception as e:  # datasets wraps parse errors in several exception types
                    raise SidbenchError(f"{path}: could not load {field!r} with datasets "
                                        f"({type(e).__name__}: {e})") from None
                cols = ds.to_dict()
                names = list(cols)
                out.append([{k: cols[k][i] for k in names} for i in range(ds.num_rows)])
                del ds
    finally:
        if bars:
            datasets.enable_progress_bars()
    return out[0], out[1]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _validate(path: Path, images: list, annotations: list):
    """Check keys and types; return ({image_id: file_name}, [(ann_id, image_id, caption)] sorted by ann_id)."""
    files: dict[int, str] = {}
    for i, im in enumerate(images):
        if not isinstance(im, dict):
            raise SidbenchError(f"{path}: images[{i}] is not an object")
        for key in ("id", "file_name"):
            if im.get(key) is None:
                raise SidbenchError(f"{path}: images[{i}] has no {key!r}")
        if not _is_int(im["id"]) or not isinstance(im["file_name"], str):
            raise SidbenchError(f"{path}: images[{i}] needs an integer 'id' and a string 'file_name'")
        if im["id"] in files:
            raise SidbenchError(f"{path}: image id {im['id']} appears twice in 'images'")
        files[im["id"]] = im["file_name"]
    anns = []
    seen: set[int] = set()
    for i, a in enumerate(annotations):
        if not isinstance(a, dict):
            raise SidbenchError(f"{path}: annotations[{i}] is not an object")
        for key in ("id", "image_id", "caption"):
            if a.get(key) is None:
                raise SidbenchError(f"{path}: annotations[{i}] has no {key!r} (is this a captions file? "
                                    f"instances/keypoints files have no captions)")
        if not _is_int(a["id"]) or not _is_int(a["image_id"]) or not isinstance(a["caption"], str):
            raise SidbenchError(f"{path}: annotations[{i}] needs integer 'id' and 'image_id' and a string 'caption'")
        if a["id"] in seen:
            raise SidbenchError(f"{path}: annotation id {a['id']} appears twice; the sample order would be ambiguous")
        seen.add(a["id"])
        if a["image_id"] not in files:
            raise SidbenchError(f"{path}: annotation {a['id']} refers to image {a['image_id']}, which is not in 'images'")
        anns.append((a["id"], a["image_id"], a["caption"]))
    anns.sort(key=lambda t: t[0])
    return files, anns


def normalise_caption(caption: str) -> str:
    """Strip and collapse every run of whitespace (newlines included) to one space."""
    return " ".join(caption.split())


def sample_coco_captions(annotations_path: str | os.PathLike, n: int, seed: int, *, one_per_image: bool = False,
                         loader: str = "json") -> tuple[list[str], list[ImageRef], dict]:
    """Draw a seeded sample of ``n`` captions from a COCO captions annotation file.

    The file is ``{"images": [{"id", "file_name", ...}], "annotations": [{"image_id", "id", "caption"}]}``
    (e.g. ``captions_val2014.json``). Captions are normalised (:func:`normalise_caption`); captions
    empty after that are dropped and counted. Annotations are sorted by annotation id, so the input's
    order does not matter. Then, with ``rng = numpy.random.default_rng(seed)``:

    * ``one_per_image=False``: ``rng.choice(len(annotations), n, replace=False)`` picks the captions
      (an image may contribute several);
    * ``one_per_image=True`` (coco2017-5k style): images with a caption, sorted by image id, each
      pick one of their captions (annotation-id order) with one vectorised ``rng.integers(0, counts)``,
      then ``rng.choice(len(images), n, replace=False)`` picks the images.

    The sample keeps the drawn order (prompt ``i`` is the ``i``-th draw). ``loader`` is ``"json"``
    (the standard library) or ``"datasets"`` (``datasets.load_dataset("json", field=...)`` on the
    local file); both give the identical result. Note that numpy does not promise the same
    ``Generator`` stream across versions, so the numpy version is recorded in ``info``.

    Returns ``(prompts, refs, info)``: the captions, the :class:`ImageRef` (image id, file name) each
    came from, and a small JSON-able dict describing the draw (for the sidecar).
    """
    import numpy as np

    from sidbench.core.provenance import sha256_file

    path = Path(annotations_path)
    if loader not in LOADERS:
        raise SidbenchError(f"unknown loader {loader!r}; choose one of: {', '.join(LOADERS)}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SidbenchError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SidbenchError(f"seed must be a non-negative integer, got {seed!r}")
    if not path.is_file():
        raise SidbenchError(f"annotation file not found: {path}")
    images, annotations = (_load_coco_json if loader == "json" else _load_coco_datasets)(path)
    files, anns = _validate(path, images, annotations)

    captions = [(aid, img, normalise_caption(c)) for aid, img, c in anns]
    kept = [t for t in captions if t[2]]
    dropped = len(captions) - len(kept)
    rng = np.random.default_rng(seed)
    if one_per_image:
        by_image: dict[int, list[str]] = {}
        for _, img, cap in kept:                       # annotation-id order within each image
            by_image.setdefault(img, []).append(cap)
        image_ids = sorted(by_image)
        if n > len(image_ids):
            raise SidbenchError(f"asked for {n} captions, one per image, but {path} has only "
                                f"{len(image_ids)} images with a caption")
        counts = np.array([len(by_image[i]) for i in image_ids], dtype=np.int64)
        which = rng.integers(0, counts)
        pick = rng.choice(len(image_ids), n, replace=False)
        prompts = [by_image[image_ids[j]][which[j]] for j in pick]
        refs = [ImageRef(image_ids[j], files[image_ids[j]]) for j in pick]
        rule = ("images with >=1 caption sorted by image id; rng=numpy.random.default_rng(seed); "
                "caption per image = rng.integers(0, n_captions_per_image) over captions in annotation-id "
                "order; then rng.choice(n_images, n, replace=False); drawn order kept")
        available = len(image_ids)
    else:
        if n > len(kept):
            raise SidbenchError(f"asked for {n} captions but {path} has only {len(kept)} non-empty captions")
        pick = rng.choice(len(kept), n, replace=False)
        prompts = [kept[j][2] for j in pick]
        refs = [ImageRef(kept[j][1], files[kept[j][1]]) for j in pick]
        rule = ("annotations sorted by annotation id; rng=numpy.random.default_rng(seed); "
                "rng.choice(n_annotations, n, replace=False); drawn order kept")
        available = len(kept)
    info = {
        "source": str(path),
        "source_name": path.name,
        "source_sha256": sha256_file(path),
        "loader": loader,
        "n": int(n),
        "seed": int(seed),
        "one_caption_per_image": bool(one_per_image),
        "sampling": rule,
        "caption_normalisation": "strip; runs of whitespace (incl. newlines) -> one space",
        "available": int(available),
        "n_images": len(files),
        "n_annotations": len(anns),
        "empty_captions_dropped": int(dropped),
        "distinct_prompts": len(set(prompts)),
        "distinct_images": len(set(r.image_id for r in refs)),
        "numpy_version": np.__version__,
    }
    return prompts, refs, info


# --------------------------------------------------------------------------------------------
# Getting a known list: shipped with sidbench, or downloaded and verified
# --------------------------------------------------------------------------------------------

def get_known_list(name: str) -> KnownPromptList:
    if name not in KNOWN_PROMPT_LISTS:
        raise SidbenchError(f"unknown prompt list {name!r}; known: {', '.join(KNOWN_PROMPT_LISTS)}")
    return KNOWN_PROMPT_LISTS[name]


def packaged_list_bytes(name: str) -> bytes:
    """The bytes of a list shipped with sidbench (package data), checked against its manifest."""
    spec = get_known_list(name)
    if not spec.packaged:
        raise SidbenchError(f"{name} is third-party data and is not shipped with sidbench; get it with "
                            f"`sidbench prompts fetch {name} --out DIR` (checked against its md5)")
    res = _manifest_root().joinpath(spec.filename)
    try:
        data = res.read_bytes()
    except OSError as e:
        raise SidbenchError(f"cannot read the packaged list {name} ({res}): {e}") from None
    for algo, want in (("md5", spec.md5), ("sha256", spec.sha256)):
        got = hashlib.new(algo, data).hexdigest()
        if want and got != want:
            raise SidbenchError(f"the packaged {res} has {algo} {got}, not {want} ({name}); the installed "
                                f"package is damaged or its manifest is out of date")
    return data


def read_known_list(name: str) -> list[str]:
    """The prompts of a list shipped with sidbench, by name (e.g. ``demo-world``)."""
    return _decode_prompts(packaged_list_bytes(name), name)


def fetch_prompt_list(name: str, dest: str | os.PathLike, *, url: str | None = None,
                      timeout: float = 60.0) -> Path:
    """Put a known prompt list at ``dest`` (a file path, or a folder to put ``spec.filename`` in).

    A list shipped with sidbench is copied from the package (unless ``url`` is given); one inside a hub archive
    is extracted from it (:mod:`sidbench.data.prompt_archive`, with a sidecar of what was extracted). Otherwise it is
    downloaded (``sidbench.core.download``: resumed when cut, refused offline) under a hidden name beside
    the target and renamed into place only when its md5 (and sha256 where the manifest has one) match,
    so a wrong file leaves nothing behind. An existing target that already matches is returned
    as is; one that does not is an error (it is never overwritten). ``url`` overrides the manifest's.
    """
    spec = get_known_list(name)
    target = Path(dest)
    if target.is_dir() or str(dest).endswith(("/", os.sep)):  # "data/" names a folder, made if missing
        target = target / spec.filename
    check_output(target, "--out")
    if spec.hub is not None:
        if url is not None:
            raise SidbenchError(f"{name} is taken from an archive of the hub repository {spec.hub['repo']}: for a "
                                f"mirror, set HF_ENDPOINT to it instead of --url")
        from sidbench.data.prompt_archive import fetch_from_hub_archive

        fetch_from_hub_archive(spec, target)
        return target
    if target.exists():
        md5 = prompts_md5(target)
        if md5 != spec.md5:
            raise SidbenchError(f"{target} already exists and is not {spec.name} (md5 {md5}, expected "
                                f"{spec.md5}); remove it or choose another --out")
        return target
    if url is None and spec.packaged:
        data = packaged_list_bytes(name)
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
        return target
    src = url or spec.url
    # Downloaded under a hidden name (resumed from its .part if cut), and named only once its md5 matches too.
    staged = target.with_name(f".{target.name}.download")
    hint = f"Download {src} by hand, check it with `sidbench prompts check FILE`, and put it at {target}."
    try:
        download(src, staged, sha256=spec.sha256, desc=spec.filename, timeout=timeout, fetch_hint=hint,
                 shown=str(target))
    except DownloadError as e:
        raise SidbenchError(f"could not download {spec.name}: {e}") from None
    md5 = prompts_md5(staged)
    if md5 != spec.md5:
        staged.unlink()
        raise SidbenchError(f"downloaded file from {src} has md5 {md5}, not {spec.md5} ({spec.name}); it is a "
                            f"different or truncated file and was not kept")
    os.replace(staged, target)
    return target
