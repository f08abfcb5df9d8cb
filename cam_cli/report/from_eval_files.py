"""A report's input from what `cam-cli eval` already wrote: its `json_report` report and its
`per_image` lines (`evaluation.resume`). Until `eval`'s `report` collects these as it runs,
this is how a report is made of a finished evaluation; the rows are the lines as scored, so
the report's verdicts are the run's.

The MaxBoxAccV2 curves are counted from the lines' per-threshold IoUs (`MaxBoxAccCounter`,
which `eval`'s `report` feeds as it runs), exactly as
`MaxBoxAccV2.add_best_ious` counts them, and checked against the JSON's best accuracies and
thresholds: lines of another run are refused, never drawn.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cam_cli.errors import EvaluationError
from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2
from cam_cli.files.checks import printable_path
from cam_cli.report.inputs import (
    Box,
    EvalReportInput,
    ImageRow,
    MaxBoxAccCurves,
    Predicted,
    RunInfo,
)

FAST = "fast: bfloat16 autocast (float16 on a GPU without bfloat16); CAMs and boxes in float32"


def _box(value: Any) -> Box | None:
    return None if value is None else _whole_box(value)


def _whole_box(value: Any) -> Box:
    x0, y0, x1, y1 = map(int, value)
    return x0, y0, x1, y1


def predicted(prediction: Mapping) -> Predicted:
    """One prediction of a record (`cam-cli bbox`, a per-image line) as the report takes it."""
    label = prediction.get("wnid") or str(prediction.get("class_index"))
    return Predicted(label, prediction.get("name"), float(prediction.get("score") or 0.0),
                     _box(prediction.get("box")), int(prediction.get("rank", 1)))  # fmt: skip


def row_from_line(line: Mapping, names: Mapping[str, str] | None = None) -> ImageRow:
    """One per-image line as a report row; ``names``: class names by label (a wnid's name)."""
    predictions = sorted(line.get("predictions") or [], key=lambda p: p.get("rank", 0))
    labels = line.get("labels") or []
    true_label = labels[0] if labels else None
    top1 = predicted(predictions[0]) if predictions else None
    return ImageRow(
        image_id=str(line.get("image_id")),
        path=line.get("path"),
        width=line.get("width"),
        height=line.get("height"),
        true_label=true_label,
        true_name=(names or {}).get(true_label) if true_label else None,
        gt_boxes=tuple(_whole_box(g["box"]) for g in line.get("gt_boxes") or []),
        top1=top1,
        gt_known_box=_box(line.get("gt_known_box")),
        top1_iou=predictions[0].get("iou") if predictions else None,
        gt_known_iou=line.get("gt_known_iou"),
        top1_cls_correct=bool(line.get("top1_cls_correct")),
        top1_loc_correct=bool(line.get("top1_loc_correct")),
        gt_known_correct=line.get("gt_known_correct"),
        error=line.get("error"),
    )


class MaxBoxAccCounter:
    """MaxBoxAccV2's hit table, fed one image's best IoUs per threshold at a time (so the
    lines need not be kept), exactly as `MaxBoxAccV2.add_best_ious` counts them."""

    def __init__(self, iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7)) -> None:
        self.counter = MaxBoxAccV2(iou_thresholds=iou_thresholds)

    def add_ious(self, ious: Sequence[float]) -> None:
        self.counter.add_best_ious(np.asarray(ious, dtype=np.float64))

    def add(self, line: Mapping) -> None:
        ious = line.get("maxboxacc_ious")
        if ious is None:
            raise EvaluationError(f"per-image line of {line.get('path')} has no MaxBoxAcc IoUs")
        self.add_ious(ious)

    def curves(self, summary: Mapping) -> MaxBoxAccCurves:
        """The accuracy table, once its best accuracies and thresholds are found to be the
        report's ``summary`` (`MaxBoxAccV2.summary`); EvaluationError otherwise."""
        recounted = self.counter.summary()
        if (recounted["accuracy"], recounted["best_threshold"]) != (
            list(summary["accuracy"]),
            list(summary["best_threshold"]),
        ):
            raise EvaluationError(
                "the per-image lines do not give the report's MaxBoxAccV2 figures"
            )
        accuracy = 100.0 * self.counter.hits / max(self.counter.images, 1)
        return MaxBoxAccCurves(self.counter.thresholds.copy(), accuracy, dict(summary))


def maxboxacc_curves(lines: Iterable[Mapping], summary: Mapping) -> MaxBoxAccCurves:
    """Accuracy per CAM threshold and IoU level from the lines' ``maxboxacc_ious``, counted
    as the run counted them; EvaluationError when their best is not the report's."""
    counter = MaxBoxAccCounter(summary["iou_thresholds"])
    for line in lines:
        counter.add(line)
    return counter.curves(summary)


def run_info_from_settings(
    settings: Mapping[str, Any], command: str, started: str, seconds: float | None = None
) -> RunInfo:
    """What was run, from the report's ``settings`` (`evaluate`'s)."""
    from cam_cli import __version__
    from cam_cli.files.digest import sha256_file

    weights = settings.get("checkpoint") or settings.get("weights")
    digest = sha256_file(weights) if weights and Path(weights).is_file() else None
    data_keys = ("images", "annotations", "cub", "wsol_metadata", "mask_root", "classes",
                 "predictions", "scoremaps", "meta", "class_predictions")  # fmt: skip
    data = {key: printable_path(str(settings[key])) for key in data_keys if settings.get(key)}
    shown = ("threshold", "topk", "input_size", "preprocessing", "box_rule", "maxboxacc_protocol",
             "decode", "method", "layer")  # fmt: skip
    extra = {key: str(settings[key]) for key in shown if settings.get(key) is not None}
    fast = settings.get("fast")
    return RunInfo(
        command=command,
        version=__version__,
        started=started,
        seconds=seconds,
        network=settings.get("arch"),
        weights=printable_path(str(weights)) if weights else None,
        weights_sha256=digest,
        data=data,
        device=settings.get("device"),
        precision=None if fast is None else (FAST if fast else "float32"),
        method="CAM (Zhou et al. 2016), last convolutional layer" if settings.get("arch") else None,
        settings=extra,
    )


def read_lines(path: str | Path) -> Iterator[dict]:
    """The lines of a per-image file, one at a time (every line whole JSON: a finished run's
    file); a 50,000-line file is never held whole."""
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, 1):
            try:
                line = json.loads(text)
            except ValueError:
                raise EvaluationError(f"{printable_path(path)}:{number}: not a JSON line") from None
            if not isinstance(line, dict):
                raise EvaluationError(f"{printable_path(path)}:{number}: not a per-image line")
            yield line


def eval_input(
    report: Mapping[str, Any],
    lines: Iterable[Mapping],
    run: RunInfo,
    names: Mapping[str, str] | None = None,
) -> EvalReportInput:
    """The report's input from an evaluation's JSON report and its per-image lines (read
    once, in order; only the rows are kept)."""
    summary = report.get("maxboxacc_v2")
    counter = None
    if summary and summary.get("images"):
        counter = MaxBoxAccCounter(summary["iou_thresholds"])
    rows = []
    for line in lines:
        rows.append(row_from_line(line, names))
        if counter is not None:
            counter.add(line)
    if len(rows) != report.get("images", len(rows)):
        raise EvaluationError(
            f"{len(rows)} per-image lines for a report of {report.get('images')} images"
        )
    curves = None if counter is None or not summary else counter.curves(summary)
    return EvalReportInput(run=run, figures=dict(report), rows=rows, maxboxacc=curves)
