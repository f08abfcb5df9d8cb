"""A training run's ``report.html``, rewritten after each epoch: the loss, accuracy and learning
rate curves of ``metrics.jsonl``, the epochs as a table, and the CAMs of a fixed handful of val
images after each epoch (rows: images, columns: epochs), so the maps can be seen forming."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cam_cli.files.atomic import write_text_atomic
from cam_cli.report import plots
from cam_cli.report.html import Column, box_legend, data_table, esc, page, run_section
from cam_cli.report.inputs import CamGrid, ReportOptions, TrainingReportInput
from cam_cli.report.pictures import Picture, PictureRequest, render_pictures

REPORT_FILE = "report.html"
GRID_PICTURE_SIDE = 160  # grid pictures are small: many of them, shown 112 px wide


def report_outputs(run_dir: str | Path) -> list[Path]:
    """Every file the training report of ``run_dir`` writes."""
    return [Path(run_dir) / REPORT_FILE]


def grid_columns(epochs: Sequence[int], most: int) -> list[int]:
    """Which of the epochs the grid shows: all when they fit, else the first, the last and
    evenly spaced ones between, ``most`` in all (positions into ``epochs``)."""
    if len(epochs) <= most:
        return list(range(len(epochs)))
    picked = np.unique(np.rint(np.linspace(0, len(epochs) - 1, most)).astype(int))
    return [int(i) for i in picked]


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}"


def _epochs_table(metrics: Sequence[Mapping[str, Any]]) -> str:
    """The epochs, formatted as the trainer's log line formats them."""
    rows = [
        [
            (str(row["epoch"]), int(row["epoch"])),
            (f"{row['train_loss']:.4f}", row["train_loss"]),
            (_percent(row.get("train_acc")), row.get("train_acc")),
            (_percent(row.get("val_acc")), row.get("val_acc")),
            (f"{row['lr']:.3g}", row["lr"]),
            (str(row.get("images", "-")), row.get("images")),
            (f"{row.get('seconds', 0):.1f}", row.get("seconds")),
        ]
        for row in reversed(metrics)
    ]
    titles = ("epoch", "train loss", "train acc (%)", "val acc (%)", "lr", "images", "seconds")
    columns = [Column(title) for title in titles]
    return data_table(columns, rows)


def _grid(grid: CamGrid, options: ReportOptions) -> str:
    columns = grid_columns(grid.epochs, options.grid_epochs)
    small = replace(
        options, picture_side=GRID_PICTURE_SIDE, min_picture_side=GRID_PICTURE_SIDE // 2
    )
    requests = [
        PictureRequest(image.path, None, grid.cams[e][i], ())
        for i, image in enumerate(grid.images)
        for e in columns
    ]
    pictures = iter(render_pictures(requests, small))
    head = "".join(f"<th>epoch {grid.epochs[e]}</th>" for e in columns)
    body = []
    for image in grid.images:
        cells = []
        for _ in columns:
            picture = next(pictures)
            if isinstance(picture, Picture):
                crisp = ' class="crisp"' if picture.upscaled else ""
                cells.append(
                    f'<td><img src="{picture.data_uri}" width="{picture.width}" '
                    f'height="{picture.height}"{crisp} alt="{esc(image.label)}"></td>'
                )
            else:
                cells.append(f'<td class="missing">{esc(picture)}</td>')
        label = f'{esc(image.label)}<br><span class="note">{esc(Path(image.path).name)}</span>'
        body.append(f'<tr><th class="t">{label}</th>{"".join(cells)}</tr>')
    shown = (
        f"all {len(columns)} epochs"
        if len(columns) == len(grid.epochs)
        else f"{len(columns)} of {len(grid.epochs)} epochs (first, last and evenly between)"
    )
    return (
        box_legend([])
        + f'<p class="note">Each image\'s CAM of its own class after each epoch; {shown}.</p>'
        + f'<div class="scroll wide"><table class="grid"><thead><tr><th></th>{head}</tr></thead>'
        + f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def training_report_html(data: TrainingReportInput, options: ReportOptions | None = None) -> str:
    """The whole page, as text."""
    options = options or ReportOptions()
    plots.require_matplotlib()
    metrics = sorted(data.metrics, key=lambda row: int(row["epoch"]))
    curves = ""
    if metrics:
        curves = (
            '<div class="plots">'
            + "".join(f"<div>{svg}</div>" for svg in plots.training_plots(metrics))
            + "</div>"
            + _epochs_table(metrics)
        )
    sections = [
        ("run", "What was run", run_section(data.run)),
        ("curves", "Curves", curves or '<p class="note">No epoch has finished yet.</p>'),
    ]
    if data.cam_grid is not None and data.cam_grid.epochs and data.cam_grid.images:
        sections.append(("cams", "CAMs per epoch", _grid(data.cam_grid, options)))
    done = metrics[-1]["epoch"] if metrics else 0
    planned = f" of {data.epochs_planned}" if data.epochs_planned else ""
    subtitle = f"epoch {done}{planned} · started {data.run.started} · cam-cli {data.run.version}"
    return page("cam-cli training report", subtitle, sections)


def write_training_report(
    data: TrainingReportInput, run_dir: str | Path, options: ReportOptions | None = None
) -> list[Path]:
    """Write ``run_dir/report.html`` atomically (a reader sees the previous epoch's page or
    this one, never half); returns the files written."""
    path = report_outputs(run_dir)[0]
    write_text_atomic(training_report_html(data, options), path)
    return [path]
