"""The threshold protocol: the CAM thresholds chosen on one split (its JSON report of `eval`)
and applied to another, as wsolevaluation's users choose them on ``train-fullsup`` and report
``test`` at them (``cam_threshold_from`` REPORT.json).

The report is read once, in the run's setup, before any image (`carried_thresholds`), and
checked as strictly as any input: a bounded JSON document (`files.reading.read_json`: a FIFO,
a huge or a deeply nested file refused), its MaxBoxAccV2 of this run's protocol and IoU levels,
its image count a positive integer, and every threshold a number on this run's CAM threshold
grid, so nothing in it can fail after the images have run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cam_cli.errors import EvaluationError
from cam_cli.files.reading import read_json

GRID_TOLERANCE = 1e-9  # `MaxBoxAccV2.summary_at` finds a carried threshold on the grid so


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def carried_thresholds(
    report_path: str | Path,
    protocol: str,
    iou_thresholds: Sequence[float],
    cam_thresholds: Sequence[float] | None = None,
) -> dict:
    """The best CAM threshold per IoU level of an earlier report's MaxBoxAccV2, checked to be
    of the same protocol and IoU levels and (given ``cam_thresholds``, this run's grid) on the
    grid: ``{"thresholds", "source", "images", "report"}``. ``source`` names the report and
    how its thresholds were chosen, for the new report. `EvaluationError` naming the file for
    anything else (module docstring)."""
    path = Path(report_path)
    try:
        report = read_json(path, expected="the `json_report` report of `cam-cli eval`")
    except ValueError as error:
        raise EvaluationError(str(error)) from None
    maxbox = report.get("maxboxacc_v2") if isinstance(report, dict) else None
    if not isinstance(maxbox, dict) or not maxbox.get("images"):
        raise EvaluationError(
            f"{path}: no MaxBoxAccV2 in this report; choose the thresholds with "
            "`cam-cli eval `maxboxacc` `json_report` REPORT.json` on the other split"
        )
    images = maxbox["images"]
    if not isinstance(images, int) or isinstance(images, bool) or images < 1:
        raise EvaluationError(f"{path}: its MaxBoxAccV2 'images' is not a positive integer")
    theirs = maxbox.get("protocol", "cam-cli")  # reports before the protocol were cam-cli's
    if theirs != protocol:
        shown = theirs if isinstance(theirs, str) else "(not a name)"
        raise EvaluationError(
            f"{path}: its thresholds were chosen with MaxBoxAccV2 protocol {shown[:40]}, this "
            f"run uses {protocol}; use the same `maxboxacc_protocol`"
        )
    given = maxbox.get("iou_thresholds")
    if not isinstance(given, list) or not all(_is_number(v) for v in given):
        raise EvaluationError(f"{path}: its MaxBoxAccV2 'iou_thresholds' are not numbers")
    levels = [float(v) for v in given]
    if levels != [float(v) for v in iou_thresholds]:
        raise EvaluationError(f"{path}: its IoU levels {levels[:10]} are not this run's")
    thresholds = maxbox.get("best_threshold")
    if not isinstance(thresholds, list) or len(thresholds) != len(levels):
        raise EvaluationError(f"{path}: its MaxBoxAccV2 has no best_threshold per IoU level")
    for threshold in thresholds:
        _check_threshold(threshold, cam_thresholds, path)
    return {
        "thresholds": [float(t) for t in thresholds],
        "source": f"{path.resolve()} (best on its {images} images)",
        "images": images,
        "report": str(path.resolve()),
    }


def _check_threshold(value: Any, grid: Sequence[float] | None, path: Path) -> None:
    """A carried threshold: a number in [0, 1), on this run's grid when it is given."""
    if not _is_number(value) or not 0 <= value < 1:
        shown = repr(value)[:40]
        raise EvaluationError(
            f"{path}: its best_threshold {shown} is not a CAM threshold in [0, 1)"
        )
    if grid is not None and not np.isclose(grid, value, rtol=0, atol=GRID_TOLERANCE).any():
        raise EvaluationError(
            f"{path}: its best_threshold {value} is not on this run's CAM threshold grid "
            f"({len(grid)} thresholds from {grid[0]:g}); choose it with the same protocol"
        )
