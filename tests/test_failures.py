"""Failure categories of a box (`report.failures`), on hand-made boxes whose areas are counted
here in inclusive pixels (a box (10, 10, 19, 19) is 10 x 10 = 100 pixels)."""

from __future__ import annotations

import numpy as np
import pytest

from cam_cli.boxes.geometry import pairwise_iou_inclusive
from cam_cli.report.failures import Category, Top1, categorize, categorize_one, top1_outcome
from cam_cli.report.inputs import ImageRow, Predicted

G = (10, 10, 19, 19)  # 100 pixels
LEFT, RIGHT = (0, 0, 9, 9), (20, 0, 29, 9)  # two 100-pixel boxes, 10 pixels apart
BIG = (0, 0, 99, 99)  # 10,000 pixels


@pytest.mark.parametrize(
    ("box", "gt", "expected"),
    [
        (G, [G], Category.correct),  # IoU 1
        ((10, 10, 19, 24), [G], Category.correct),  # 100 / 150 = 0.667
        ((10, 10, 19, 29), [G], Category.correct),  # 100 / 200 = 0.5 exactly: correct, as ILSVRC
        ((0, 0, 39, 39), [G], Category.too_large),  # G all inside; IoU 100/1600 < 0.1 too
        ((1, 0, 40, 40), [LEFT], Category.too_large),  # 90 of LEFT's 100 inside: 0.9 exactly
        ((2, 0, 40, 40), [LEFT], Category.off_target),  # 80 inside; IoU 80/1619 = 0.05
        ((12, 12, 15, 15), [G], Category.part),  # 16 pixels, all inside G; IoU 0.16
        ((10, 10, 11, 11), [G], Category.part),  # 4 pixels inside G; IoU 0.04, still part
        ((91, 0, 100, 9), [BIG], Category.part),  # 90 of its 100 inside: 0.9 exactly
        ((92, 0, 101, 9), [BIG], Category.off_target),  # 80 inside; IoU 80/10020
        ((0, 0, 29, 9), [LEFT, RIGHT], Category.merged),  # both whole inside; IoU 1/3 each
        ((5, 0, 24, 9), [LEFT, RIGHT], Category.merged),  # 50 of each: 0.5 exactly
        ((6, 0, 24, 9), [LEFT, RIGHT], Category.other),  # 40 of LEFT: one box only; IoU 0.21
        ((30, 30, 39, 39), [G], Category.off_target),  # no overlap
        ((18, 18, 27, 27), [G], Category.off_target),  # 4 / 196 = 0.02
        ((15, 10, 24, 19), [G], Category.other),  # 50 / 150 = 0.333
        ((0, 0, 29, 9), [LEFT, RIGHT, (0, 50, 9, 59)], Category.merged),  # third box missed
        # both whole inside, but the box is 10,000 pixels and their enclosing box 300 (IoU
        # 0.03): it is the box's size that is wrong, not that it joined them
        (BIG, [LEFT, RIGHT], Category.too_large),
        ((0, 0, 59, 9), [LEFT, RIGHT], Category.merged),  # 600 pixels vs 300: IoU 0.5 exactly
        ((0, 0, 60, 9), [LEFT, RIGHT], Category.too_large),  # 610 vs 300: IoU 0.49
    ],
)
def test_categories_by_hand(box, gt, expected) -> None:
    assert categorize_one(box, gt) == expected


def test_correct_beats_merged_and_too_large() -> None:
    # the box is LEFT itself (IoU 1 with LEFT) and also covers half of a box overlapping it
    assert categorize_one(LEFT, [LEFT, (5, 0, 14, 9)]) == Category.correct


def test_many_images_at_once_with_owners_in_any_order() -> None:
    boxes = np.array([G, (0, 0, 29, 9), (30, 30, 39, 39), (12, 12, 15, 15)])
    gt = np.array([RIGHT, G, G, LEFT, G])
    owner = np.array([1, 0, 2, 1, 3])
    assert categorize(boxes, gt, owner) == [
        Category.correct,
        Category.merged,
        Category.off_target,
        Category.part,
    ]
    one_by_one = [categorize_one(b, gt[owner == i]) for i, b in enumerate(boxes)]
    assert categorize(boxes, gt, owner) == one_by_one


def test_correct_is_the_evaluations_iou_rule() -> None:
    """`correct` is exactly ``max pairwise_iou_inclusive >= 0.5``, the GT-known verdict."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        corners = rng.integers(0, 40, (3, 2, 2))
        boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        box, gt = boxes[0], boxes[1:]
        correct = pairwise_iou_inclusive(box[None], gt).max() >= 0.5
        assert (categorize_one(box, gt) == Category.correct) == correct


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="owners"):
        categorize(np.array([G]), np.array([G]), np.array([0, 0]))
    with pytest.raises(ValueError, match="at least one ground-truth box"):
        categorize(np.array([G, G]), np.array([G]), np.array([0]))
    assert categorize(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0)) == []


def _row(**changes) -> ImageRow:
    row = ImageRow(
        image_id="a", path=None, width=40, height=30, true_label="n1", true_name="one",
        gt_boxes=(G,), top1=Predicted("n1", "one", 0.9, G), gt_known_box=G, top1_iou=1.0,
        gt_known_iou=1.0, top1_cls_correct=True, top1_loc_correct=True, gt_known_correct=True,
    )  # fmt: skip
    return ImageRow(**{**row.__dict__, **changes})


def test_top1_outcome_uses_the_runs_verdicts() -> None:
    assert top1_outcome(_row()) == Top1.correct
    assert top1_outcome(_row(top1_loc_correct=False)) == Top1.wrong_box
    assert top1_outcome(_row(top1_loc_correct=False, top1_cls_correct=False)) == Top1.wrong_class
    assert top1_outcome(_row(error="truncated", top1=None)) == Top1.failed
