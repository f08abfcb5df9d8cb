"""The ground-truth record every reader returns, and the one check of a box's coordinates.

A leaf: the readers of each format (`data.annotations`, `data.tiny_imagenet`,
`data.wsol_metadata`) all build these, so they import it and never each other for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Box = tuple[int, int, int, int]

KAGGLE_HEADER = ["ImageId", "PredictionString"]
# No image has a pixel this far out (PIL decodes at most a few hundred million pixels); a
# larger coordinate is a broken file, refused while reading, before any model runs.
MAX_COORDINATE = 2**31 - 1


@dataclass(frozen=True)
class ImageAnnotation:
    """Ground truth of one image: its class label(s) and boxes (each box with its label)."""

    image_id: str
    labels: tuple[str, ...]
    boxes: tuple[tuple[str, Box], ...] = ()
    width: int | None = None
    height: int | None = None


def unique(items: Iterable[str]) -> tuple[str, ...]:
    """Distinct items in order of first appearance (an image's labels, from its boxes)."""
    return tuple(dict.fromkeys(items))


def check_box(box: Box, where: str) -> Box:
    xmin, ymin, xmax, ymax = box
    if xmin < 0 or ymin < 0 or xmax < xmin or ymax < ymin:
        raise ValueError(f"{where}: invalid box {list(box)} (need 0 <= min <= max)")
    if xmax > MAX_COORDINATE or ymax > MAX_COORDINATE:
        raise ValueError(f"{where}: invalid box {list(box)} (a coordinate above "
                         f"{MAX_COORDINATE}, outside any image)")  # fmt: skip
    return box
