"""The one list of evaluators `evaluate` runs, in order (the ILSVRC figures open each image's
per-image line; box 2 reads them there). Each entry takes the evaluation's `base.Setup` and
gives its evaluator, or None where its figure does not apply; a new figure is one line here."""

from __future__ import annotations

from collections.abc import Callable

from cam_cli.evaluation.evaluators.base import Evaluator, Setup
from cam_cli.evaluation.evaluators.faithfulness import Faithfulness
from cam_cli.evaluation.evaluators.localization import IlsvrcLocalization
from cam_cli.evaluation.evaluators.pxap import PxAPFigure
from cam_cli.evaluation.evaluators.second_box import SecondBox
from cam_cli.evaluation.maxboxacc.evaluator import MaxBoxAcc

EVALUATORS: tuple[Callable[[Setup], Evaluator | None], ...] = (
    IlsvrcLocalization.setup,
    SecondBox.setup,
    MaxBoxAcc.setup,
    PxAPFigure.setup,
    Faithfulness.setup,
)


def make_evaluators(setup: Setup) -> list[Evaluator]:
    """The evaluators that apply to this evaluation, in `EVALUATORS` order."""
    made = (make(setup) for make in EVALUATORS)
    return [evaluator for evaluator in made if evaluator is not None]
