"""The threshold protocol: the CAM thresholds chosen on one split (its JSON report of `eval`)
and applied to another, as wsolevaluation's users choose them on ``train-fullsup`` and report
``test`` at them (``cam_threshold_from`` REPORT.json)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from cam_cli.errors import EvaluationError


def carried_thresholds(
    report_path: str | Path, protocol: str, iou_thresholds: Sequence[float]
) -> dict:
    """The best CAM threshold per IoU level of an earlier report's MaxBoxAccV2, checked to be
    of the same protocol and IoU levels: ``{"thresholds", "source", "images", "report"}``.
    ``source`` names the report and how its thresholds were chosen, for the new report."""
    path = Path(report_path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise EvaluationError(f"{path}: cannot read ({error.strerror or error})") from None
    except ValueError:
        raise EvaluationError(
            f"{path}: not JSON; expected the `json_report` report of `cam-cli eval`"
        ) from None
    maxbox = report.get("maxboxacc_v2") if isinstance(report, dict) else None
    if not isinstance(maxbox, dict) or not maxbox.get("images"):
        raise EvaluationError(
            f"{path}: no MaxBoxAccV2 in this report; choose the thresholds with "
            "`cam-cli eval --maxboxacc --json REPORT.json` on the other split"
        )
    theirs = maxbox.get("protocol", "cam-cli")  # reports before the protocol were cam-cli's
    if theirs != protocol:
        raise EvaluationError(
            f"{path}: its thresholds were chosen with MaxBoxAccV2 protocol {theirs}, this run "
            f"uses {protocol}; use the same `maxboxacc_protocol`"
        )
    levels = [float(v) for v in maxbox.get("iou_thresholds") or []]
    if levels != [float(v) for v in iou_thresholds]:
        raise EvaluationError(f"{path}: its IoU levels {levels} are not this run's")
    thresholds = maxbox.get("best_threshold")
    if not isinstance(thresholds, list) or len(thresholds) != len(levels):
        raise EvaluationError(f"{path}: its MaxBoxAccV2 has no best_threshold per IoU level")
    return {
        "thresholds": [float(t) for t in thresholds],
        "source": f"{path.resolve()} (best on its {maxbox['images']} images)",
        "images": int(maxbox["images"]),
        "report": str(path.resolve()),
    }
