"""Box 2 and the released combination: what ``ILSVRC_evaluate_bbox.m`` scored besides box 1.

The released evaluation (zhoubolei/CAM) ran ``dt_box`` on each of the top-5 heatmaps and scored
three lists of guesses with the devkit:
- ``bbox1``: each class with its first box (what `LocalizationEvaluator` scores as usual);
- ``bbox2``: each class with its second box;
- ``bboxCombine``: ``(class 1, box 1), (class 1, box 2), (class 2, box 1), (class 2, box 2),
  (class 3, box 1)``, the first five of the interleaved list, scored as five guesses.
It also helps to know how often *either* box is right for the same classes, so that is
reported too: top-1 (class 1 with box 1 or box 2) and top-5 (any of the five classes with
either of its two boxes).

Records carry each prediction's ranked boxes as ``boxes`` (``box_rule`` zhou2016). A
prediction without a second box (the released program assumed two; MATLAB would have stopped)
scores its box 2 as wrong here.
"""

from __future__ import annotations

from collections.abc import Mapping

from cam_cli.data.ground_truth import ImageAnnotation
from cam_cli.evaluation.localization import LocalizationEvaluator, percent_error


def _with_box(record: Mapping, rank: int) -> dict:
    """The record with every prediction's box replaced by its ``rank``-th (0-based) box."""
    predictions = [
        {**p, "box": (p.get("boxes") or [])[rank] if len(p.get("boxes") or []) > rank else None}
        for p in record.get("predictions") or []
    ]
    return {**record, "predictions": predictions}


def _released_combination(record: Mapping) -> dict:
    """``bboxCombine``: each class with box 1 then box 2, the first five guesses."""
    ordered = sorted(record.get("predictions") or [], key=lambda p: p.get("rank", 0))
    guesses: list[dict] = []
    for prediction in ordered:
        boxes = prediction.get("boxes") or [prediction.get("box")]
        for position in range(2):
            box = boxes[position] if len(boxes) > position else None
            guesses.append({**prediction, "rank": len(guesses) + 1, "box": box})
    return {**record, "predictions": guesses[:5]}


class SecondBoxScorer:
    """Box 2, either box, and the released combination, one image at a time."""

    def __init__(self) -> None:
        self.box2 = LocalizationEvaluator()
        self.combined = LocalizationEvaluator()
        self.either = {"top1_loc": 0, "top5_loc": 0}
        self.images = 0
        self.loc_total = 0

    def add(self, record: Mapping, annotation: ImageAnnotation, box1_result: Mapping) -> None:
        """Score one image, given `LocalizationEvaluator.add`'s result for box 1."""
        second = self.box2.add(_with_box(record, 1), annotation)
        self.combined.add(_released_combination(record), annotation)
        for key in self.either:
            self.either[key] += bool(box1_result[f"{key}_correct"] or second[f"{key}_correct"])

    def summary(self) -> dict:
        box2, combined = self.box2.summary(), self.combined.summary()
        loc_total = box2["images"] if box2["images_without_boxes"] < box2["images"] else 0
        return {
            "box2": {k: box2[k] for k in ("top1_loc_error", "top5_loc_error")},
            "either_box": {
                "top1_loc_error": percent_error(self.either["top1_loc"], loc_total),
                "top5_loc_error": percent_error(self.either["top5_loc"], loc_total),
            },
            "released_combination": {k: combined[k] for k in ("top1_loc_error", "top5_loc_error")},
        }
