"""What every evaluator is (`Evaluator`), what it is given image by image (`ScoredImage`) and
what it is set up from (`Setup`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cam_cli.data.ground_truth import GroundTruth, ImageAnnotation
from cam_cli.eval_options import EvalOptions
from cam_cli.evaluation.report import Report

if TYPE_CHECKING:
    import torch


@dataclass
class ScoredImage:
    """One image as a source gives it to the evaluators, in the order they see it.

    ``annotation``: its ground truth. ``path``: the image (or score map) it was scored from,
    as the report names it. ``error``: why it gave no result (it then counts as wrong), else
    None. ``record``: its `cam-cli bbox` record (``width``, ``height``, ``predictions``), for
    sources with boxes. ``gt_known_box``: the box of its true class's CAM (a model run).
    ``from_map``: what each evaluator computed on its score map where the map was
    (`Evaluator.on_map`, `Evaluator.on_device`), by `Evaluator.key`. ``line``: its per-image
    line, which the evaluators fill in turn. ``resumed``: read back from a per-image file
    (its line is written already)."""

    annotation: ImageAnnotation
    path: str | None
    error: str | None = None
    record: Mapping[str, Any] | None = None
    gt_known_box: Sequence[int] | None = None
    from_map: dict[str, Any] = field(default_factory=dict)
    line: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False


@dataclass(frozen=True)
class Setup:
    """What an evaluator is made from: the options, the ground truth, and the source's mode
    (``model``, ``predictions`` or ``scoremaps``)."""

    options: EvalOptions
    truth: GroundTruth
    mode: str


class Evaluator:
    """One figure over the images of an evaluation.

    `accumulate` counts one image (in order; images read back from a per-image file first);
    `compute` puts the figure into the report. An evaluator that reads each image's score map
    of the true class sets ``reads_maps`` and a ``key``: the source then calls `on_map` where
    the map is (beside the network, in several threads at once: it must not change the
    evaluator) and hands its value back on `ScoredImage.from_map`. `on_device` is the same work
    on a batch of CAMs still on the network's device, where an evaluator offers it
    (``on_device_too``)."""

    key: str = ""
    reads_maps: bool = False
    on_device_too: bool = False

    def on_map(
        self, scoremap: np.ndarray, annotation: ImageAnnotation, width: int, height: int
    ) -> object:
        """This evaluator's work on one score map (pure)."""
        raise NotImplementedError

    def on_device(
        self, step: str, cams: torch.Tensor, images: Sequence[tuple[ImageAnnotation, int, int]]
    ) -> torch.Tensor:
        """`on_map` for a batch of CAMs ``[B, H, W]`` at input size on the device, with the
        resolved box ``step``; one row per image, left on the device."""
        raise NotImplementedError

    def accumulate(self, image: ScoredImage) -> None:
        raise NotImplementedError

    def compute(self, report: Report) -> Report:
        raise NotImplementedError
