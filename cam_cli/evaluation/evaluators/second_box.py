"""Box 2, either box and the released bboxCombine (``boxes=2``, `second_box.SecondBoxScorer`),
from the ranked boxes of each prediction."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

from cam_cli.evaluation.evaluators.base import Evaluator, ScoredImage, Setup
from cam_cli.evaluation.evaluators.localization import without_guessed_size
from cam_cli.evaluation.report import Report, SecondBoxFigures
from cam_cli.evaluation.second_box import SecondBoxScorer


class SecondBox(Evaluator):
    """Runs after `localization.IlsvrcLocalization`, whose box-1 result it reads on the line."""

    def __init__(self) -> None:
        self.scorer = SecondBoxScorer()

    @classmethod
    def setup(cls, setup: Setup) -> SecondBox | None:
        if setup.options.metrics.boxes != 2 or setup.mode == "scoremaps":
            return None
        return cls()

    def accumulate(self, image: ScoredImage) -> None:
        if image.record is not None:
            self.scorer.add(without_guessed_size(image.record), image.annotation, image.line)

    def compute(self, report: Report) -> Report:
        return replace(report, second_box=cast(SecondBoxFigures, self.scorer.summary()))
