"""The one image-loading path: folders and arrays in, uint8 RGB HWC images out.

Folder listing follows clean-fid (recursive, sorted by path) so that the i-th image is the same
file in both tools; decoding follows clean-fid too (``PIL.Image.open(path).convert("RGB")``).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from sidbench.core.errors import BadImageError, SidbenchError

# clean-fid's folder extensions (it globs each case-sensitively; we compare lower-cased).
IMAGE_EXTENSIONS = frozenset({"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"})
ARRAY_EXTENSIONS = frozenset({".npy", ".npz"})

# How float arrays map to uint8; the caller must name one (never guessed).
FLOAT_RANGES = {
    "-1,1": "clip(x * 127.5 + 128, 0, 255) then truncate (SiD-LSG / EDM convention)",
    "0,1": "clip(x * 255 + 0.5, 0, 255) then truncate (round to nearest)",
    "0,255": "clip(x + 0.5, 0, 255) then truncate (round to nearest)",
}


def list_image_files(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder``, recursively, sorted like clean-fid; hidden entries skipped like glob."""
    folder = str(folder)
    if not os.path.isdir(folder):
        raise SidbenchError(f"image folder not found: {folder}")
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            if ext in IMAGE_EXTENSIONS:
                found.append(os.path.join(root, name))
    found.sort()
    return found


def listing_sha256(folder: str | os.PathLike, files: Sequence[str]) -> str:
    """The identity of a file list: sha256 over ``relative path TAB size`` per file, in the order given."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{os.path.relpath(f, folder)}\t{os.path.getsize(f)}\n".encode())
    return h.hexdigest()


def load_image_file(path: str) -> np.ndarray:
    """Decode one file to uint8 RGB HWC; any failure names the file."""
    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB"))
    except Exception as e:  # PIL raises many types; all mean "not a readable image"
        raise BadImageError(path, f"{type(e).__name__}: {e}") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadImageError(path, f"decoded to shape {arr.shape}, expected HxWx3")
    return arr


def to_uint8(images: np.ndarray, value_range: str | None = None, *, what: str = "array") -> np.ndarray:
    """Check and convert an image batch (NHWC or HWC) to uint8 NHWC with 3 channels.

    uint8 input is taken as is. Float input needs ``value_range`` in FLOAT_RANGES; values outside it
    (beyond a small tolerance) are an error rather than a silent clip.
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise SidbenchError(f"{what}: expected images as NHWC (or HWC), got shape {arr.shape}")
    if arr.shape[-1] != 3:
        hint = " (it looks like NCHW: transpose to NHWC)" if arr.shape[1] == 3 else ""
        raise SidbenchError(f"{what}: expected 3 channels last (NHWC), got shape {arr.shape}{hint}")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise SidbenchError(f"{what}: expected uint8 or float images, got dtype {arr.dtype}")
    if value_range is None:
        raise SidbenchError(f"{what}: float images need an explicit value range "
                            f"(one of {', '.join(FLOAT_RANGES)}); uint8 is never guessed from floats")
    if value_range not in FLOAT_RANGES:
        raise SidbenchError(f"{what}: unknown value range {value_range!r}; expected one of {', '.join(FLOAT_RANGES)}")
    lo, hi = (float(v) for v in value_range.split(","))
    tol = 1e-3 * (hi - lo)
    if not np.isfinite(arr).all():
        raise SidbenchError(f"{what}: contains NaN or infinite values")
    amin, amax = float(arr.min()), float(arr.max())
    if amin < lo - tol or amax > hi + tol:
        raise SidbenchError(f"{what}: values span [{amin:.4g}, {amax:.4g}], outside the stated range [{lo:g}, {hi:g}]")
    x = arr.astype(np.float32)
    if value_range == "-1,1":
        x = x * 127.5 + 128.0
    elif value_range == "0,1":
        x = x * 255.0 + 0.5
    else:
        x = x + 0.5
    return np.clip(x, 0, 255).astype(np.uint8)


LAYOUTS = ("NHWC", "NCHW")


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def is_in_memory(x) -> bool:
    """An image batch held in memory (numpy array, torch tensor, list of arrays or PIL images), not a path."""
    return isinstance(x, (np.ndarray, list, tuple)) or _is_tensor(x)


