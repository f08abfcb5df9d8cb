"""A `--cam-threshold-from` report (`evaluation.maxboxacc.carried_thresholds`) is read in the
run's setup and checked as strictly as any input: every way it can be wrong is one line naming
the file, exit 2, before any image; a FIFO is refused at once."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from conftest import fifo, invoke, model_args, one_line_error, takes_under

from cam_cli.errors import EvaluationError
from cam_cli.evaluation.maxboxacc.carried_thresholds import carried_thresholds
from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2

GRID = MaxBoxAccV2(protocol="wsol")


def report(**maxbox) -> dict:
    good = {"images": 7, "iou_thresholds": [0.3, 0.5, 0.7], "best_threshold": [0.35, 0.5, 0.2],
            "protocol": "wsol"}  # fmt: skip
    return {"maxboxacc_v2": {**good, **maxbox}}


def carry(path):
    return carried_thresholds(path, "wsol", GRID.iou_thresholds, GRID.thresholds)


def test_a_good_report_gives_its_thresholds(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report()))
    carried = carry(path)
    assert carried["thresholds"] == [0.35, 0.5, 0.2]
    assert carried["images"] == 7
    assert carried["source"] == f"{path.resolve()} (best on its 7 images)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (json.dumps(report(best_threshold=[0.555, 0.5, 0.2])), "0.555 is not on this run's"),
        (json.dumps(report()).replace("0.35", "NaN"), "not JSON (NaN is not JSON)"),
        (json.dumps(report(best_threshold=[1e308, 0.5, 0.2])), "1e+308 is not a CAM threshold"),
        (json.dumps(report(best_threshold=["0.35", 0.5, 0.2])), "'0.35' is not a CAM threshold"),
        (json.dumps(report(best_threshold=[None, 0.5, 0.2])), "None is not a CAM threshold"),
        (json.dumps(report(best_threshold=[True, 0.5, 0.2])), "True is not a CAM threshold"),
        (json.dumps(report(iou_thresholds=["0.3", "0.5", "0.7"])), "'iou_thresholds' are not"),
        (json.dumps(report(images="7")), "'images' is not a positive integer"),
        (json.dumps(report(images=[7])), "'images' is not a positive integer"),
        (json.dumps(report(protocol=["wsol"])), "protocol (not a name)"),
        ("[" * 200_000 + "]" * 200_000, "JSON nested deeper than 100 levels"),
        (json.dumps([report()]), "no MaxBoxAccV2 in this report"),
    ],
)
def test_every_bad_report_is_one_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(EvaluationError) as refused:
        carry(path)
    assert str(refused.value).startswith(str(path))
    assert message in str(refused.value)


def test_a_fifo_report_is_refused_at_once(tmp_path):
    with fifo(tmp_path / "r.json") as path:
        started = time.monotonic()
        with pytest.raises(EvaluationError, match=r"r.json: not a regular file \(a FIFO\)$"):
            carry(path)
        takes_under(5, started)


def test_the_cli_refuses_a_fifo_report_at_once(tmp_path):
    maps = tmp_path / "maps" / "val"
    maps.mkdir(parents=True)
    np.save(maps / "a.JPEG.npy", np.zeros((224, 224)))
    xml = tmp_path / "xml"
    xml.mkdir()
    (xml / "a.xml").write_text(
        "<annotation><size><width>9</width><height>9</height></size><object><name>n01440764"
        "</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
        "</object></annotation>"
    )
    with fifo(tmp_path / "r.json") as path:
        started = time.monotonic()
        result = invoke("eval", "--scoremaps", tmp_path / "maps", "--annotations", xml,
                        "--cam-threshold-from", path)  # fmt: skip
        takes_under(10, started)
    one_line_error(result, "r.json: not a regular file (a FIFO)")


def test_a_model_run_checks_the_report_before_any_image(fake, tmp_path):
    """Issue 25 (6): an off-grid threshold crashed after every image had run, no report."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report(best_threshold=[0.555, 0.5, 0.2])))
    per_image = tmp_path / "p.jsonl"
    result = invoke("eval", *model_args(fake), "--images", fake / "imgs", "--annotations",
                    fake / "xml", "--maxboxacc", "--cam-threshold-from", path,
                    "--per-image", per_image)  # fmt: skip
    one_line_error(result, f"{path}: its best_threshold 0.555 is not on this run's CAM")
    assert not per_image.exists()  # no image was run
