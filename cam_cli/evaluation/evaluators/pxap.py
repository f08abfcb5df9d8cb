"""PxAP (`pxap`) against wsolevaluation's masks: each score map's pixel histograms where the map
is, summed over the images, then the area under the precision-recall curve."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

import numpy as np

from cam_cli.data.ground_truth import ImageAnnotation, MaskPaths
from cam_cli.errors import EvaluationError
from cam_cli.evaluation.evaluators.base import Evaluator, ScoredImage, Setup
from cam_cli.evaluation.pxap import PxAP, ground_truth_mask
from cam_cli.evaluation.report import PxAPFigures, Report

logger = logging.getLogger(__name__)


class PxAPFigure(Evaluator):
    """``masks``: by image id (`data.ground_truth.GroundTruth.masks`). ``count_failed``: the
    figure also says how many images gave no map (a model run's)."""

    key = "pxap"
    reads_maps = True

    def __init__(self, masks: Mapping[str, MaskPaths], count_failed: bool) -> None:
        self.masks = masks
        self.pxap = PxAP()
        self.count_failed = count_failed
        self.failed = 0

    @classmethod
    def setup(cls, setup: Setup) -> PxAPFigure | None:
        """Masks as ground truth, and maps to score: a model run or score maps."""
        if setup.truth.masks is None:
            return None
        if setup.mode == "predictions":
            logger.info("PxAP needs the maps: a model run, or pxap.pxap_from_scoremap_dir")
            return None
        return cls(setup.truth.masks, count_failed=setup.mode == "model")

    def on_map(
        self, scoremap: np.ndarray, annotation: ImageAnnotation, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The map's foreground and background histograms, its masks resized to its grid."""
        paths, ignore = self.masks[annotation.image_id]
        try:
            foreground, ignored = ground_truth_mask(paths, ignore, scoremap.shape)
        except ValueError as error:  # a damaged mask file (`read_grey` names it): the ground
            raise EvaluationError(str(error)) from None  # truth is wrong, stop in one line
        return self.pxap.histograms(scoremap, foreground, ignored)

    def accumulate(self, image: ScoredImage) -> None:
        histograms = image.from_map.get(self.key) if image.error is None else None
        if histograms is None:  # no map: left out of the curve
            self.failed += 1
            return
        foreground, background = histograms
        self.pxap.add_histograms(foreground, background, images=1)

    def compute(self, report: Report) -> Report:
        try:
            figures: dict[str, Any] = self.pxap.summary()
        except ValueError as error:  # no foreground pixel, nothing scored
            raise EvaluationError(str(error)) from None
        if self.count_failed:
            figures["failed_images"] = self.failed
        return replace(report, pxap=cast(PxAPFigures, figures))
