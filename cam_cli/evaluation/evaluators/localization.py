"""The ILSVRC figures of a run with boxes (a model run, or `cam-cli bbox` records): top-1 and
top-5 classification and localization error, GT-known localization error (a model run) and the
two baselines (`localization.LocalizationEvaluator`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

from cam_cli.evaluation.evaluators.base import Evaluator, ScoredImage, Setup
from cam_cli.evaluation.localization import LocalizationEvaluator
from cam_cli.evaluation.report import LocalizationFigures, Report

HEAD = ("images", "failed_images", "failed")  # the report's own head


def without_guessed_size(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """A failed image's record, with its size marked unknown.

    The evaluator falls back on the annotation's image size when a record has none, and the
    median-box baseline then counts the failed image's boxes. Only XML annotations state sizes,
    so XML and CSV ground truth would give different figures whenever an image fails; with the
    size unknown, a failed image never enters the median, whatever the annotation format.
    """
    if record.get("error") is None:
        return record
    return {**record, "width": None, "height": None}


class IlsvrcLocalization(Evaluator):
    """Each image's predictions scored by the ILSVRC rule; its result opens the image's
    per-image line, with the image's size."""

    def __init__(self, gt_known_available: bool) -> None:
        self.counts = LocalizationEvaluator()
        self.gt_known_available = gt_known_available

    @classmethod
    def setup(cls, setup: Setup) -> IlsvrcLocalization | None:
        """Wherever there are boxes to score: not for score maps."""
        if setup.mode == "scoremaps":
            return None
        return cls(gt_known_available=setup.mode == "model")

    def accumulate(self, image: ScoredImage) -> None:
        if image.record is None:
            return
        record = image.record
        result = self.counts.add(without_guessed_size(record), image.annotation, image.gt_known_box)
        image.line.update(result)
        image.line["width"] = record.get("width")
        image.line["height"] = record.get("height")

    def compute(self, report: Report) -> Report:
        """The figures; the images and failed ones as the ILSVRC rule counts them (an image
        without predictions fails too)."""
        summary = self.counts.summary()
        figures = {key: value for key, value in summary.items() if key not in HEAD}
        return replace(
            report,
            images=summary["images"],
            failed_images=summary["failed_images"],
            failed=summary["failed"],
            localization=cast(LocalizationFigures, figures),
            gt_known_available=self.gt_known_available,
        )
