"""Why a box is wrong, said by a rule on boxes alone (docs/report.md, "Failure categories").

The GT-known box (the true class's box) against ALL the image's ground-truth boxes, inclusive
pixel arithmetic as every IoU of the tool (`metrics.pairwise_iou_inclusive`). With ``P`` the
predicted box and ``G`` each ground-truth box, ``|.|`` areas in pixels:

- ``IoU(P, G) = |P & G| / (|P| + |G| - |P & G|)``
- ``covered(G) = |P & G| / |G|``: the share of G inside P
- ``inside(G) = |P & G| / |P|``: the share of P inside G

The first rule that holds names the category:

1. correct: ``max IoU >= 0.5`` (the ILSVRC rule: the same verdict as GT-known accuracy)
2. several instances merged: ``covered(G) >= 0.5`` for at least two ground-truth boxes, and
   ``IoU(P, H) >= 0.5`` with H the box enclosing those (the box spans the group of objects;
   a box that also takes much background around them is "too large")
3. too large: ``covered(G) >= 0.9`` for some G (it holds the object, and much more)
4. part: ``inside(G) >= 0.9`` for some G (it lies in the object, much smaller)
5. off target: ``max IoU < 0.1``
6. other: the rest (a box shifted off the object, partly overlapping it)

`categorize` is the one implementation, over many images at once (no per-image Python loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

from cam_cli.boxes.geometry import IOU_THRESHOLD
from cam_cli.report.inputs import ImageRow

MERGED_COVER = 0.5  # share of each of two ground-truth boxes inside the box
MERGED_IOU = IOU_THRESHOLD  # ... and its IoU with the box enclosing them
INSIDE = 0.9  # share for "too large" (ground truth inside the box) and "part" (box inside it)
OFF_TARGET_IOU = 0.1


class Category(StrEnum):
    correct = "correct"
    merged = "several instances merged"
    too_large = "too large"
    part = "part of the object"
    off_target = "off target"
    other = "other"


# In the order the rules are tried (the module docstring's), which is also the page's.
CATEGORIES = tuple(Category)

RULES = {
    Category.correct: f"IoU >= {IOU_THRESHOLD} with a ground-truth box",
    Category.merged: f"covers >= {MERGED_COVER:.0%} of each of two or more ground-truth boxes, "
    f"and IoU >= {MERGED_IOU} with the box enclosing them",
    Category.too_large: f"a ground-truth box is >= {INSIDE:.0%} inside it (and IoU < 0.5)",
    Category.part: f"it is >= {INSIDE:.0%} inside a ground-truth box (and IoU < 0.5)",
    Category.off_target: f"IoU < {OFF_TARGET_IOU} with every ground-truth box",
    Category.other: "none of the above (e.g. shifted, partly overlapping)",
}


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection and areas of the pairs ``a[i]``, ``b[i]`` (inclusive pixels)."""
    inter_w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1, 0, None)
    inter_h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1, 0, None)
    return inter_w * inter_h, _area(a), _area(b)


def _iou(inter: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    return inter / (area_a + area_b - inter)


def categorize(boxes: np.ndarray, gt_boxes: np.ndarray, owner: np.ndarray) -> list[Category]:
    """The category of each predicted box ``[N, 4]`` against the ground-truth boxes ``[M, 4]``
    of its image: ``owner [M]`` says which box (0..N-1) each ground-truth box belongs to.
    Every box needs at least one ground-truth box (an image without any has no category)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    owner = np.asarray(owner, dtype=np.int64).reshape(-1)
    if len(owner) != len(gt):
        raise ValueError(f"{len(owner)} owners for {len(gt)} ground-truth boxes")
    if len(boxes) and np.bincount(owner, minlength=len(boxes)).min(initial=1) == 0:
        raise ValueError("every box needs at least one ground-truth box")
    inter, area_box, area_gt = _overlap(boxes[owner], gt)  # each gt box beside its image's box
    iou = _iou(inter, area_box, area_gt)
    covered = inter / area_gt
    inside = inter / area_box

    def per_box(
        values: np.ndarray, reduce: np.ufunc = np.maximum, start: float = 0.0
    ) -> np.ndarray:
        out = np.full(len(boxes), start)
        reduce.at(out, owner, values)
        return out

    best_iou = per_box(iou)
    # the box enclosing the ground-truth boxes it covers by half (empty: +inf..-inf)
    half = covered >= MERGED_COVER
    hull = np.stack([
        per_box(np.where(half, gt[:, 0], np.inf), np.minimum, np.inf),
        per_box(np.where(half, gt[:, 1], np.inf), np.minimum, np.inf),
        per_box(np.where(half, gt[:, 2], -np.inf), np.maximum, -np.inf),
        per_box(np.where(half, gt[:, 3], -np.inf), np.maximum, -np.inf),
    ], axis=1)  # fmt: skip
    several = np.bincount(owner, weights=half, minlength=len(boxes)) >= 2
    merged = np.zeros(len(boxes), dtype=bool)
    if several.any():
        hull_iou = _iou(*_overlap(boxes[several], hull[several]))
        merged[several] = hull_iou >= MERGED_IOU
    rules = [
        best_iou >= IOU_THRESHOLD,
        merged,
        per_box(covered) >= INSIDE,
        per_box(inside) >= INSIDE,
        best_iou < OFF_TARGET_IOU,
    ]
    index = np.select(rules, np.arange(len(rules)), default=len(rules))
    return [CATEGORIES[i] for i in index]


def categorize_one(box: Sequence[int], gt_boxes: Sequence[Sequence[int]]) -> Category:
    """`categorize` for one box and its image's ground-truth boxes."""
    gt = np.asarray(gt_boxes).reshape(-1, 4)
    return categorize(np.asarray([box]), gt, np.zeros(len(gt), dtype=np.int64))[0]


class Top1(StrEnum):
    correct = "correct (class and box)"
    wrong_box = "right class, wrong box"
    wrong_class = "wrong class"
    failed = "failed (no prediction)"


def top1_outcome(row: ImageRow) -> Top1:
    """The top-1 prediction's verdict, from the run's own booleans (never decided again)."""
    if row.error is not None or row.top1 is None:
        return Top1.failed
    if row.top1_loc_correct:
        return Top1.correct
    return Top1.wrong_box if row.top1_cls_correct else Top1.wrong_class
