"""The `bbox --report` page (`report.bbox_page`): a capped gallery, highest score first, each
picture with its ranked boxes, and the class histogram of every image."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import write_image
from report_fixtures import read_dom, run_info

from cam_cli.report.bbox_page import bbox_report_html, bbox_selection, write_bbox_report
from cam_cli.report.inputs import BboxImage, BboxReportInput, Predicted, ReportOptions

pytest.importorskip("matplotlib", reason="the report extra (pip install 'cam-cli[report]')")


def _images(root, count: int) -> list[BboxImage]:
    images = []
    for i in range(count):
        path = root / f"img{i}.jpg"
        write_image(path, seed=i, size=(40, 64))
        top = [Predicted(f"n{i % 3}", f"class {i % 3}", 0.1 + 0.8 * i / count, (1, 2, 30, 50), 1),
               Predicted("n9", None, 0.001, (0, 0, 39, 63), 2)]  # fmt: skip
        images.append(BboxImage(str(path), 40, 64, tuple(top), cam=np.eye(7)))
    return images


def test_gallery_is_capped_and_highest_score_first(tmp_path) -> None:
    images = _images(tmp_path, 5) + [BboxImage(str(tmp_path / "bad.jpg"), None, None, (), "broken")]
    chosen = bbox_selection(images, ReportOptions(bbox_cap=3))
    assert [image.path[-8:] for image in chosen] == ["img4.jpg", "img3.jpg", "img2.jpg"]
    counts = Counter((i.predictions[0].label, i.predictions[0].name) for i in images[:5])
    data = BboxReportInput(run_info("cam-cli bbox ..."), images, counts, 6, [("bad.jpg", "broken")])
    text = bbox_report_html(data, ReportOptions(bbox_cap=3))
    dom = read_dom(text)
    assert len(dom.sources) == 3
    assert all(s.startswith("data:image/jpeg") for s in dom.sources)
    assert "3 of 5 images shown (at most 3)" in text
    assert "1 images failed" in text
    assert "broken" in text
    assert "rank 2 box" in text
    assert "&lt;0.01" in text
    assert text.index("img4.jpg") < text.index("img3.jpg")


def test_class_histogram_counts_every_image(tmp_path) -> None:
    images = _images(tmp_path, 6)
    counts = Counter((i.predictions[0].label, i.predictions[0].name) for i in images)
    text = bbox_report_html(BboxReportInput(run_info(), images, counts, 6))
    assert "the 3 most frequent of 3 classes drawn" in text
    assert text.count("<svg") == 1


def test_written_where_asked(tmp_path) -> None:
    images = _images(tmp_path, 1)
    target = tmp_path / "boxes.html"
    data = BboxReportInput(run_info(), images, Counter(), 1)
    assert write_bbox_report(data, target) == [target]
    assert target.stat().st_size > 1000
