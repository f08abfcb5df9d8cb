"""`bbox --report`: the records as without it, byte for byte, and a page of that run: the
class counts of its records, the highest-scoring images with their top-1 CAM."""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import pytest
from conftest import invoke

from cam_cli.report.bbox_run import BboxCollector, write_boxes_with_report
from cam_cli.settings import ModelOptions, RunOptions

pytest.importorskip("matplotlib", reason="the report extra (pip install 'cam-cli[report]')")


def _images(sample_dir, count):
    return [str(p) for p in sorted((sample_dir / "val").iterdir())[:count]]


def _model(sample_dir, weights) -> ModelOptions:
    return ModelOptions(arch="mobilenet_v2", weights=str(weights),
                        classes_file=sample_dir / "LOC_synset_mapping.txt")  # fmt: skip


def test_the_collector_keeps_the_best_and_counts_all() -> None:
    collector = BboxCollector(cap=2)
    scores = [0.5, 0.9, 0.1, 0.9, 0.7]
    for n, score in enumerate(scores):
        prediction = {"rank": 1, "class_index": n % 2, "wnid": f"n0{n % 2}", "name": None,
                      "score": score, "box": [0, 0, 3, 3]}  # fmt: skip
        collector.add({"path": f"{n}.jpg", "width": 4, "height": 4, "predictions": [prediction]})
    collector.add({"path": "bad.jpg", "error": "cannot read"})
    assert [image.path for image, _ in collector.gallery()] == ["1.jpg", "3.jpg"]  # ties: path
    assert collector.counts == Counter({("n00", None): 3, ("n01", None): 2})
    assert (collector.total, collector.failed) == (6, [("bad.jpg", "cannot read")])


def test_the_records_do_not_change_and_the_page_shows_them(
    tmp_path, sample_dir, mobilenet_weights
) -> None:
    images = _images(sample_dir, 6)
    common = ["bbox", "--arch", "mobilenet_v2", "--weights", mobilenet_weights, "--classes",
              sample_dir / "LOC_synset_mapping.txt", "--workers", "0", "--quiet",
              *images]  # fmt: skip
    plain = invoke(*common)
    page = tmp_path / "b.html"
    with_page = invoke(*common, "--report", page)
    assert plain.exit_code == with_page.exit_code == 0, with_page.output
    assert plain.stdout == with_page.stdout  # stdout's records, byte for byte
    text = page.read_text()
    records = [json.loads(line) for line in plain.stdout.splitlines()]
    top1 = Counter(r["predictions"][0]["name"] for r in records)
    assert text.count('<figure class="pic"') == 6
    for name in top1:
        assert name in text
    assert "6 of 6 images shown (at most 120)" in text


def test_gallery_cams_are_the_top1_class_maps(tmp_path, sample_dir, mobilenet_weights) -> None:
    """The library call: records to a file, the page beside; the maps are the network's."""
    from cam_cli.report import bbox_run

    kept = {}
    real = bbox_run.BboxReportInput

    def spy(*args, **kwargs):
        kept["data"] = real(*args, **kwargs)
        return kept["data"]

    bbox_run.BboxReportInput = spy
    try:
        write_boxes_with_report(_model(sample_dir, mobilenet_weights), _images(sample_dir, 3),
                                tmp_path / "b.html", output=tmp_path / "b.jsonl",
                                run=RunOptions(workers=0, fast=False))  # fmt: skip
    finally:
        bbox_run.BboxReportInput = real
    data = kept["data"]
    assert data.total == 3
    assert len(data.images) == 3
    for image in data.images:
        assert image.cam.shape == (7, 7)
        assert np.isfinite(image.cam).all()
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 3


def test_report_needs_json_lines_and_a_file_of_its_own(tmp_path, sample_dir) -> None:
    image = _images(sample_dir, 1)
    result = invoke("bbox", "--arch", "mobilenet_v2", "--format", "csv", "--report",
                    tmp_path / "r.html", *image)  # fmt: skip
    assert result.exit_code == 2
    assert "--format" in result.stderr
    result = invoke("bbox", "--arch", "mobilenet_v2", "--report", image[0], *image)
    assert result.exit_code == 2
    assert "--report" in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_without_matplotlib_one_line_before_any_work(tmp_path, sample_dir, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    out = tmp_path / "b.jsonl"
    result = invoke("bbox", "--arch", "mobilenet_v2", "-o", out, "--report", tmp_path / "r.html",
                    *_images(sample_dir, 1))  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "cam-cli: error: the HTML report draws its plots with matplotlib: "
        "pip install 'cam-cli[report]'"
    ]
    assert not out.exists()
    assert not (tmp_path / "r.html").exists()
