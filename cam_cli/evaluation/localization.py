"""The ILSVRC localization figures: top-1/top-5 classification and localization error, GT-known
localization error and two trivial baselines. Pure numpy, streaming.

The ILSVRC rule (README, "Conventions"): a prediction (class, box) is correct when the class is
one of the image's ground-truth classes AND the box has IoU >= 0.5 with at least one
ground-truth box *of that class*. Top-1 error: the first prediction is wrong; top-5 error: all
of the (up to) five predictions are wrong. An image whose prediction failed counts as wrong for
every metric, so failures can never flatter the figures.

IoU uses the devkit's inclusive pixel arithmetic (`boxes.geometry.iou_inclusive`). A
prediction matches a ground-truth label by wnid when the label is a wnid, and by class index
when the label is all digits (CUB; see `annotations`). Errors are kept as unrounded percents
next to the raw counts; only the table (`table`) rounds (to 2 decimals).

Memory: `LocalizationEvaluator` keeps counters plus, per image, the ground-truth boxes and two
small masks (needed by the median-box baseline, whose box size is only known at the end).
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cam_cli.boxes.geometry import IOU_THRESHOLD, centered_box, iou_inclusive, whole_image_box
from cam_cli.data.ground_truth import ImageAnnotation
from cam_cli.evaluation.gt_boxes import gt_arrays

TOP_K = 5


def prediction_matches(prediction: Mapping, label: str) -> bool:
    """Does a prediction (``class_index``, ``wnid``) name the ground-truth ``label``?

    All-digit labels are class indices (CUB); any other label is a wnid, matched against the
    prediction's wnid (a prediction without a wnid cannot match it).
    """
    if label.isdigit():
        return str(prediction.get("class_index")) == label
    return prediction.get("wnid") is not None and prediction.get("wnid") == label


def percent_error(correct: int, total: int) -> float | None:
    return None if total == 0 else 100.0 * (total - correct) / total


@dataclass
class _BaselineItem:
    """What the median-box baseline needs of an image with a right class, kept until `summary`
    (the box size is the median over all images, known only at the end)."""

    width: int
    height: int
    gt_boxes: np.ndarray  # [g, 4] int32
    top1_mask: np.ndarray  # [g] bool: gt boxes whose label the top-1 prediction got right
    top5_mask: np.ndarray  # [g] bool: ... that any of the top-5 predictions got right


class LocalizationEvaluator:
    """Accumulates ILSVRC localization figures over prediction records, one image at a time.

    A record is one line of ``cam-cli bbox`` JSON Lines: ``{"path", "width", "height",
    "predictions": [{"rank", "class_index", "wnid", "name", "score", "box"}, ...]}``, or
    ``{"path", "error"}`` for an image that failed. ``gt_known_box`` is the box from the CAM of
    the true class (class ignored); GT-known error is reported only when such boxes are given.
    """

    def __init__(self, iou_threshold: float = IOU_THRESHOLD, top_k: int = TOP_K) -> None:
        self.iou_threshold = iou_threshold
        self.top_k = top_k
        self.images = 0
        self.failed: list[dict] = []
        self.images_without_boxes = 0
        self.images_gt_rescaled = 0
        self.min_predictions: int | None = None
        self.correct = {"top1_cls": 0, "top5_cls": 0, "top1_loc": 0, "top5_loc": 0}
        self.gt_known_images = 0
        self.gt_known_correct = 0
        self.whole_image_correct = {"top1_loc": 0, "top5_loc": 0}
        self._relative_sizes = array("d")  # (w, h) of every gt box over its image's (w, h)
        self._baseline_items: list[_BaselineItem] = []
        # GT-known figures of the baselines (class ignored): what GT-known error compares with
        self.whole_image_gt_known = 0
        self._gt_known_items: list[tuple[int, int, np.ndarray]] = []

    def add(
        self,
        record: Mapping,
        annotation: ImageAnnotation,
        gt_known_box: Sequence[int] | np.ndarray | None = None,
    ) -> dict:
        """Score one image; returns its per-image result (JSON-serialisable)."""
        self.images += 1
        error = record.get("error")
        predictions = sorted(record.get("predictions") or [], key=lambda p: p.get("rank", 0))
        if error is None and not predictions:
            error = "no predictions"
        width = record.get("width", annotation.width)
        height = record.get("height", annotation.height)
        labels, gt_boxes, rescaled = gt_arrays(annotation, width, height)
        self.images_gt_rescaled += rescaled
        self.images_without_boxes += len(gt_boxes) == 0
        result: dict = {
            "path": record.get("path"),
            "image_id": annotation.image_id,
            "labels": list(annotation.labels),
            "gt_boxes": [
                {"label": label, "box": [int(v) for v in box]}
                for label, box in zip(labels, gt_boxes, strict=True)
            ],
            "error": error,
            "predictions": [],
        }
        flags = dict.fromkeys(("top1_cls", "top5_cls", "top1_loc", "top5_loc"), False)
        top1_mask = np.zeros(len(gt_boxes), dtype=bool)
        top5_mask = np.zeros(len(gt_boxes), dtype=bool)
        if error is not None:
            self.failed.append({"path": record.get("path"), "error": str(error)})
        else:
            if width is None or height is None:
                raise ValueError(f"{record.get('path')}: record has no image width/height")
            top = predictions[: self.top_k]
            count = len(top)
            self.min_predictions = (
                count if self.min_predictions is None else min(self.min_predictions, count)
            )
            for position, prediction in enumerate(top):
                scored = self._score_prediction(prediction, annotation, labels, gt_boxes)
                result["predictions"].append(scored["record"])
                top5_mask |= scored["label_mask"]
                flags["top5_cls"] |= scored["class_correct"]
                flags["top5_loc"] |= scored["loc_correct"]
                if position == 0:
                    top1_mask |= scored["label_mask"]
                    flags["top1_cls"] = scored["class_correct"]
                    flags["top1_loc"] = scored["loc_correct"]
            whole = whole_image_box(width, height)
            whole_hits = iou_inclusive(whole, gt_boxes) >= self.iou_threshold
            self.whole_image_correct["top1_loc"] += bool((whole_hits & top1_mask).any())
            self.whole_image_correct["top5_loc"] += bool((whole_hits & top5_mask).any())
            if gt_known_box is not None:
                self.whole_image_gt_known += bool(whole_hits.any())
                self._gt_known_items.append((width, height, gt_boxes.astype(np.int32)))
        for key, value in flags.items():
            self.correct[key] += value
            result[f"{key}_correct"] = value

        result["gt_known_iou"] = result["gt_known_correct"] = None
        if gt_known_box is not None and error is None:
            best = float(iou_inclusive(gt_known_box, gt_boxes).max(initial=0.0))
            result["gt_known_box"] = [int(v) for v in gt_known_box]
            result["gt_known_iou"] = best
            result["gt_known_correct"] = best >= self.iou_threshold
            self.gt_known_images += 1
            self.gt_known_correct += result["gt_known_correct"]

        if width and height and len(gt_boxes):
            relative = (gt_boxes[:, 2:] - gt_boxes[:, :2] + 1) / np.array([width, height])
            self._relative_sizes.extend(relative.ravel().tolist())
        if top5_mask.any():  # otherwise wrong whatever the box: nothing to keep
            self._baseline_items.append(
                _BaselineItem(width, height, gt_boxes.astype(np.int32), top1_mask, top5_mask)
            )
        return result

    def _score_prediction(
        self,
        prediction: Mapping,
        annotation: ImageAnnotation,
        labels: list[str],
        gt_boxes: np.ndarray,
    ) -> dict:
        """Class right? Which gt boxes share its class? Best IoU (any gt box), and correct?"""
        class_correct = any(prediction_matches(prediction, label) for label in annotation.labels)
        label_mask = np.array(
            [prediction_matches(prediction, label) for label in labels], dtype=bool
        )
        box = prediction.get("box")
        ious = iou_inclusive(box, gt_boxes) if box is not None else np.zeros(len(gt_boxes))
        loc_correct = class_correct and bool((ious[label_mask] >= self.iou_threshold).any())
        record = {
            key: prediction.get(key)
            for key in ("rank", "class_index", "wnid", "name", "score", "box")
        }
        record["iou"] = float(ious.max(initial=0.0))
        record["class_correct"] = class_correct
        record["loc_correct"] = loc_correct
        return {
            "record": record,
            "label_mask": label_mask,
            "class_correct": class_correct,
            "loc_correct": loc_correct,
        }

    def _median_relative_size(self) -> tuple[float, float] | None:
        """Median relative width and height of all gt boxes of the evaluated images (failed
        images included when their size is known: the ground truth does not depend on them)."""
        if not self._relative_sizes:
            return None
        median = np.median(np.asarray(self._relative_sizes).reshape(-1, 2), axis=0)
        return float(median[0]), float(median[1])

    def _centered_median_baseline(self) -> dict:
        relative = self._median_relative_size()
        correct = {"top1_loc": 0, "top5_loc": 0}
        if relative is not None:
            for item in self._baseline_items:
                box = centered_box(item.width, item.height, *relative)
                hits = iou_inclusive(box, item.gt_boxes) >= self.iou_threshold
                correct["top1_loc"] += bool((hits & item.top1_mask).any())
                correct["top5_loc"] += bool((hits & item.top5_mask).any())
        return (
            self._baseline_summary(correct)
            | {"relative_size": None if relative is None else list(relative)}
            | self._baseline_gt_known(relative)
        )

    def _baseline_gt_known(self, relative: tuple[float, float] | None) -> dict:
        """GT-known error of a baseline box (whole image when ``relative`` is None): counted
        over the same images as the model's GT-known error, when that is reported."""
        if not self.gt_known_images:
            return {}
        if relative is None:
            correct = self.whole_image_gt_known
        else:
            correct = sum(
                bool((iou_inclusive(centered_box(w, h, *relative), gt) >= self.iou_threshold).any())
                for w, h, gt in self._gt_known_items
            )
        total = self.gt_known_images + len(self.failed)
        return {"gt_known_correct": correct, "gt_known_loc_error": percent_error(correct, total)}

    def _baseline_summary(self, correct: Mapping[str, int]) -> dict:
        has_boxes = self.images_without_boxes < self.images
        total = self.images if has_boxes else 0
        return {
            "top1_loc_correct": correct["top1_loc"],
            "top5_loc_correct": correct["top5_loc"],
            "top1_loc_error": percent_error(correct["top1_loc"], total),
            "top5_loc_error": percent_error(correct["top5_loc"], total),
        }

    def summary(self) -> dict:
        """All figures: raw counts, and errors in percent (unrounded; None when undefined).

        Localization errors are None when no evaluated image has a ground-truth box (e.g.
        devkit labels only); images without boxes otherwise count as localization-wrong and are
        counted in ``images_without_boxes``. GT-known error counts the images given a GT-known
        box plus the failed images (which are wrong), and is None when no box was given.
        """
        total = self.images
        loc_total = total if self.images_without_boxes < total else 0
        gt_known_total = self.gt_known_images + len(self.failed) if self.gt_known_images else 0
        return {
            "images": total,
            "failed_images": len(self.failed),
            "failed": list(self.failed),
            "images_without_boxes": self.images_without_boxes,
            "images_gt_rescaled": self.images_gt_rescaled,
            "iou_threshold": self.iou_threshold,
            "min_predictions": self.min_predictions,
            "correct": dict(self.correct),
            "top1_cls_error": percent_error(self.correct["top1_cls"], total),
            "top5_cls_error": percent_error(self.correct["top5_cls"], total),
            "top1_loc_error": percent_error(self.correct["top1_loc"], loc_total),
            "top5_loc_error": percent_error(self.correct["top5_loc"], loc_total),
            "gt_known_images": gt_known_total,
            "gt_known_correct": self.gt_known_correct,
            "gt_known_loc_error": percent_error(self.gt_known_correct, gt_known_total),
            "baselines": {
                "whole_image": self._baseline_summary(self.whole_image_correct)
                | self._baseline_gt_known(None),
                "centered_median_box": self._centered_median_baseline(),
            },
        }
