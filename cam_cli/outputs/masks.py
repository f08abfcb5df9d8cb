"""Pseudo-masks out of `cam-cli cam`'s `pseudo_masks` DIR: one 8-bit palette PNG per image, the
format weakly-supervised segmentation code (and Pascal VOC's SegmentationClass) reads.

A pixel holds the class index + 1 where the class's CAM, upsampled bilinearly to the image's
size (as `npy` ``image``), is above the CAM threshold times its maximum (the paper's rule,
`boxes.components.threshold_masks`; the threshold the checkpoint carries, else 0.2), and 0
elsewhere; a map that is flat or nowhere positive has no region. With several classes (`topk`,
`class`), a better-ranked class wins where regions overlap. An index + 1 above 254 does not
fit (255 is VOC's "ignore"): such an image is refused by name, never written wrong. The palette
is Pascal VOC's, so 1 is dark red, 2 green, as in its own masks.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cam_cli.boxes.components import degenerate_maps, threshold_masks
from cam_cli.cam.maps import upsample_cams
from cam_cli.errors import SetupError
from cam_cli.files.atomic import write_bytes_atomic
from cam_cli.files.checks import printable_path
from cam_cli.inference.results import ImageResult
from cam_cli.outputs.draw import output_stem

MAX_LABEL = 254  # 255 is VOC's "ignore"


def voc_palette() -> list[int]:
    """Pascal VOC's colour map (its devkit's ``labelcolormap``): 256 RGB triples, flat."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        code = index
        for bit in range(8):
            red |= (code & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        palette += [red, green, blue]
    return palette


PALETTE = voc_palette()


def pseudo_mask(
    cams: np.ndarray, class_indices: Sequence[int], size: tuple[int, int], threshold: float
) -> np.ndarray:
    """``[H, W]`` uint8: class index + 1 of the best-ranked class whose region covers the
    pixel, 0 where none does. ``cams``: ``[k, h, w]`` in rank order; ``size``: (W, H)."""
    width, height = size
    labels = np.asarray(class_indices, dtype=np.int64) + 1
    if labels.size and labels.max() > MAX_LABEL:
        raise ValueError(
            f"class index {int(labels.max()) - 1} does not fit an 8-bit mask (at most "
            f"{MAX_LABEL - 1}; 255 is VOC's ignore)"
        )
    maps = upsample_cams(torch.from_numpy(np.ascontiguousarray(cams))[None], (height, width))[0]
    values = maps.numpy()
    regions = threshold_masks(values, threshold)  # [k, H, W]
    regions &= ~degenerate_maps(values)[:, None, None]  # a flat or negative map: no region
    first = regions.argmax(axis=0)  # the best rank covering each pixel (0 where none does)
    covered = regions.any(axis=0)
    return np.where(covered, labels[first], 0).astype(np.uint8)


def mask_png(mask: np.ndarray) -> bytes:
    """An 8-bit palette PNG of ``mask`` with Pascal VOC's colours."""
    image = Image.fromarray(mask, mode="P")
    image.putpalette(PALETTE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class MaskWriter:
    """``DIR/NAME.png`` per image (NAME: its stem, made unique in input order as `bbox`'s `draw`
    names pictures: the second ``x`` is ``x-2``), written atomically."""

    def __init__(self, out_dir: str | Path, paths: Sequence[str], threshold: float) -> None:
        self.out_dir, self.threshold = Path(out_dir), threshold
        taken: set[str] = set()
        self.names = {path: output_stem(path, taken) for path in paths}
        inputs = {Path(p).resolve() for p in paths}
        for name in self.names.values():  # before any work: never over an input image
            target = self.out_dir / f"{name}.png"
            if target.resolve() in inputs:
                raise SetupError(
                    f"`pseudo_masks` {printable_path(self.out_dir)}: its {name}.png would "
                    "overwrite that input image; give another folder"
                )
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def write(self, result: ImageResult) -> Path:
        """The image's mask (from ``result.cams``, kept by the run)."""
        if result.cams is None:
            raise ValueError("no class activation maps kept for the mask")
        indices = [p.class_index for p in result.predictions]
        size = (result.width, result.height)
        mask = pseudo_mask(result.cams, indices, size, self.threshold)
        target = self.out_dir / f"{self.names[result.path]}.png"
        write_bytes_atomic(mask_png(mask), target, derived=True)
        return target
