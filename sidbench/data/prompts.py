"""Prompt lists: read and check them, recognise the published ones by hash, draw seeded COCO samples.

A prompt list is a UTF-8 text file with one prompt per line. Prompt ``i`` goes with seed ``i`` and
image ``{i:06d}.png``, so the exact bytes of the list are part of an evaluation protocol: the
``coco2014-30k`` protocol uses one fixed list (see :data:`KNOWN_PROMPT_LISTS`), recognised by its md5.
When that list is not at hand, :func:`sample_coco_captions` draws a seeded sample from a COCO
captions annotation file; such a list is a *different* protocol and is labelled so in its sidecar.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

from sidbench.core.atomic import atomic_path, write_json
from sidbench.core.errors import SidbenchError


@dataclass(frozen=True)
class KnownPromptList:
    """A published prompt list, identified by the md5 of its bytes."""

    name: str
    description: str
    protocol: str          # the protocol (docs/spec) this list belongs to
    md5: str
    lines: int
    distinct: int
    url: str
    filename: str
    sha256: str | None = None


# The one table of recognised lists; the protocol registry refers to entries by name.
KNOWN_PROMPT_LISTS: dict[str, KnownPromptList] = {p.name: p for p in [
    # The GigaGAN evaluation list: 30,000 captions sampled from COCO-2014 val. The URL is the copy in
    # the SiD-LSG repository (prompts/captions.txt); the same file is in the DMD2 repository and in
    # GigaGAN's evaluation data archive.
    KnownPromptList(
        name="gigagan-coco2014-30k",
        description="GigaGAN COCO-2014 30K list",
        protocol="coco2014-30k",
        md5="20ed79e6a73d7b8fdbfb6ebc8c5c7e99",
        lines=30_000,
        distinct=29_436,
        url="https://raw.githubusercontent.com/mingyuanzhou/SiD-LSG/main/prompts/captions.txt",
        filename="captions.txt",
        sha256="edabd2a556026cbf5d36a5fffa35ad43d7ba71b72f6d640b727c1edefb7f1945",
    ),
]}

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


def known_list_by_md5(md5: str) -> KnownPromptList | None:
    """The known list with this md5, if any."""
    for k in KNOWN_PROMPT_LISTS.values():
        if k.md5 == md5:
            return k
    return None


def describe_prompts(path: str | os.PathLike) -> dict:
    """Counts and hashes of a prompt list, and which known list it is (if any).

    Returns ``path, lines, distinct, bytes, md5, sha256, known_list, known_list_match, description,
    protocol``. ``known_list`` is the table name of a recognised list or None. ``known_list_match`` is
    ``"exact"`` when the file's bytes match, ``"normalised"`` when only the prompts match (the file
    differs in line endings, a byte-order mark or the final newline), else None.
    """
    data = _read_bytes(path, "prompt list")
    prompts = _decode_prompts(data, path)
    md5 = hashlib.md5(data).hexdigest()
    known, match = known_list_by_md5(md5), "exact"
    if known is None:
        known, match = known_list_by_md5(hashlib.md5(_canonical_bytes(prompts)).hexdigest()), "normalised"
    if known is None:
        match = None
    return {
        "path": str(path),
        "lines": len(prompts),
        "distinct": len(set(prompts)),
        "bytes": len(data),
        "md5": md5,
        "sha256": hashlib.sha256(data).hexdigest(),
        "known_list": known.name if known else None,
        "known_list_match": match,
        "description": known.description if known else None,
        "protocol": known.protocol if known else None,
    }


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
    if not prompts:
        raise SidbenchError("refusing to write an empty prompt list")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise SidbenchError(f"prompt {i} is not a string: {p!r}")
        if "\n" in p or "\r" in p:
            raise SidbenchError(f"prompt {i} contains a line break ({p!r}); one prompt per line is required")
        if not p.strip():
            raise SidbenchError(f"prompt {i} is empty")
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
# Downloading a known list
# --------------------------------------------------------------------------------------------

def get_known_list(name: str) -> KnownPromptList:
    if name not in KNOWN_PROMPT_LISTS:
        raise SidbenchError(f"unknown prompt list {name!r}; known: {', '.join(KNOWN_PROMPT_LISTS)}")
    return KNOWN_PROMPT_LISTS[name]


def fetch_prompt_list(name: str, dest: str | os.PathLike, *, url: str | None = None,
                      timeout: float = 60.0) -> Path:
    """Download a known prompt list to ``dest`` (a file path, or a folder to put ``spec.filename`` in).

    The download streams into a temporary file beside the target while its md5 (and sha256 where
    the table has one) is computed; it is renamed into place only when the hashes match, so a wrong
    or truncated file leaves nothing behind. An existing target that already matches is returned
    as is; one that does not is an error (it is never overwritten). ``url`` overrides the table's.
    """
    spec = get_known_list(name)
    target = Path(dest)
    if target.is_dir():
        target = target / spec.filename
    if target.exists():
        md5 = prompts_md5(target)
        if md5 != spec.md5:
            raise SidbenchError(f"{target} already exists and is not {spec.name} (md5 {md5}, expected "
                                f"{spec.md5}); remove it or choose another --out")
        return target
    src = url or spec.url
    md5, sha = hashlib.md5(), hashlib.sha256()
    try:
        with urllib.request.urlopen(src, timeout=timeout) as resp, atomic_path(target, ".part") as tmp:
            with open(tmp, "wb") as f:
                while block := resp.read(1 << 16):
                    f.write(block)
                    md5.update(block)
                    sha.update(block)
            if md5.hexdigest() != spec.md5:
                raise SidbenchError(f"downloaded file from {src} has md5 {md5.hexdigest()}, not {spec.md5} "
                                    f"({spec.name}); it is a different or truncated file and was not kept")
            if spec.sha256 and sha.hexdigest() != spec.sha256:
                raise SidbenchError(f"downloaded file from {src} has sha256 {sha.hexdigest()}, not {spec.sha256} "
                                    f"({spec.name}); it was not kept")
    except (OSError, ValueError) as e:
        raise SidbenchError(f"could not download {spec.name} from {src}: {e}. Download it by hand and "
                            f"check it with `sidbench prompts check`") from None
    return target
