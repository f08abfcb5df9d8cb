"""What a report is made from: plain typed records that a run fills with what it already
computed. The renderers read these and nothing else (no model, no ground-truth files), so a
report never recomputes a figure, and the run decides what it keeps for one.

Boxes are inclusive pixel boxes ``(x0, y0, x1, y1)`` in the grid of the image's ``width x
height`` (what `cam-cli bbox` and `eval`'s `per_image` write). CAMs are 2-D float arrays at any
resolution (the feature map's is enough: they are resized to the picture), for the class named.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class RunInfo:
    """What was run, said at the top of every report. ``data``: the folders and files read,
    by the library's argument name (``images``, ``annotations``...); ``settings``: any other
    setting worth showing (CAM threshold, protocol...), already as text."""

    command: str
    version: str
    started: str  # ISO 8601 date and time
    seconds: float | None = None  # time taken by the run the report describes
    network: str | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    device: str | None = None
    precision: str | None = None
    method: str | None = None  # the CAM method and layer, where several exist
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Predicted:
    """One predicted class of an image and the box of its CAM."""

    label: str  # a wnid, or a class index as text
    name: str | None
    score: float
    box: Box | None
    rank: int = 1


@dataclass(frozen=True)
class ImageRow:
    """One evaluated image, as the evaluation scored it (its per-image line).

    ``top1_iou``: the top-1 box's best IoU with any ground-truth box; ``gt_known_iou``: the
    true class's box's (`metrics.LocalizationEvaluator`). The booleans are the run's own
    verdicts; the report counts them, never decides them again. ``true_cam``/``top1_cam``: the
    maps of the true class and of the top-1 class, for the pictures; None draws the boxes on
    the bare image.
    """

    image_id: str
    path: str | None
    width: int | None
    height: int | None
    true_label: str | None
    true_name: str | None
    gt_boxes: tuple[Box, ...]
    top1: Predicted | None
    gt_known_box: Box | None
    top1_iou: float | None
    gt_known_iou: float | None
    top1_cls_correct: bool
    top1_loc_correct: bool
    gt_known_correct: bool | None
    error: str | None = None
    true_cam: np.ndarray | None = field(default=None, compare=False, repr=False)
    top1_cam: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class MaxBoxAccCurves:
    """MaxBoxAccV2's accuracy at every CAM threshold and IoU level (``accuracy [T, I]``, in
    %, hits over images as `MaxBoxAccV2.summary` takes its best from), and that ``summary``
    itself (IoU levels, best accuracy and threshold per level, protocol)."""

    thresholds: np.ndarray  # [T]
    accuracy: np.ndarray  # [T, I], percent
    summary: Mapping[str, Any]


@dataclass(frozen=True)
class PrecisionRecall:
    """PxAP's precision-recall curve (`pxap.PxAP.curve`, top threshold first) and its
    summary (`PxAP.summary`: the figure, images, threshold interval)."""

    precision: np.ndarray
    recall: np.ndarray
    summary: Mapping[str, Any]


@dataclass(frozen=True)
class EvalReportInput:
    """Everything `eval`'s `report` shows. ``figures``: the `eval` `json_report` (the dict
    `evaluate` returns), whose numbers the page prints with the table's own formatting."""

    run: RunInfo
    figures: Mapping[str, Any]
    rows: Sequence[ImageRow]
    maxboxacc: MaxBoxAccCurves | None = None
    pxap: PrecisionRecall | None = None


@dataclass(frozen=True)
class BboxImage:
    """One image of a `cam-cli bbox` run: its ranked predictions (or its error) and the top-1
    class's CAM for the picture (None: boxes on the bare image)."""

    path: str
    width: int | None
    height: int | None
    predictions: tuple[Predicted, ...]
    error: str | None = None
    cam: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class BboxReportInput:
    """Everything `bbox`'s `report` shows. ``images``: those the gallery may show (a run may
    keep only the ones `bbox_selection` would pick); ``class_counts``: the top-1 class of every
    image of the run, ``{(label, name): count}``; ``total``/``failed``: the run's counts."""

    run: RunInfo
    images: Sequence[BboxImage]
    class_counts: Mapping[tuple[str, str | None], int]
    total: int
    failed: Sequence[tuple[str, str]] = ()  # (path, error) of images that failed


@dataclass(frozen=True)
class GridImage:
    """A val image whose CAM a training report follows from epoch to epoch."""

    path: str
    label: str  # its class, as shown


@dataclass(frozen=True)
class CamGrid:
    """The CAMs of a fixed handful of images after each epoch: ``cams[e][i]`` is image i's map
    (of its own class) after ``epochs[e]``."""

    images: Sequence[GridImage]
    epochs: Sequence[int]
    cams: Sequence[Sequence[np.ndarray]]


@dataclass(frozen=True)
class TrainingReportInput:
    """Everything a training run's ``report.html`` shows: the lines of ``metrics.jsonl``
    (`training.trainer`: epoch, train_loss, train_acc, val_acc or None, lr, images, seconds)
    and the CAM grid, if kept."""

    run: RunInfo
    metrics: Sequence[Mapping[str, Any]]
    cam_grid: CamGrid | None = None
    epochs_planned: int | None = None


@dataclass(frozen=True)
class ReportOptions:
    """Bounds of a report. ``gallery_cap``: pictures per gallery (failure category, wrong
    class; the bbox gallery takes ``bbox_cap``); ``picture_side``: the longest side of a
    picture, the full-size view (larger images are shrunk); ``min_picture_side``: tiny images
    are enlarged by a whole factor, nearest neighbour, to at least this; ``grid_epochs``: the
    training grid's columns at most (first, last and evenly between). ``describe``: how the page
    words the lines the library writes for people (the text table, the curves' labels), which
    name arguments in backticks: a caller that prints them otherwise passes its own rewriting
    (the CLI, its ``as_flags``), so the page reads as what the user saw; None keeps them."""

    gallery_cap: int = 24
    bbox_cap: int = 120
    picture_side: int = 448
    min_picture_side: int = 224
    jpeg_quality: int = 82
    grid_epochs: int = 10
    workers: int = 2
    describe: Callable[[str], str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("gallery_cap", "bbox_cap", "picture_side", "min_picture_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"`jpeg_quality` must be in [1, 95], got {self.jpeg_quality}")
        if self.grid_epochs < 2 or self.workers < 1:
            raise ValueError("`grid_epochs` must be at least 2 and `workers` at least 1")


def command_line() -> str:
    """The command as typed, as far as the process knows it."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "cam-cli"
    if program in ("__main__.py", "-c", "") or program.startswith("python"):
        program = "cam-cli"
    return shlex.join([program, *sys.argv[1:]])
