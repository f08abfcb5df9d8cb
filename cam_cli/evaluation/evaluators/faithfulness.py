"""Faithfulness of the maps (`cam.faithfulness`: Average Drop, Increase in Confidence,
Deletion and Insertion AUC, as torchcam 0.5 computes them): each image's figures are made in
the pipeline, beside the network that the perturbed inputs need; here they are averaged over
the images, as torchcam's ``summary`` does."""

from __future__ import annotations

from dataclasses import replace

from cam_cli.cam.faithfulness import FIGURES, STEPS
from cam_cli.errors import EvaluationError
from cam_cli.evaluation.evaluators.base import Evaluator, ScoredImage, Setup
from cam_cli.evaluation.report import FaithfulnessFigures, Report


class Faithfulness(Evaluator):
    """The mean of each figure over the images that gave one (a failed image gives none and
    is counted)."""

    key = "faithfulness"

    def __init__(self) -> None:
        self.sums = [0.0] * len(FIGURES)
        self.images = 0
        self.failed = 0

    @classmethod
    def setup(cls, setup: Setup) -> Faithfulness | None:
        if not setup.options.metrics.faithfulness:
            return None
        if setup.mode != "model":
            raise EvaluationError("`faithfulness` needs the network: a model run")
        return cls()

    def accumulate(self, image: ScoredImage) -> None:
        figures = image.from_map.get(self.key) if image.error is None else None
        if figures is None:
            self.failed += 1
            return
        self.sums = [total + value for total, value in zip(self.sums, figures, strict=True)]
        self.images += 1

    def compute(self, report: Report) -> Report:
        if not self.images:
            raise EvaluationError("`faithfulness`: no image gave a map to score")
        means = {name: total / self.images for name, total in zip(FIGURES, self.sums, strict=True)}
        figures = FaithfulnessFigures(
            **means,  # type: ignore[typeddict-item]
            images=self.images,
            failed_images=self.failed,
            steps=STEPS,
            baseline="zeros (after normalisation)",
            classes="top-1",
        )
        return replace(report, faithfulness=figures)
