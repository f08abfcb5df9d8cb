"""Scoring, whatever the source of the boxes: the evaluator, MaxBoxAccV2 and the second box
fed one image at a time (`Scorer`), and the settings every mode's report shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cam_cli.data.annotations import ImageAnnotation
from cam_cli.data.matching import Missing
from cam_cli.errors import EvaluationError
from cam_cli.evaluation.metrics import LocalizationEvaluator, MaxBoxAccV2, maxboxacc_protocol
from cam_cli.evaluation.resume import record_from_line
from cam_cli.evaluation.second_box import SecondBoxScorer


def without_guessed_size(record: Mapping) -> Mapping:
    """A failed image's record, with its size marked unknown.

    The evaluator falls back on the annotation's image size when a record has none, and the
    median-box baseline then counts the failed image's boxes. Only XML annotations state sizes,
    so XML and CSV ground truth would give different figures whenever an image fails; with the
    size unknown, a failed image never enters the median, whatever the annotation format.
    """
    if record.get("error") is None:
        return record
    return {**record, "width": None, "height": None}


class Scorer:
    """The evaluator, MaxBoxAccV2 (optional) and the per-image line of every scored image."""

    def __init__(
        self,
        maxboxacc: bool,
        fingerprint: str | None,
        boxes: int = 1,
        protocol: str = "wsol",
        carried: Mapping | None = None,
    ) -> None:
        self.evaluator = LocalizationEvaluator()
        self.second = SecondBoxScorer() if boxes == 2 else None
        self.maxbox = MaxBoxAccV2(protocol=protocol) if maxboxacc else None
        self.carried = carried  # `carried_thresholds`: thresholds chosen on another split
        self.fingerprint = fingerprint
        self.resumed = 0

    def add(
        self,
        record: Mapping,
        annotation: ImageAnnotation,
        gt_known_box: Sequence[int] | None = None,
        maxbox_ious: np.ndarray | None = None,
    ) -> dict:
        """Score one image; ``maxbox_ious`` come from the model run's analysis (MaxBoxAcc)."""
        result = self.evaluator.add(without_guessed_size(record), annotation, gt_known_box)
        if self.second is not None:
            self.second.add(without_guessed_size(record), annotation, result)
        line = {**result, "width": record.get("width"), "height": record.get("height")}
        if self.maxbox is not None:
            ious = np.zeros(len(self.maxbox.thresholds))
            if maxbox_ious is not None and result["gt_boxes"] and result["error"] is None:
                ious = maxbox_ious
            # else: failed image or no box, a miss at every threshold
            self._add_maxbox_ious(ious)
            line["maxboxacc_ious"] = [float(v) for v in ious]
        if self.fingerprint is not None:
            line["run"] = self.fingerprint
        return line

    def _add_maxbox_ious(self, ious: Sequence[float]) -> None:
        self.maxbox.add_best_ious(np.asarray(ious, dtype=np.float64))

    def readd(self, line: Mapping, annotation: ImageAnnotation) -> None:
        """Feed back a per-image line of an earlier (interrupted) run, exactly as first scored."""
        record = without_guessed_size(record_from_line(line))
        self.evaluator.add(record, annotation, line.get("gt_known_box"))
        if self.maxbox is not None:
            ious = line.get("maxboxacc_ious")
            if ious is None or len(ious) != len(self.maxbox.thresholds):
                raise EvaluationError(f"per-image line of {line.get('path')} has no MaxBoxAcc IoUs")
            self._add_maxbox_ious(ious)
        self.resumed += 1

    def report(self, missing: Missing, settings: Mapping, gt_known_available: bool) -> dict:
        extra = {} if self.second is None else {"second_box": self.second.summary()}
        if self.carried is not None and self.maxbox is not None:
            extra["maxboxacc_v2_carried"] = self.maxbox.summary_at(self.carried)
        return {
            **self.evaluator.summary(),
            **extra,
            "maxboxacc_v2": None if self.maxbox is None else self.maxbox.summary(),
            "gt_known_available": gt_known_available,
            "missing": missing.as_dict(),
            "resumed_images": self.resumed,
            "settings": dict(settings),
        }


def maxboxacc_setup(maxboxacc: bool, protocol: str, cam_threshold_from: str | Path | None) -> tuple:
    """The protocol (by name), and the carried thresholds of ``cam_threshold_from`` if any."""
    from cam_cli.evaluation.thresholds import carried_thresholds

    try:
        chosen = maxboxacc_protocol(protocol)
    except ValueError as error:
        raise EvaluationError(str(error)) from None
    if cam_threshold_from is None:
        return chosen, None
    if not maxboxacc:
        raise EvaluationError(
            "--cam-threshold-from carries MaxBoxAccV2's CAM thresholds; add --maxboxacc"
        )
    grid = MaxBoxAccV2(protocol=chosen)  # the report's thresholds must be on this run's grid
    return chosen, carried_thresholds(
        cam_threshold_from, chosen.name, grid.iou_thresholds, grid.thresholds
    )


def maxboxacc_settings(
    maxboxacc: bool, protocol: str, save_scoremaps: str | Path | None, carried: Mapping | None
) -> dict:
    """Report entries of the MaxBoxAcc options (none for a run without them)."""
    settings: dict[str, Any] = {"maxboxacc_protocol": protocol} if maxboxacc else {}
    if save_scoremaps is not None:
        settings["save_scoremaps"] = str(Path(save_scoremaps).resolve())
    if carried is not None:
        settings["cam_threshold_from"] = carried["report"]
    return settings


def box_settings(box_rule: str = "paper", ten_crop: bool = False, boxes: int = 1) -> dict:
    """The box settings that differ from the defaults (none for a default run)."""
    given = {"box_rule": box_rule, "ten_crop": ten_crop, "boxes": boxes}
    defaults = {"box_rule": "paper", "ten_crop": False, "boxes": 1}
    return {key: value for key, value in given.items() if value != defaults[key]}


def check_boxes(boxes: int, per_image: str | Path | None, box_rule: str | None = None) -> None:
    if boxes not in (1, 2):
        raise EvaluationError(f"--boxes must be 1 or 2 (as the released evaluation), not {boxes}")
    if boxes == 2 and box_rule == "paper":
        raise EvaluationError("--boxes 2 needs a rule that ranks boxes: --box-rule zhou2016")
    if boxes == 2 and per_image is not None:
        raise EvaluationError("--boxes 2 cannot resume from --per-image yet; leave one out")


def absolute(path: str | Path) -> str:
    """Paths in the report are absolute, so a report says where its inputs were."""
    return str(Path(path).resolve()) if str(path) != "-" and Path(path).exists() else str(path)
