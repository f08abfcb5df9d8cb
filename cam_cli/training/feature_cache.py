"""Features of a fixed backbone, computed once and kept on disk for every epoch of the head.

With ``freeze_backbone`` every epoch would run the same backbone on the same (augmented) images
and get the same answer: nearly all of a frozen run's time. The cache runs it once per image
and view (view v of image i is the crop and flip epoch v would draw, so with as many views as
epochs training from the cache sees exactly the batches training from the images would) and
stores the result in a memory-mapped ``.npy`` file the head then reads every epoch.

One folder per cache, named by a digest of everything the features depend on: what is cached
(the cut and pooling), the backbone's weights, the input size, the augmentation, the seed, the
number of views, the storage type and the data listing (path, label, size and mtime of every
image). A change of any of them is another folder, so a stale cache is never read.

Crash safety without a rename of a large file: the arrays are created at their full size first,
then ``done.npy`` (one byte per chunk of images) is published atomically; a chunk's byte is set
only after its features were flushed, and ``complete.json`` is written (atomically) only when
every chunk is done. ``kill -9`` at any point thus leaves either a finished cache or one whose
done chunks are whole: a new run recomputes only the chunks not marked done.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

if TYPE_CHECKING:  # the type only: torch is imported where it runs
    import torch

from cam_cli.files.atomic import write_bytes_atomic, write_text_atomic

__all__ = [
    "CACHE_VERSION",
    "CacheLayout",
    "FeatureCache",
    "data_listing_digest",
    "cache_key",
    "tensors_digest",
]

CACHE_VERSION = 1
COMPLETE = "complete.json"
FEATURES = "features.npy"
VALID = "valid.npy"
DONE = "done.npy"
DTYPES = ("float16", "float32")


def cache_key(parts: dict[str, Any]) -> str:
    """The folder name of a cache: SHA-256 of its defining parts (JSON, keys sorted)."""
    text = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def data_listing_digest(items: Sequence[tuple[str, int]]) -> str:
    """A digest of the images as listed: path, label, size and modification time of each,
    so an image replaced, added or relabelled gives another cache (a missing file counts as
    size -1: it fails to decode either way)."""
    digest = hashlib.sha256()
    for path, label in items:
        try:
            stat = os.stat(path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        digest.update(f"{path}\t{label}\t{size}\t{mtime}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def tensors_digest(named: Iterable[tuple[str, Any]]) -> str:
    """A digest of named tensors' names, shapes, dtypes and bytes: the backbone's weights
    and buffers (batch-norm statistics included), whatever file they came from."""
    digest = hashlib.sha256()
    for name, tensor in named:
        array = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\t{tuple(array.shape)}\t{array.dtype}\n".encode())
        digest.update(array.view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return digest.hexdigest()


def _mapped(path: Path, mode: Literal["r", "r+"]) -> np.memmap:
    """A ``.npy`` file mapped, not read (``np.load`` gives a memmap with ``mmap_mode``)."""
    return cast(np.memmap, np.load(path, mmap_mode=mode))


def _byte_dtype() -> torch.dtype:
    import torch

    return torch.uint8


@dataclass(frozen=True)
class CacheLayout:
    """The shape of a cache: ``views x count`` items of ``shape`` in ``dtype``, in chunks."""

    count: int  # images
    views: int
    shape: tuple[int, ...]  # one item's features
    dtype: str  # "float16" or "float32"
    chunk: int = 256  # images per chunk (per view): the unit of work and of resumption

    @property
    def chunks_per_view(self) -> int:
        return -(-self.count // self.chunk)

    @property
    def nbytes(self) -> int:
        item = int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize
        return self.views * self.count * item

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "views": self.views, "shape": list(self.shape),
                "dtype": self.dtype, "chunk": self.chunk}  # fmt: skip


class FeatureCache:
    """One cache folder: created (or resumed) by `prepare`, filled chunk by chunk by `fill`,
    then read through `features` / `valid`."""

    def __init__(self, root: str | Path, key: str, layout: CacheLayout) -> None:
        if layout.dtype not in DTYPES:
            raise ValueError(f"cache dtype must be one of {', '.join(DTYPES)}")
        self.folder = Path(root) / key
        self.layout = layout
        self.features: np.memmap | None = None
        self.valid: np.memmap | None = None
        self._done: np.memmap | None = None

    # ---- state on disk -------------------------------------------------------------------

    def complete(self) -> bool:
        """Whether a finished cache of this very layout is on disk."""
        path = self.folder / COMPLETE
        if not path.is_file():
            return False
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return saved.get("layout") == self.layout.as_dict() and self._arrays_match()

    def _arrays_match(self) -> bool:
        try:
            features = _mapped(self.folder / FEATURES, "r")
            valid = _mapped(self.folder / VALID, "r")
        except (OSError, ValueError):
            return False
        layout = self.layout
        return (
            features.shape == (layout.views, layout.count, *layout.shape)
            and features.dtype == np.dtype(layout.dtype)
            and valid.shape == (layout.views, layout.count)
        )

    def prepare(self) -> list[tuple[int, int]]:
        """Create the arrays (or reopen a partial cache) and return the ``(view, chunk)``
        pairs still to compute; ``[]`` for a finished cache."""
        if self.complete():
            self.open_read()
            return []
        layout = self.layout
        self.folder.mkdir(parents=True, exist_ok=True)
        done_path = self.folder / DONE
        done = None
        if done_path.is_file() and self._arrays_match():
            try:
                done = _mapped(done_path, "r+")
            except (OSError, ValueError):
                done = None
            if done is not None and done.shape != (layout.views, layout.chunks_per_view):
                done = None
        if done is None:  # a fresh cache: the arrays first, then the (atomic) done flags
            for name in (DONE, COMPLETE):
                (self.folder / name).unlink(missing_ok=True)
            shape = (layout.views, layout.count)
            for name, dtype, full in ((FEATURES, layout.dtype, (*shape, *layout.shape)),
                                      (VALID, np.bool_, shape)):  # fmt: skip
                np.lib.format.open_memmap(self.folder / name, "w+", dtype, full).flush()
            self._publish_done(np.zeros((layout.views, layout.chunks_per_view), np.uint8))
            done = _mapped(done_path, "r+")
        self._done = done
        self.features = _mapped(self.folder / FEATURES, "r+")
        self.valid = _mapped(self.folder / VALID, "r+")
        return [(int(v), int(c)) for v, c in zip(*np.nonzero(done == 0), strict=True)]

    def _publish_done(self, flags: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, flags)
        write_bytes_atomic(buffer.getvalue(), self.folder / DONE)

    def chunk_indices(self, chunk: int) -> range:
        start = chunk * self.layout.chunk
        return range(start, min(start + self.layout.chunk, self.layout.count))

    def write_chunk(self, view: int, chunk: int, values: np.ndarray, valid: np.ndarray) -> None:
        """Store one chunk's features, flush them, and only then mark the chunk done."""
        assert self.features is not None
        assert self.valid is not None
        assert self._done is not None
        span = self.chunk_indices(chunk)
        self.features[view, span.start : span.stop] = values
        self.valid[view, span.start : span.stop] = valid
        self.features.flush()
        self.valid.flush()
        self._done[view, chunk] = 1
        self._done.flush()

    def finish(self) -> None:
        """Mark the cache complete (every chunk done) and reopen it read-only."""
        assert self._done is not None
        if not bool(np.all(self._done)):
            raise RuntimeError("feature cache: chunks left to compute")
        text = json.dumps({"version": CACHE_VERSION, "layout": self.layout.as_dict()}) + "\n"
        write_text_atomic(text, self.folder / COMPLETE)
        self.open_read()

    def open_read(self) -> None:
        self.features = _mapped(self.folder / FEATURES, "r")
        self.valid = _mapped(self.folder / VALID, "r")
        self._done = None
