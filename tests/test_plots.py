"""Report plots (`report.plots`): small inline SVG, text kept as text, ids that never clash
between plots, and one clear line when matplotlib is missing."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from cam_cli.errors import SetupError
from cam_cli.report import plots


def _maxboxacc() -> str:
    pytest.importorskip("matplotlib", reason="the report extra (pip install 'cam-cli[report]')")
    thresholds = np.arange(0, 1, 0.01)
    accuracy = np.stack([100 - 60 * thresholds**p for p in (1, 2, 3)], axis=1)
    return plots.maxboxacc_plot(thresholds, accuracy, [0.3, 0.5, 0.7],
                                [(0.0, 100.0)] * 3, ["a", "b", "c"])  # fmt: skip


def test_svg_for_a_page() -> None:
    svg = _maxboxacc()
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert "<metadata>" not in svg
    assert "<?xml" not in svg
    assert "DOCTYPE" not in svg
    assert "<text" in svg
    assert "CAM threshold" in svg
    assert 'aria-label="box accuracy against CAM threshold"' in svg
    assert len(svg) < 60_000


def test_ids_differ_between_plots() -> None:
    pytest.importorskip("matplotlib", reason="the report extra (pip install 'cam-cli[report]')")
    ids = [set(re.findall(r'id="([^"]+)"', svg)) for svg in (
        _maxboxacc(),
        plots.iou_histogram({"a": np.array([0.1, 0.6])}, 0.5),
        plots.precision_recall_plot(np.array([1.0, 0.5]), np.array([0.0, 1.0]), "PxAP"),
    )]  # fmt: skip
    assert not (ids[0] & ids[1])
    assert not (ids[0] & ids[2])
    assert not (ids[1] & ids[2])
    svg = _maxboxacc()  # and every reference still finds its target
    references = set(re.findall(r'(?:url\(#|href="#)([^")]+)', svg))
    assert references
    assert references <= set(re.findall(r'id="([^"]+)"', svg))


def test_without_matplotlib_one_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SetupError, match=r"pip install 'cam-cli\[report\]'"):
        plots.require_matplotlib()
