"""The ground-truth record every reader returns, the one check of a box's coordinates, and a
data set's ground truth as an evaluation takes it (`GroundTruth`).

A leaf: the readers of each format (`data.annotations`, `data.tiny_imagenet`,
`data.wsol_metadata`) all build these, so they import it and never each other for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cam_cli.data.classes import ClassInfo

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


def check_box(box: tuple[int, ...], where: str) -> Box:
    xmin, ymin, xmax, ymax = box
    if xmin < 0 or ymin < 0 or xmax < xmin or ymax < ymin:
        raise ValueError(f"{where}: invalid box {list(box)} (need 0 <= min <= max)")
    if xmax > MAX_COORDINATE or ymax > MAX_COORDINATE:
        raise ValueError(f"{where}: invalid box {list(box)} (a coordinate above "
                         f"{MAX_COORDINATE}, outside any image)")  # fmt: skip
    return (xmin, ymin, xmax, ymax)


# {image id: (instance mask paths, ignore mask path or None)}: PxAP's ground truth
MaskPaths = tuple[Sequence[Path], Path | None]


@dataclass(frozen=True)
class GroundTruth:
    """What the evaluators score against. ``annotations``: by image id (the file stem, as
    every reader keys them). ``images``: a folder matched to them by file stem, or
    ``{image id: path}`` (CUB, wsolevaluation ids under a root); None where no image is read.
    ``classes``: the class list the labels index (CUB's), checked against the model's.
    ``masks``: PxAP's masks by image id (wsolevaluation mask metadata). ``image_ids``: a
    metadata split's ids, so score maps are read as ``<id>.npy``. ``scoremap_base``: the folder
    wsolevaluation's ids start from (None: the folder above ``images``). ``files``: every file
    read for it, by the option that named it (outputs are checked against them).
    ``class_names``: the labels are class names (VOC, YOLO, COCO, CSV ground truth) still to
    be matched to the model's classes (`data.class_match`) once those are known."""

    annotations: Mapping[str, ImageAnnotation]
    images: str | Path | Mapping[str, str | Path] | None = None
    classes: Sequence[ClassInfo] | None = None
    masks: Mapping[str, MaskPaths] | None = None
    image_ids: Sequence[str] | None = None
    scoremap_base: Path | None = None
    files: Mapping[str, Sequence[Path]] = field(default_factory=dict)
    class_names: bool = False

    @property
    def has_boxes(self) -> bool:
        return any(annotation.boxes for annotation in self.annotations.values())

    def base(self) -> Path | None:
        """The folder wsolevaluation's image ids start from: given, or the folder above an
        ``images`` folder (``val/ILSVRC2012_val_...JPEG``); None for images given by id."""
        if self.scoremap_base is not None:
            return self.scoremap_base
        if self.images is None or isinstance(self.images, Mapping):
            return None
        return Path(os.path.abspath(self.images)).parent
