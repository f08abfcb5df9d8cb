"""A training run's report (`report.training_page`): the curves of metrics.jsonl's lines and
the grid of CAMs (rows: images, columns: epochs, at most ``grid_epochs`` of them)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_image
from report_fixtures import read_dom, run_info

from cam_cli.report.inputs import CamGrid, GridImage, ReportOptions, TrainingReportInput
from cam_cli.report.training_page import grid_columns, training_report_html, write_training_report

pytest.importorskip("matplotlib", reason="the report extra (pip install 'cam-cli[report]')")


def _metrics(epochs: int) -> list[dict]:
    return [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.05 * e, "val_acc": 0.04 * e,
             "lr": 0.1 * 0.9**e, "images": 100, "seconds": 3.25}
            for e in range(1, epochs + 1)]  # fmt: skip


def test_grid_columns_keep_first_last_and_between() -> None:
    assert grid_columns(list(range(1, 6)), 10) == [0, 1, 2, 3, 4]
    assert grid_columns(list(range(1, 31)), 4) == [0, 10, 19, 29]
    assert grid_columns(list(range(1, 3)), 2) == [0, 1]


def test_curves_table_and_grid(tmp_path) -> None:
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"val_{i}.jpg")
        write_image(paths[-1], seed=i, size=(64, 64))
    epochs = list(range(1, 13))
    cams = [[np.full((7, 7), float(e)) for _ in paths] for e in epochs]
    grid = CamGrid([GridImage(str(p), f"class {i}") for i, p in enumerate(paths)], epochs, cams)
    data = TrainingReportInput(run_info("cam-cli train ..."), _metrics(12), grid, epochs_planned=30)
    text = training_report_html(data, ReportOptions(grid_epochs=4))
    assert text.count("<svg") == 3  # loss, accuracy, learning rate
    assert "epoch 12 of 30" in text
    assert "4 of 12 epochs (first, last and evenly between)" in text
    assert [f"epoch {e}</th>" in text for e in (1, 5, 8, 12)] == [True] * 4
    assert len(read_dom(text).sources) == 2 * 4
    assert "1.0000" in text
    assert "60.00" in text
    assert "48.00" in text


def test_before_the_first_epoch(tmp_path) -> None:
    written = write_training_report(TrainingReportInput(run_info(), []), tmp_path)
    assert written == [tmp_path / "report.html"]
    assert "No epoch has finished yet" in written[0].read_text()
