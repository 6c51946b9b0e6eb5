"""The one image stream: folders, arrays and generators all give uint8 RGB images by index, in batches.

Every metric is fed from one pass over a stream, so each image is decoded (or generated) once. A
consumer's own preparation (a resize for its network) runs in the same worker thread that decoded the
image, a few batches ahead of the networks, so decoding and resizing overlap the forward passes.
"""
from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np

from sidbench.core.errors import BadImageError

Prepare = Callable[[np.ndarray], object]


class Batch(NamedTuple):
    indices: list[int]        # the images this batch holds, in stream order
    items: list               # prepare(image) for each of them (the uint8 image itself without a prepare)
    skipped: list[dict]       # unreadable inputs left out under skip_bad: {"file", "reason"}


@runtime_checkable
class ImageStream(Protocol):
    """What every metric reads: a length, batches by index, and a description for provenance."""

    def __len__(self) -> int: ...

    def batches(self, indices: Sequence[int], *, batch_size: int | None = None, prepare: Prepare | None = None,
                pool: ThreadPoolExecutor | None = None, skip_bad: bool = False) -> Iterator[Batch]: ...

    def describe(self) -> dict: ...


def _identity(img: np.ndarray) -> np.ndarray:
    return img


def prefetched_batches(load: Callable[[int], np.ndarray], name: Callable[[int], str], indices: Sequence[int], *,
                       batch_size: int, prepare: Prepare | None, pool: ThreadPoolExecutor | None,
                       skip_bad: bool) -> Iterator[Batch]:
    """Batches of an indexable source: load + prepare per image in ``pool``, a few batches ahead of the caller."""
    prepare = prepare or _identity
    indices = list(indices)

    def one(i: int):
        try:
            return i, prepare(load(i)), None
        except BadImageError as e:
            if not skip_bad:
                raise
            return i, None, e.reason

    chunks = [indices[k:k + batch_size] for k in range(0, len(indices), batch_size)]
    if pool is None:
        for chunk in chunks:
            yield _collect([one(i) for i in chunk], name)
        return
    workers = getattr(pool, "_max_workers", 4)
    ahead = max(2, (2 * workers) // max(1, batch_size) + 2)  # batches in flight: enough to keep every worker busy
    pending: collections.deque = collections.deque()
    it = iter(chunks)
    for chunk in it:
        pending.append([pool.submit(one, i) for i in chunk])
        if len(pending) >= ahead:
            break
    while pending:
        done = [f.result() for f in pending.popleft()]
        nxt = next(it, None)
        if nxt is not None:
            pending.append([pool.submit(one, i) for i in nxt])
        yield _collect(done, name)


def _collect(results: list, name: Callable[[int], str]) -> Batch:
    kept = [(i, item) for i, item, err in results if err is None]
    skipped = [{"file": name(i), "reason": err} for i, _, err in results if err is not None]
    return Batch([i for i, _ in kept], [item for _, item in kept], skipped)


def prepared(images: Sequence[np.ndarray], prepare: Prepare | None, pool: ThreadPoolExecutor | None) -> list:
    """``prepare`` over images already in memory (a generator's batch), in ``pool`` when given."""
    if prepare is None:
        return list(images)
    return list(pool.map(prepare, images)) if pool is not None else [prepare(im) for im in images]
