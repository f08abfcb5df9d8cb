"""`Report`: the typed report the table, the JSON and the figures read. Its JSON keeps the key
order earlier reports had (a report's bytes must not change with the code that made it), and
names that are not UTF-8, or NaN, are written as every output writes them."""

from __future__ import annotations

import json
import math
import os

from cam_cli.evaluation.report import Report, json_text, printable_report

MISSING = {
    "images_without_annotation": 0,
    "annotations_without_image": 0,
    "left_out": 0,
    "images_without_annotation_list": [],
    "annotations_without_image_list": [],
}
LOCALIZATION = {
    "images_without_boxes": 0,
    "images_gt_rescaled": 0,
    "iou_threshold": 0.5,
    "min_predictions": 5,
    "correct": {"top1_cls": 1, "top5_cls": 1, "top1_loc": 1, "top5_loc": 1},
    "top1_cls_error": 0.0,
    "top5_cls_error": 0.0,
    "top1_loc_error": 0.0,
    "top5_loc_error": 0.0,
    "gt_known_images": 1,
    "gt_known_correct": 1,
    "gt_known_loc_error": 0.0,
    "baselines": {},
}
MAXBOX = {
    "images": 1,
    "iou_thresholds": [0.5],
    "accuracy": [100.0],
    "best_threshold": [0.2],
    "maxboxacc_v2": 100.0,
    "protocol": "wsol",
    "threshold_source": "best on these images",
}
CARRIED = {**MAXBOX, "threshold": [0.3], "threshold_source": "r.json (best on its 9 images)"}
PXAP = {
    "pxap": 50.0,
    "images": 1,
    "threshold_interval": 0.01,
    "foreground_pixels": 3,
    "background_pixels": 4,
}


def test_json_order_of_a_run_with_boxes():
    """A model run or records: the ILSVRC figures after the head, then the sections; a
    MaxBoxAccV2 not asked for is null, PxAP comes last where there is one."""
    report = Report(1, 0, [], MISSING, {"mode": "model"}, LOCALIZATION, gt_known_available=True)
    keys = list(report.to_json())
    assert keys == [
        "images",
        "failed_images",
        "failed",
        *LOCALIZATION,
        "maxboxacc_v2",
        "gt_known_available",
        "missing",
        "resumed_images",
        "settings",
    ]
    assert report.to_json()["maxboxacc_v2"] is None
    full = Report(1, 0, [], MISSING, {}, LOCALIZATION, {"box2": {}}, MAXBOX, CARRIED, PXAP)
    assert list(full.to_json())[16:] == [
        "second_box",
        "maxboxacc_v2_carried",
        "maxboxacc_v2",
        "gt_known_available",
        "missing",
        "resumed_images",
        "settings",
        "pxap",
    ]


def test_json_order_of_score_maps():
    """Score maps: only the sections there are, the carried figure after the settings."""
    boxes = Report(
        1, 0, [], MISSING, {"mode": "scoremaps"}, maxboxacc_v2=MAXBOX, maxboxacc_v2_carried=CARRIED
    )
    assert list(boxes.to_json()) == [
        "images",
        "failed_images",
        "failed",
        "maxboxacc_v2",
        "missing",
        "settings",
        "maxboxacc_v2_carried",
    ]
    masks = Report(1, 0, [], MISSING, {"mode": "scoremaps"}, pxap=PXAP)
    assert list(masks.to_json()) == [
        "images",
        "failed_images",
        "failed",
        "pxap",
        "missing",
        "settings",
    ]


def test_names_and_nan_as_every_output_writes_them():
    bad = os.fsdecode(b"bad\xff.jpg")
    report = Report(
        1,
        1,
        [{"path": bad, "error": "truncated"}],
        MISSING,
        {"images": bad},
        pxap={**PXAP, "pxap": math.nan},
    )
    shown = printable_report(report)
    assert shown.failed == [{"path": "bad\\xff.jpg", "error": "truncated"}]
    assert shown.settings == {"images": "bad\\xff.jpg"}
    assert shown.pxap["pxap"] is None
    assert report.failed[0]["path"] == bad  # the report itself is left as it was
    text = json_text(report)
    assert text.endswith("}\n")
    assert json.loads(text)["failed"][0]["path"] == "bad\\xff.jpg"