def as_image_array(images, *, layout: str | None = None, what: str = "images") -> np.ndarray:
    """A batch in memory as a numpy NHWC array: torch tensors (any device) and NCHW are converted.

    ``layout`` is "NHWC" or "NCHW"; without it, the layout is read from where the 3 channels are, and an
    ambiguous shape (3 at both places) is an error. A list of HWC arrays or PIL images is stacked.
    """
    if layout is not None and layout not in LAYOUTS:
        raise SidbenchError(f"{what}: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if isinstance(images, (list, tuple)):
        if not images:
            raise SidbenchError(f"{what}: an empty list of images")
        items = [np.asarray(im.convert("RGB")) if isinstance(im, Image.Image) else as_image_array(im, layout=layout, what=what)
                 for im in images]
        items = [a[0] if a.ndim == 4 and a.shape[0] == 1 else a for a in items]
        shapes = {a.shape for a in items}
        if len(shapes) != 1:
            raise SidbenchError(f"{what}: images of different shapes {sorted(shapes)[:3]} cannot be stacked")
        return np.stack(items)
    if _is_tensor(images):
        images = images.detach().to("cpu")
        if str(images.dtype) in ("torch.bfloat16", "torch.float16"):
            images = images.float()
        images = images.numpy()
    arr = np.asarray(images)
    if not isinstance(images, np.ndarray) and arr.dtype == object:
        raise SidbenchError(f"{what}: expected an image array or tensor, got {type(images).__name__}")
    if arr.ndim == 3:
        arr = arr[None]  # one image
    if arr.ndim != 4:
        raise SidbenchError(f"{what}: expected a batch of images (N, H, W, 3) or (N, 3, H, W), got shape {arr.shape}")
    channels_first, channels_last = arr.shape[1] in (1, 3), arr.shape[-1] in (1, 3)
    if layout is None:
        if channels_first and channels_last:
            raise SidbenchError(f"{what}: shape {arr.shape} could be NCHW or NHWC; say which with layout=")
        layout = "NCHW" if channels_first else "NHWC"
    if layout == "NCHW":
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] == 1:  # grey: the RGB conversion PIL's convert("RGB") would make
        arr = np.repeat(arr, 3, axis=-1)
    return arr


@dataclass
class ImageSource:
    """An indexable set of images: a folder of files or an array on disk / in memory."""

    kind: str                                   # "folder" or "array"
    path: str | None                            # where it came from (None for in-memory arrays)
    files: list[str] = field(default_factory=list)
    array: np.ndarray | None = None             # NHWC, uint8 or float (converted per item)
    value_range: str | None = None              # for float arrays

    def __len__(self) -> int:
        return len(self.files) if self.kind == "folder" else int(self.array.shape[0])

    def load(self, i: int) -> np.ndarray:
        if self.kind == "folder":
            return load_image_file(self.files[i])
        return to_uint8(self.array[i], self.value_range, what=f"{self.path or 'array'}[{i}]")[0]

    def name(self, i: int) -> str:
        return self.files[i] if self.kind == "folder" else f"{self.path or 'array'}[{i}]"

    def batches(self, indices: Sequence[int], *, batch_size: int | None = None, prepare=None, pool=None,
                skip_bad: bool = False):
        """The image stream (``sidbench.data.stream``): decoded in ``pool``, a few batches ahead."""
        from sidbench.data.stream import prefetched_batches

        return prefetched_batches(self.load, self.name, indices, batch_size=batch_size or 32, prepare=prepare,
                                  pool=pool, skip_bad=skip_bad)

    def describe(self) -> dict:
        """Identity of the inputs for provenance and cache keys: file list with sizes, or array hash."""
        if self.kind == "folder":
            return {"kind": "folder", "path": os.path.abspath(self.path), "count": len(self.files),
                    "listing_sha256": listing_sha256(self.path, self.files)}
        h = hashlib.sha256()
        h.update(f"{self.array.dtype.str}{tuple(self.array.shape)}".encode())
        for start in range(0, self.array.shape[0], 256):
            h.update(np.ascontiguousarray(self.array[start:start + 256]).tobytes())
        return {"kind": "array", "path": os.path.abspath(self.path) if self.path else None,
                "count": len(self), "shape": list(self.array.shape), "dtype": str(self.array.dtype),
                "value_range": self.value_range, "data_sha256": h.hexdigest()}


