"""What every source is: it yields each image to the evaluators (`Source.images`), then says
what it left out and how it ran."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cam_cli.data.matching import Missing
from cam_cli.evaluation.evaluators.base import Evaluator, ScoredImage
from cam_cli.evaluation.report import Report


class Source:
    """``mode``: the report's ``settings.mode``; ``settings``: its entries after the inputs;
    ``missing``: what had no counterpart (complete once `images` is exhausted); ``resumed``:
    images read back from a per-image file."""

    mode: str = ""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}
        self.missing = Missing()
        self.resumed = 0

    def images(self, evaluators: Sequence[Evaluator]) -> Iterator[ScoredImage]:
        """The images, each once, in order; after the evaluators have seen one, its per-image
        line is written where the source writes them."""
        raise NotImplementedError

    def report(self, make: Callable[[], Report]) -> Report:
        """The report, made where the figures are (under torchrun: rank 0, for every rank)."""
        return make()
