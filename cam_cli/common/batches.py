"""Decoded images on their way to the network: one item type, one batch type, one collate.

Inference and training both decode with `load_resized` into uint8 ``[3, S, S]`` (4x cheaper to
move between processes than floats; the network's normalisation runs on its device), and both
batch with `collate_images`: good images stacked, failed ones carried along so every failure is
reported once and counted, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cam_cli.common.images import DEFAULT_MAX_PIXELS, load_resized


@dataclass
class DecodedImage:
    index: int
    path: str
    width: int  # original size, after EXIF orientation
    height: int
    pixels: np.ndarray | None  # uint8 [3, S, S] resized to the network input, None on error
    error: str | None = None
    label: int | None = None  # the class, for training items


class ImageListDataset:
    """A map-style dataset over a list of paths; never raises for a bad image."""

    def __init__(self, paths: list[str], size: int, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.paths = paths
        self.size = size
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> DecodedImage:
        path = self.paths[index]
        try:
            pixels, width, height = load_resized(path, self.size, self.max_pixels)
        except ValueError as error:
            return DecodedImage(index, path, 0, 0, None, str(error))
        return DecodedImage(index, path, width, height, pixels)


@dataclass
class ImageBatch:
    """Good images stacked as one uint8 tensor; failed ones carried along for reporting."""

    pixels: object  # torch.Tensor uint8 [B, 3, S, S] (B may be 0)
    items: list[DecodedImage]  # the good ones, in the order of `pixels`
    failed: list[DecodedImage]

    def pin_memory(self) -> ImageBatch:
        self.pixels = self.pixels.pin_memory()
        return self


def collate_images(samples: list[DecodedImage]) -> ImageBatch:
    import torch

    good = [s for s in samples if s.error is None]
    failed = [s for s in samples if s.error is not None]
    if good:
        pixels = torch.from_numpy(np.stack([s.pixels for s in good]))
    else:
        pixels = torch.zeros((0, 3, 1, 1), dtype=torch.uint8)
    for s in good:
        s.pixels = None  # the stacked tensor holds them now
    return ImageBatch(pixels, good, failed)
