"""What the pipeline gives for every image: its predictions (class, score, box), or its error."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Prediction:
    rank: int
    class_index: int
    wnid: str | None
    name: str | None
    score: float
    box: list[int]
    # Every box of the class's map, ranked (box 1 is `box`), for the rules that give several
    # (`boxes.rules`); None for the paper's rule, whose records stay as they always were.
    boxes: list[list[int]] | None = None

    def as_dict(self) -> dict:
        record: dict[str, Any] = {
            "rank": self.rank,
            "class_index": self.class_index,
            "wnid": self.wnid,
            "name": self.name,
            "score": round(self.score, 6),
            "box": self.box,
        }
        if self.boxes is not None:
            record["boxes"] = self.boxes
        return record


@dataclass
class ImageResult:
    path: str
    width: int = 0
    height: int = 0
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None
    cams: np.ndarray | None = None  # [k, h, w] at feature resolution, when asked for
    # Extra classes asked per image (e.g. the true class for GT-known localization):
    extra: list[Prediction] = field(default_factory=list)
    extra_cams: np.ndarray | None = None  # [m, S, S] at input resolution (or [m, h, w])
    # What the run's `Analysis` computed for this image (`inference.analysis`):
    analysis: object = None
    # Average Drop, Increase in Confidence, Deletion and Insertion AUC of the top-1 map
    # (`cam.faithfulness.FIGURES`), when asked for (`CamOptions.faithfulness`):
    faithfulness: list[float] | None = None

    def flag_non_finite(self) -> bool:
        """A model that gives NaN or infinite scores (NaN weights, an overflow) has no answer
        for this image: it becomes an error (counted, exit code 1), never ``"score": NaN``,
        which is not JSON. True when flagged."""
        scores = [p.score for p in (*self.predictions, *self.extra)]
        if all(math.isfinite(score) for score in scores):
            return False
        kind = "NaN" if any(math.isnan(score) for score in scores) else "inf"
        self.error = f"non-finite scores ({kind}) from the model"
        self.predictions, self.extra = [], []
        self.cams = self.extra_cams = None
        return True

    def as_record(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "predictions": [p.as_dict() for p in self.predictions],
        }
