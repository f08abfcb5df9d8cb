"""The evaluation library on hand-made records and ground truth whose figures are worked out
by hand below (inclusive-pixel IoU, 100x100 images), plus its mismatch errors and resume file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import invoke, one_line_error, write_xml

from cam_cli.cli.options import as_flags
from cam_cli.data.annotations import ImageAnnotation, read_annotations
from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import GroundTruth
from cam_cli.data.matching import Missing, check_class_order, check_missing
from cam_cli.errors import EvaluationError
from cam_cli.eval_options import EvalOptions, MetricOptions, OutputOptions, SourceOptions
from cam_cli.evaluation.evaluate import evaluate
from cam_cli.evaluation.report import Report
from cam_cli.evaluation.resume import (
    check_per_image_file,
    read_per_image,
    settings_fingerprint,
)
from cam_cli.evaluation.sources.records import read_prediction_records
from cam_cli.evaluation.table import format_report

SNAKE, TENCH, FOX = "n01751748", "n01440764", "n02119789"
CLASSES = [ClassInfo(0, TENCH, "tench"), ClassInfo(1, SNAKE, "sea snake"), ClassInfo(2, FOX, "fox")]
INDEX = {c.wnid: c.index for c in CLASSES}

# Ground truth of four 100x100 images: (label, box) per image.
TRUTH = {
    "img1": (SNAKE, (0, 0, 99, 49)),  # top half: 100 x 50 = 5000 pixels
    "img2": (SNAKE, (0, 0, 99, 99)),  # whole image: 10000 pixels
    "img3": (FOX, (10, 10, 59, 59)),  # 50 x 50 = 2500 pixels
    "img4": (TENCH, (0, 0, 99, 99)),
}


def pred(rank: int, wnid: str, box) -> dict:
    return {"rank": rank, "class_index": INDEX[wnid], "wnid": wnid, "name": None,
            "score": 0.5, "box": list(box)}  # fmt: skip


def rec(stem: str, *predictions: dict) -> dict:
    return {"path": f"val/{stem}.JPEG", "width": 100, "height": 100,
            "predictions": list(predictions)}  # fmt: skip


RECORDS = [
    # img1: right class, box = the gt box (IoU 1): correct at top-1 and top-5.
    rec("img1", pred(1, SNAKE, (0, 0, 99, 49)), pred(2, FOX, (0, 0, 9, 9))),
    # img2: top-1 class wrong; rank 2 right class but box 100 x 49 = 4900 px: IoU 0.49, a miss.
    rec("img2", pred(1, TENCH, (0, 0, 99, 99)), pred(2, SNAKE, (0, 0, 99, 48))),
    # img3: top-1 class wrong; rank 2 right class and right box: correct at top-5 only.
    rec("img3", pred(1, SNAKE, (0, 0, 99, 99)), pred(2, FOX, (10, 10, 59, 59))),
    # img4: the image could not be read: wrong everywhere.
    {"path": "val/img4.JPEG", "error": "truncated or corrupt image"},
]


def write_csv(path: Path, truth: dict) -> None:
    rows = [f"{stem},{label} {' '.join(map(str, box))}" for stem, (label, box) in truth.items()]
    path.write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")


@pytest.fixture
def xml_dir(tmp_path) -> Path:
    for stem, (label, box) in TRUTH.items():
        write_xml(tmp_path / "xml" / f"{stem}.xml", 100, 100, [(label, box)])
    return tmp_path / "xml"


@pytest.fixture
def csv_file(tmp_path) -> Path:
    write_csv(tmp_path / "LOC_val_solution.csv", TRUTH)
    return tmp_path / "LOC_val_solution.csv"


def scored(records, truth, *, classes=None, per_image=None, **metrics) -> Report:
    """The report of ``records`` against in-memory annotations (`evaluate`, no model)."""
    options = EvalOptions(
        truth=GroundTruth(truth, classes=classes),
        source=SourceOptions(predictions=records),
        metrics=MetricOptions(**metrics),
        outputs=OutputOptions(per_image=per_image),
    )
    return evaluate(options)


def evaluate_predictions(records, truth, **options) -> dict:
    """`scored`, as the JSON report."""
    return scored(records, truth, **options).to_json()


def figures(report: dict) -> dict:
    """The report without what describes the run rather than the figures."""
    return {k: v for k, v in report.items() if k not in ("settings", "resumed_images")}


# --- figures by hand --------------------------------------------------------------------------


def test_hand_made_figures_from_xml_and_csv_agree(xml_dir, csv_file):
    from_xml = evaluate_predictions(RECORDS, read_annotations(xml_dir))
    from_csv = evaluate_predictions(RECORDS, read_annotations(csv_file))
    assert figures(from_xml) == figures(from_csv)
    report = from_xml
    assert (report["images"], report["failed_images"]) == (4, 1)
    assert report["failed"] == [{"path": "val/img4.JPEG", "error": "truncated or corrupt image"}]
    # top-1 class right: img1 only -> 3 of 4 wrong. top-5: img1, img2, img3 -> 1 of 4 wrong.
    assert report["top1_cls_error"] == 75.0
    assert report["top5_cls_error"] == 25.0
    # top-1 loc right: img1 -> 75%. top-5: img1, img3 -> 50%.
    assert report["top1_loc_error"] == 75.0
    assert report["top5_loc_error"] == 50.0
    # Whole-image box [0 0 99 99]: IoU 0.5 with img1's box (hit; top-1 class right), 1 with
    # img2's (class right only at rank 2: a top-5 hit), 0.25 with img3's (miss).
    whole = report["baselines"]["whole_image"]
    assert (whole["top1_loc_error"], whole["top5_loc_error"]) == (75.0, 50.0)
    # Median relative size over the three readable images: widths 1, 1, 0.5 -> 1; heights 0.5,
    # 1, 0.5 -> 0.5 (the failed image is left out, with XML sizes as without CSV ones).
    # Centred box [0 25 99 74]: img1 IoU 2500/7500 (miss), img2 5000/10000 (hit at top-5
    # only), img3 1750/5750 (miss).
    median = report["baselines"]["centered_median_box"]
    assert median["relative_size"] == [1.0, 0.5]
    assert (median["top1_loc_error"], median["top5_loc_error"]) == (100.0, 75.0)
    assert report["gt_known_loc_error"] is None
    assert report["gt_known_available"] is False
    assert report["missing"]["left_out"] == 0
    assert report["maxboxacc_v2"] is None


def test_table_format(xml_dir):
    report = scored(RECORDS, read_annotations(xml_dir))
    report = replace(report, settings={**report.settings, "predictions": "boxes.jsonl"})
    from cam_cli.cli.options import as_flags

    # the library names `topk`; the command line prints the table through `as_flags`
    assert as_flags(format_report(report)) == "\n".join(
        [
            "predictions: boxes.jsonl",
            "4 images, 1 failed; box correct at IoU >= 0.5; errors in %, lower is better",
            "                                       top-1    top-5",
            "classification error                   75.00    25.00",
            "localization error                     75.00    50.00",
            "  baseline: whole-image box            75.00    50.00",
            "  baseline: centred median-size box   100.00    75.00",
            "GT-known localization error          n/a (needs a model)",
            "(median-size box: 100.0% x 50.0% of the image)",
            "note: some images have only 2 prediction(s); top-5 figures need "
            "`cam-cli bbox --topk 5`",
            "1 images failed (counted as wrong):",
            "  val/img4.JPEG: truncated or corrupt image",
        ]
    )


def test_per_image_lines(xml_dir, tmp_path):
    out = tmp_path / "per_image.jsonl"
    evaluate_predictions(RECORDS, read_annotations(xml_dir), per_image=out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["image_id"] for line in lines] == ["img1", "img2", "img3", "img4"]
    img2 = lines[1]
    assert img2["gt_boxes"] == [{"label": SNAKE, "box": [0, 0, 99, 99]}]
    assert [p["iou"] for p in img2["predictions"]] == [1.0, 0.49]
    assert [p["class_correct"] for p in img2["predictions"]] == [False, True]
    assert img2["top5_cls_correct"]
    assert not img2["top5_loc_correct"]
    assert lines[3]["error"] == "truncated or corrupt image"


# --- mismatches -------------------------------------------------------------------------------


def test_record_without_annotation_stops_unless_allowed(xml_dir):
    truth = read_annotations(xml_dir)
    records = [*RECORDS, rec("stray", pred(1, SNAKE, (0, 0, 9, 9)))]
    with pytest.raises(EvaluationError, match=r"1 prediction records have no annotation.*stray"):
        evaluate_predictions(records, truth)
    result = scored(records, truth, allow_missing=True)
    report = result.to_json()
    assert report["images"] == 4
    assert report["missing"]["images_without_annotation"] == 1
    assert report["missing"]["images_without_annotation_list"] == ["val/stray.JPEG"]
    assert "left out (--allow-missing): 1 prediction records without annotation" in (
        as_flags(format_report(result))
    )


def test_annotation_without_record_is_counted_never_dropped(xml_dir):
    truth = read_annotations(xml_dir)
    with pytest.raises(EvaluationError, match=r"1 annotations have no prediction record.*img3"):
        evaluate_predictions(RECORDS[:2] + RECORDS[3:], truth)
    report = evaluate_predictions(RECORDS[:2] + RECORDS[3:], truth, allow_missing=True)
    assert report["images"] == 3
    assert report["missing"]["annotations_without_image"] == 1
    # img1 alone is top-1 right among img1, img2, img4.
    assert report["top1_cls_error"] == pytest.approx(200 / 3)


def test_missing_message_lists_first_few_and_counts():
    missing = Missing([f"a{i}.JPEG" for i in range(8)], ["b1"])
    with pytest.raises(EvaluationError) as error:
        check_missing(missing, allow_missing=False)
    text = str(error.value)
    assert "8 images have no annotation" in text
    assert "a4.JPEG, ... (3 more)" in text
    assert "1 annotations have no image (e.g. b1)" in text
    assert "`allow_missing`" in text
    check_missing(missing, allow_missing=True)  # no error


def test_duplicate_records_stop(xml_dir):
    with pytest.raises(EvaluationError, match="two prediction records for image img1"):
        evaluate_predictions([RECORDS[0], RECORDS[0]], read_annotations(xml_dir))


def test_predictions_without_wnids_against_wnid_labels_stop(xml_dir):
    anonymous = {**RECORDS[0], "predictions": [{**RECORDS[0]["predictions"][0], "wnid": None}]}
    with pytest.raises(EvaluationError, match="carry no wnids.*`classes_file`"):
        evaluate_predictions([anonymous, *RECORDS[1:]], read_annotations(xml_dir))


def test_unknown_wnid_stops(xml_dir):
    truth = dict(read_annotations(xml_dir))
    truth["img4"] = ImageAnnotation("img4", ("n99999999",), (("n99999999", (0, 0, 9, 9)),))
    with pytest.raises(EvaluationError, match=r"not classes of the model.*n99999999"):
        evaluate_predictions(RECORDS, truth, classes=CLASSES)


def test_predictions_made_with_another_class_order_stop(xml_dir):
    shuffled = [ClassInfo(0, SNAKE, "sea snake"), ClassInfo(1, TENCH, "tench"), CLASSES[2]]
    with pytest.raises(EvaluationError, match="another class order"):
        evaluate_predictions(RECORDS, read_annotations(xml_dir), classes=shuffled)
    report = evaluate_predictions(RECORDS, read_annotations(xml_dir), classes=CLASSES)
    assert report["images"] == 4


def test_class_order_against_index_labels():
    cub = [ClassInfo(0, None, "Black_footed_Albatross"), ClassInfo(1, None, "Laysan_Albatross")]
    anonymous = [ClassInfo(0, None, None), ClassInfo(1, None, None)]
    assert check_class_order(anonymous, cub, "classes.txt") == cub  # plain weights take CUB's
    named = [
        ClassInfo(0, None, "001.Black_footed_Albatross"),
        ClassInfo(1, None, "laysan albatross"),
    ]
    assert check_class_order(named, cub, "classes.txt") == named
    with pytest.raises(EvaluationError, match="class order differs"):
        check_class_order(named[::-1], cub, "classes.txt")
    with pytest.raises(EvaluationError, match="has 1 classes but"):
        check_class_order(named[:1], cub, "classes.txt")


def test_bad_prediction_lines(tmp_path):
    path = tmp_path / "boxes.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\npath,width\n")
    with pytest.raises(EvaluationError, match=r"boxes.jsonl:2: not JSON.*not `format` csv"):
        list(read_prediction_records(path))
    path.write_text('{"width": 3}\n')
    with pytest.raises(EvaluationError, match="no 'path'"):
        list(read_prediction_records(path))


# --- the resume file --------------------------------------------------------------------------


def test_per_image_reader_drops_a_torn_last_line_and_checks_settings(tmp_path):
    run = settings_fingerprint({"model": "d1", "threshold": 0.2})
    assert run == settings_fingerprint({"threshold": 0.2, "model": "d1"})  # order is no part
    assert run != settings_fingerprint({"model": "d1", "threshold": 0.3})
    assert run != settings_fingerprint({"model": "d2", "threshold": 0.2})
    path = tmp_path / "per_image.jsonl"
    good = [
        json.dumps({"path": f"{n}.jpg", "image_id": f"i{n}", "run": run}) + "\n" for n in range(3)
    ]
    path.write_text("".join(good) + good[0][:9])
    assert [line["image_id"] for line in read_per_image(path, run)] == ["i0", "i1", "i2"]
    assert path.read_text() == "".join(good)  # cut back to the last complete line
    with pytest.raises(EvaluationError, match="other settings"):
        list(read_per_image(path, "another"))
    path.write_text(good[0] + "garbage\n" + good[1])
    with pytest.raises(EvaluationError, match=":2: not a per-image line"):
        list(read_per_image(path, run))
    assert list(read_per_image(tmp_path / "absent.jsonl", run)) == []


@pytest.mark.parametrize(
    ("content", "ours"),
    [
        (b"", True),  # empty: nothing to lose
        (b'{"path": "a.jpg", "image_id": "a", "run": "x"}\n', True),
        (b'{"path": "a.jpg", "image_id": "a", "ru', True),  # torn inside the first line
        (b'{"path": "a.jpg", "image_id": "a"}\n', True),  # a --predictions run's line
        (b"my notes, no newline", False),
        (b'{"image_id": "a", "run": "x"}', False),  # a one-line JSON file, not from us
        (b'{"path": "a.jpg"}\n', False),  # complete, but no image_id
        (b'{"path": "a.jpg"}', False),  # a minified JSON file that begins as ours do
        (b'{"path": "a.jpg", "image_id": "a"}', True),  # ours, only its newline lost
        (b'{"path": broken\n', False),
        (b"\n", False),
    ],
)
def test_per_image_files_that_are_not_ours_are_refused_untouched(tmp_path, content, ours):
    path = tmp_path / "per_image.jsonl"
    path.write_bytes(content)
    if ours:
        check_per_image_file(path)
    else:
        with pytest.raises(EvaluationError, match="not a cam-cli per-image file"):
            check_per_image_file(path)
        with pytest.raises(EvaluationError, match="not a cam-cli per-image file"):
            list(read_per_image(path, "x"))
    assert path.read_bytes() == content
    with pytest.raises(EvaluationError, match="not a regular file"):
        check_per_image_file(tmp_path)


# --- moved from test_hardening.py (issue 13: what a careless user or an attacker tries) ---


@pytest.mark.parametrize(
    ("record", "words"),
    [({"path": "a.jpg", "width": 48, "height": 40, "predictions": "x"}, "not a list"),
     ({"path": "a.jpg", "width": 48, "height": 40, "predictions": [1]}, "not an object"),
     ({"path": "a.jpg", "width": 48, "height": 40,
       "predictions": [{"class_index": "0", "box": [1, 2, 3, 4]}]}, "class_index"),
     ({"path": "a.jpg", "width": 48, "height": 40,
       "predictions": [{"class_index": 0, "box": [1, 2]}]}, "'box' of 4 integers")],
)  # fmt: skip
def test_malformed_prediction_records(fake, record, words):
    result = invoke("eval", "--predictions", "-", "--annotations", fake / "xml",
                    "--allow-missing", input=json.dumps(record) + "\n")  # fmt: skip
    one_line_error(result, "<stdin>:1", words)
