"""`bbox`'s `report`: the `bbox` run as usual (`outputs.runs.write_boxes`, JSON Lines), and one
HTML page of it (`bbox_page`).

The records are read as the run writes them (the output stream passes each line on, and the
collector keeps the class counts, the failures and the ``bbox_cap`` highest-scoring images, so
memory stays bounded whatever the number of images). The gallery's overlays are the top-1
class's CAMs of those images only, made after the run in one batched pass of the same network
(at most ``bbox_cap`` images: the run itself keeps no map).
"""

from __future__ import annotations

import heapq
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

from cam_cli import __version__
from cam_cli.files.checks import check_output_file, printable_path
from cam_cli.inference.analysis import Analysis
from cam_cli.inference.localizer import Localizer
from cam_cli.models.loading import LoadedModel, load_model
from cam_cli.outputs.runs import RunSummary, write_boxes
from cam_cli.outputs.writers import open_output
from cam_cli.report import plots
from cam_cli.report.bbox_page import write_bbox_report
from cam_cli.report.from_eval_files import predicted
from cam_cli.report.inputs import (
    BboxImage,
    BboxReportInput,
    ReportOptions,
    RunInfo,
    command_line,
)
from cam_cli.runtime.distributed import is_main_process, process_device
from cam_cli.settings import CamOptions, ModelOptions, RunOptions


class BboxCollector:
    """What the page needs of every record: its top-1 class, its error, and the records of
    the images the gallery may still show (`bbox_page.bbox_selection`'s order)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: Counter[tuple[str, str | None]] = Counter()
        self.failed: list[tuple[str, str]] = []
        self.total = 0
        self.best: list[tuple[tuple[float, str], BboxImage, int | None]] = []

    def add(self, record: dict[str, Any]) -> None:
        self.total += 1
        path = str(record.get("path"))
        if record.get("error") is not None:
            self.failed.append((path, str(record["error"])))
        found = sorted(record.get("predictions") or [], key=lambda p: p.get("rank", 0))
        if record.get("error") is not None or not found:
            return
        ranked = tuple(predicted(p) for p in found)
        self.counts[(ranked[0].label, ranked[0].name)] += 1
        image = BboxImage(path, record.get("width"), record.get("height"), ranked)
        self.best.append(((-ranked[0].score, path), image, found[0].get("class_index")))
        if len(self.best) >= 2 * self.cap:
            self.best = heapq.nsmallest(self.cap, self.best, key=lambda item: item[0])

    def gallery(self) -> list[tuple[BboxImage, int | None]]:
        """The gallery's images, highest top-1 score first, with their top-1 class index."""
        kept = heapq.nsmallest(self.cap, self.best, key=lambda item: item[0])
        return [(image, index) for _, image, index in kept]


class _Tee:
    """The records' stream: every text goes on to ``handle``; each whole line is read back
    as the record it is and handed to the collector."""

    def __init__(self, handle: IO[str], collector: BboxCollector) -> None:
        self.handle, self.collector, self.pending = handle, collector, ""

    def write(self, text: str) -> int:
        written = self.handle.write(text)
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if line.strip():
                self.collector.add(json.loads(line))
        if self.handle is sys.stdout:
            self.handle.flush()  # pipelines keep streaming, as without a report
        return written

    def flush(self) -> None:
        self.handle.flush()


def _top1_cams(
    model: LoadedModel, chosen: Sequence[tuple[BboxImage, int | None]], run: RunOptions
) -> dict[str, Any]:
    """{path: the top-1 class's CAM at feature resolution} of the gallery images, one run."""
    index_of = {image.path: index or 0 for image, index in chosen}
    analysis = Analysis(extra_classes=lambda path: [index_of[path]], extra_cams="feature")
    localizer = Localizer(model, CamOptions(topk=1), replace(run, progress=False))
    try:
        results = localizer.localize(list(index_of), analysis)
        return {
            r.path: r.extra_cams[0] for r in results if r.error is None and r.extra_cams is not None
        }
    finally:
        localizer.close()


def write_boxes_with_report(
    model: LoadedModel | ModelOptions,
    images: Sequence[str],
    report: str | Path,
    *,
    output: str | Path | IO[str] | None = None,
    cam: CamOptions = CamOptions(),
    classes: Sequence[str] | None = None,
    draw: str | Path | None = None,
    run: RunOptions = RunOptions(),
) -> RunSummary:
    """`write_boxes` as JSON Lines, and the page of the run at ``report`` (written
    atomically by rank 0; the caller has checked it is none of the inputs). Needs matplotlib:
    said before any work."""
    plots.require_matplotlib()
    check_output_file(report, "`report`")
    options = ReportOptions()
    weights = None
    if isinstance(model, ModelOptions):
        weights = model.checkpoint or model.weights
        model = load_model(model, device=str(process_device(run.device)))
    collector = BboxCollector(options.bbox_cap)
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    start = time.perf_counter()
    with open_output(output) as handle:
        summary = write_boxes(model, images, output=cast(IO[str], _Tee(handle, collector)), cam=cam,
                              classes=classes, draw=draw, run=run)  # fmt: skip
    seconds = time.perf_counter() - start
    if not is_main_process():
        return summary
    chosen = collector.gallery()
    cams = _top1_cams(model, chosen, run) if chosen else {}
    shown = [replace(image, cam=cams.get(image.path)) for image, _ in chosen]
    info = RunInfo(command=command_line(), version=__version__, started=started,
                   seconds=seconds, network=model.arch, device=str(process_device(run.device)),
                   weights=None if weights is None else printable_path(str(weights)),
                   data={"images": ", ".join(printable_path(str(i)) for i in images[:5])},
                   settings={"topk": str(cam.topk), "box_rule": cam.box_rule})  # fmt: skip
    data = BboxReportInput(info, shown, dict(collector.counts), collector.total, collector.failed)
    write_bbox_report(data, report, options)
    return summary
