"""Decoded images on their way to the network: one item type, one batch type, one collate.

Inference and training both decode with `load_resized` into uint8 ``[3, S, S]`` (4x cheaper to
move between processes than floats; the network's normalisation runs on its device), and both
batch with `collate_images`: good images stacked, failed ones carried along so every failure is
reported once and counted, never silently dropped.

With device decoding (`data.decode`) an item may instead carry its JPEG file's bytes
(``encoded``); the collate packs those back to back into ``ImageBatch.pending``, and the main
process decodes them on the device before the batch reaches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cam_cli.data.images import DEFAULT_MAX_PIXELS, load_resized

if TYPE_CHECKING:  # torch is imported where a batch is made: the CLI starts without it
    import torch


@dataclass
class DecodedImage:
    index: int
    path: str
    width: int  # original size, after EXIF orientation
    height: int
    pixels: np.ndarray | None  # uint8 [3, S, S] resized to the network input, None on error
    error: str | None = None
    label: int | None = None  # the class, for training items
    encoded: np.ndarray | None = None  # uint8 JPEG file bytes, to decode on the device instead


def decode_item(
    index: int, path: str, size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """The robust PIL path for one file: pixels resized to ``size``, or the one-line error."""
    try:
        pixels, width, height = load_resized(path, size, max_pixels)
    except ValueError as error:
        return DecodedImage(index, path, 0, 0, None, str(error))
    return DecodedImage(index, path, width, height, pixels)


class ImageListDataset:
    """A map-style dataset over a list of paths; never raises for a bad image."""

    def __init__(self, paths: list[str], size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.paths = paths
        self.size = size
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> DecodedImage:
        return decode_item(index, self.paths[index], self.size, self.max_pixels)


@dataclass
class PendingJpegs:
    """JPEG files of a batch still to be decoded on the device: their bytes back to back in
    one uint8 tensor (one shared-memory block from a DataLoader worker, not one per file)."""

    items: list[DecodedImage]  # in input order; `pixels` None, width/height from the header
    data: torch.Tensor  # uint8 [total bytes]
    sizes: list[int]  # bytes of each file

    def files(self) -> list[torch.Tensor]:
        """One 1-D uint8 tensor per file (views of `data`)."""
        return list(self.data.split(self.sizes))


@dataclass
class ImageBatch:
    """Good images stacked as one uint8 tensor; failed ones carried along for reporting."""

    pixels: torch.Tensor  # uint8 [B, 3, S, S] (B may be 0)
    items: list[DecodedImage]  # the good ones, in the order of `pixels`
    failed: list[DecodedImage]
    pending: PendingJpegs | None = None  # device decoding: not in `pixels` yet

    def pin_memory(self) -> ImageBatch:
        self.pixels = self.pixels.pin_memory()
        return self


def stack_pixels(items: list[DecodedImage]) -> np.ndarray:
    """The host-decoded pixels of ``items`` (each decoded without error) as one array."""
    arrays = []
    for item in items:
        assert item.pixels is not None, item.path  # decoded on the host, without error
        arrays.append(item.pixels)
    return np.stack(arrays)


def _encoded(item: DecodedImage) -> np.ndarray:
    assert item.encoded is not None, item.path  # left to the device, not decoded yet
    return item.encoded


def collate_images(samples: list[DecodedImage]) -> ImageBatch:
    import torch

    good = [s for s in samples if s.error is None and s.encoded is None]
    failed = [s for s in samples if s.error is not None]
    if good:
        pixels = torch.from_numpy(stack_pixels(good))
    else:
        pixels = torch.zeros((0, 3, 1, 1), dtype=torch.uint8)
    for s in good:
        s.pixels = None  # the stacked tensor holds them now
    pending = None
    encoded = [s for s in samples if s.error is None and s.encoded is not None]
    if encoded:
        files = [_encoded(s) for s in encoded]
        data = torch.from_numpy(np.concatenate(files))
        pending = PendingJpegs(encoded, data, [len(f) for f in files])
        for s in encoded:
            s.encoded = None  # `data` holds the bytes now
    return ImageBatch(pixels, good, failed, pending)