def open_array(path: str, key: str | None = None) -> np.ndarray:
    """Load an ``.npy`` (memory-mapped) or ``.npz`` image array."""
    try:
        if path.endswith(".npy"):
            return np.load(path, mmap_mode="r")
        with np.load(path) as z:
            keys = list(z.keys())
            if key is None:
                image_keys = [k for k in keys if z[k].ndim == 4]
                if len(image_keys) != 1:
                    raise SidbenchError(f"{path}: holds arrays {keys}; name the image array with --array-key")
                key = image_keys[0]
            if key not in keys:
                raise SidbenchError(f"{path}: no array named {key!r} (it holds {keys})")
            return z[key]
    except SidbenchError:
        raise
    except Exception as e:
        raise SidbenchError(f"cannot read image array {path}: {type(e).__name__}: {e}") from None


def open_source(path, *, value_range: str | None = None,
                array_key: str | None = None) -> ImageSource:
    """A folder or array file (or images in memory: array, tensor, list) as an ImageSource; checks the input contract."""
    if is_in_memory(path):
        arr = as_image_array(path)
        src = ImageSource(kind="array", path=None, array=arr, value_range=value_range)
    else:
        path = str(path)
        if os.path.isdir(path):
            files = list_image_files(path)
            if not files:
                raise SidbenchError(f"no images found in {path} (looked recursively for "
                                    f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
            return ImageSource(kind="folder", path=path, files=files)
        if not os.path.exists(path):
            raise SidbenchError(f"input not found: {path}")
        if Path(path).suffix.lower() not in ARRAY_EXTENSIONS:
            raise SidbenchError(f"{path}: expected a folder of images, an .npy/.npz image array or a "
                                f"statistics file")
        arr = open_array(path, array_key)
        src = ImageSource(kind="array", path=path, array=arr, value_range=value_range)
    what = src.path or "array"
    if arr.ndim != 4:
        raise SidbenchError(f"{what}: expected an image array of shape (N, H, W, 3), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise SidbenchError(f"{what}: the image array is empty")
    to_uint8(arr[:1], value_range, what=what)  # contract check on the first image (dtype, layout, range)
    if arr.dtype != np.uint8 and arr.shape[0] > 1:
        # Range violations anywhere are an error, not a clip: check all of it once.
        for start in range(0, arr.shape[0], 1024):
            to_uint8(arr[start:start + 1024], value_range, what=what)
    return src


def center_crop_square(img: np.ndarray) -> np.ndarray:
    """torchvision ``center_crop(img, min(size))``: the offsets use Python's round, as torchvision does."""
    h, w = img.shape[:2]
    s = min(h, w)
    top = int(round((h - s) / 2.0))
    left = int(round((w - s) / 2.0))
    return img[top:top + s, left:left + s]


def pre_resize(img: np.ndarray, size: int) -> np.ndarray:
    """The COCO protocols' pre-resize: centre crop to the short edge, then PIL LANCZOS to size x size (uint8)."""
    sq = center_crop_square(img)
    if sq.shape[0] == size:
        return np.ascontiguousarray(sq)
    return np.asarray(Image.fromarray(sq).resize((size, size), resample=Image.LANCZOS))


def select_indices(n: int, shard: tuple[int, int] | None = None, limit: int | None = None) -> Sequence[int]:
    """Indices 0..n-1 (the first ``limit``), then this shard's share: i % count == index."""
    if limit is not None:
        if limit > n:
            raise SidbenchError(f"asked for {limit} images but the input holds only {n}")
        n = limit
    if shard is None:
        return range(n)
    i, count = shard
    return range(i, n, count)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        a, b = text.split("/")
        i, n = int(a), int(b)
    except ValueError:
        raise SidbenchError(f"--shard expects i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise SidbenchError(f"--shard {text}: need 0 <= i < n")
    return i, n
