"""What the pipeline gives for every image: its predictions (class, score, box), or its error."""

from __future__ import annotations

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
    # (`box_rules`); None for the paper's rule, whose records stay as they always were.
    boxes: list[list[int]] | None = None

    def as_dict(self) -> dict:
        record = {
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
    extra_cams: np.ndarray | None = None  # [m, S, S] at network input resolution
    analysis: Any = None  # what `localize(finish=...)` computed for this image

    def as_record(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "predictions": [p.as_dict() for p in self.predictions],
        }
