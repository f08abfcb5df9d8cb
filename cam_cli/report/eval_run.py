"""`eval`'s `report`: the evaluation run as usual, and its HTML page made from what the run
itself computed (`evaluate` with an ``on_image`` hook), never from a second pass.

`EvalCollector` takes each image once every evaluator has counted it: its per-image line (the
same line `per_image` writes) becomes a report row, its MaxBoxAccV2 IoUs are counted into
the curves (checked against the run's own best accuracies), and the CAMs the run handed on
(`model_run.TrueClassAnalysis`, ``report_cams``) are kept only while the image could still be
in a gallery: every few hundred images the galleries are chosen again over the images kept and
the new ones (`eval_page.gallery_selection`, the rule the page itself applies), and the other
images' CAMs are dropped. Memory holds one small row per image plus a bounded number of maps.
With masks, the pixel histograms the run's PxAP evaluator computed on each map
(``from_map["pxap"]``) are summed as it sums them, for its precision-recall curve (checked
against the run's own PxAP figure and pixel counts).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

import numpy as np

from cam_cli.data.classes import ClassInfo
from cam_cli.errors import EvaluationError
from cam_cli.eval_options import EvalOptions
from cam_cli.evaluation.evaluate import evaluate
from cam_cli.evaluation.evaluators.base import ScoredImage
from cam_cli.evaluation.evaluators.pxap import PxAPFigure
from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2
from cam_cli.evaluation.pxap import PxAP
from cam_cli.evaluation.report import Report, json_text
from cam_cli.report.eval_page import gallery_selection, row_categories, write_eval_report
from cam_cli.report.from_eval_files import MaxBoxAccCounter, row_from_line, run_info_from_settings
from cam_cli.report.inputs import (
    EvalReportInput,
    ImageRow,
    PrecisionRecall,
    ReportOptions,
    command_line,
)
from cam_cli.runtime.distributed import is_main_process
from cam_cli.settings import ModelOptions

CamPair = tuple[np.ndarray | None, np.ndarray | None]  # (true class's CAM, top-1 class's CAM)
FLUSH = 512  # images between two choices of the galleries


class EvalCollector:
    """What an `eval`'s `report` page needs of the run, gathered image by image (`add`)."""

    def __init__(
        self,
        options: ReportOptions,
        iou_thresholds: Sequence[float],
        names: Mapping[str, str] | None = None,
    ) -> None:
        """``names``: class names by label, where known before the run (the model's list);
        the predictions' own names fill in the others."""
        self.options = options
        self.iou_thresholds = iou_thresholds
        self.rows: list[ImageRow] = []
        self.names: dict[str, str] = dict(names or {})
        self.counter: MaxBoxAccCounter | None = None
        self.pxap: PxAP | None = None
        self.pending: list[tuple[ImageRow, CamPair]] = []
        self.kept: dict[str, tuple[ImageRow, CamPair]] = {}

    def add(self, image: ScoredImage) -> None:
        """One image, after the evaluators (its line whole)."""
        histograms = image.from_map.get(PxAPFigure.key) if image.error is None else None
        if histograms is not None:  # the rule of `PxAPFigure.accumulate`
            if self.pxap is None:
                self.pxap = PxAP()
            foreground, background = histograms
            self.pxap.add_histograms(foreground, background, images=1)
        line = image.line
        if not line:  # score maps: no per-image line, figures and curves only
            return
        for prediction in line.get("predictions") or ():
            label, name = prediction.get("wnid"), prediction.get("name")
            if label and name:
                self.names.setdefault(label, name)
        row = row_from_line(line)
        self.rows.append(row)
        ious = line.get("maxboxacc_ious")
        if ious is not None:
            if self.counter is None:
                self.counter = MaxBoxAccCounter(self.iou_thresholds)
            self.counter.add_ious(ious)
        cams = image.from_map.get("report_cams")
        if cams is not None:
            self.pending.append((row, cams))
            if len(self.pending) >= FLUSH:
                self._choose()

    def _choose(self) -> None:
        """Keep the CAMs of the images the galleries would show now; drop the others'."""
        pool = {**self.kept, **{row.image_id: (row, cams) for row, cams in self.pending}}
        self.pending = []
        rows = [row for row, _ in pool.values()]
        chosen = gallery_selection(rows, self.options, row_categories(rows))
        wanted = {row.image_id for group in chosen.values() for row in group}
        self.kept = {key: value for key, value in pool.items() if key in wanted}

    def report_input(self, report: Report, run_seconds: float, started: str) -> EvalReportInput:
        """The page's input: every row (the gallery images with their CAMs), the figures as
        the JSON has them, the MaxBoxAccV2 curves counted from the run's own IoUs."""
        self._choose()
        figures = json.loads(json_text(report))
        rows = []
        for row in self.rows:
            name = self.names.get(row.true_label) if row.true_label else None
            kept = self.kept.get(row.image_id)
            if kept is not None:
                row = replace(row, true_cam=kept[1][0], top1_cam=kept[1][1])
            rows.append(replace(row, true_name=name) if name else row)
        summary = figures.get("maxboxacc_v2")
        curves = None
        if self.counter is not None and summary and summary.get("images"):
            curves = self.counter.curves(summary)
        run = run_info_from_settings(figures["settings"], command_line(), started, run_seconds)
        pxap = self._precision_recall(figures.get("pxap"))
        return EvalReportInput(run=run, figures=figures, rows=rows, maxboxacc=curves, pxap=pxap)

    def _precision_recall(self, summary: Mapping | None) -> PrecisionRecall | None:
        """The run's PxAP curve, once the histograms summed here are found to give the
        report's ``summary`` (figure, images, pixel counts); EvaluationError otherwise."""
        if not summary or self.pxap is None:
            return None
        summed = self.pxap.summary()
        if any(summed[key] != summary.get(key) for key in summed):
            raise EvaluationError("the run's PxAP histograms do not give its PxAP figure")
        precision, recall, _ = self.pxap.curve()
        return PrecisionRecall(precision, recall, dict(summary))


def class_names(options: EvalOptions) -> dict[str, str]:
    """The true classes' names: the model's class list (a loaded model's, or the classes file
    the run reads); empty where neither says (the predictions' names are used then)."""
    model = options.source.model
    if not isinstance(model, ModelOptions):
        return _names(model.classes)
    if model.classes_file is None:
        return {}
    from cam_cli.data.classes import read_synset_mapping

    try:
        return _names(read_synset_mapping(model.classes_file))
    except (OSError, ValueError):  # the run itself says what is wrong with the file
        return {}


def _names(classes: Sequence[ClassInfo]) -> dict[str, str]:
    return {c.wnid: c.name for c in classes if c.wnid is not None and c.name is not None}


def evaluate_and_report(
    options: EvalOptions, report_options: ReportOptions | None = None
) -> Report:
    """`evaluation.evaluate.evaluate`, and, when ``options.outputs.html_report`` names a file,
    its page written there atomically (rank 0 alone under torchrun). Without one this is
    `evaluate` itself: nothing more is kept or run."""
    page = options.outputs.html_report
    if page is None:
        return evaluate(options)
    levels = [float(v) for v in MaxBoxAccV2().iou_thresholds]
    collector = EvalCollector(report_options or ReportOptions(), levels, class_names(options))
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    start = time.perf_counter()
    report = evaluate(options, on_image=collector.add)
    seconds = time.perf_counter() - start
    if is_main_process():
        write_eval_report(collector.report_input(report, seconds, started), page,
                          report_options)  # fmt: skip
    return report
