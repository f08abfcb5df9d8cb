"""Localization metrics: ILSVRC top-1/top-5 and GT-known localization error, two trivial
baselines, and MaxBoxAccV2 (Choe et al., CVPR 2020). Pure numpy, streaming.

The ILSVRC rule (README, "Conventions"): a prediction (class, box) is correct when the class is
one of the image's ground-truth classes AND the box has IoU >= 0.5 with at least one
ground-truth box *of that class*. Top-1 error: the first prediction is wrong; top-5 error: all
of the (up to) five predictions are wrong. An image whose prediction failed counts as wrong for
every metric, so failures can never flatter the figures.

IoU uses the devkit's inclusive pixel arithmetic (see `iou_inclusive`). A prediction matches a
ground-truth label by wnid when the label is a wnid, and by class index when the label is all
digits (CUB; see `annotations`). Errors are kept as unrounded percents next to the raw counts;
only `format_table` rounds (to 2 decimals).

Memory: `LocalizationEvaluator` keeps counters plus, per image, the ground-truth boxes and two
small masks (needed by the median-box baseline, whose box size is only known at the end).
`MaxBoxAccV2` keeps a [thresholds, IoUs] hit table and nothing per image.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cam_cli.boxes.components import component_boxes, scale_boxes
from cam_cli.data.ground_truth import ImageAnnotation
from cam_cli.files.checks import printable_path
from cam_cli.settings import MaxBoxAccProtocolName

logger = logging.getLogger(__name__)

IOU_THRESHOLD = 0.5
TOP_K = 5


# --- IoU --------------------------------------------------------------------------------------


def pairwise_iou_inclusive(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``[n, 4]`` with every box of ``[m, 4]`` -> ``[n, m]`` float64.

    Inclusive pixel boxes, the ILSVRC devkit arithmetic (also wsolevaluation's):
    ``area = (x1 - x0 + 1) * (y1 - y0 + 1)``; the intersection width is
    ``min(x1) - max(x0) + 1`` clipped at 0 (likewise its height). A one-pixel box has area 1.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(1, -1, 4)
    inter_w = np.clip(
        np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None
    )
    inter_h = np.clip(
        np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None
    )
    intersection = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def iou_inclusive(box: Sequence[int] | np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one inclusive box ``[4]`` with each of ``boxes [n, 4]`` -> ``[n]`` float64."""
    return pairwise_iou_inclusive(np.asarray(box).reshape(1, 4), boxes)[0]


# --- predictions vs ground truth --------------------------------------------------------------


def prediction_matches(prediction: Mapping, label: str) -> bool:
    """Does a prediction (``class_index``, ``wnid``) name the ground-truth ``label``?

    All-digit labels are class indices (CUB); any other label is a wnid, matched against the
    prediction's wnid (a prediction without a wnid cannot match it).
    """
    if label.isdigit():
        return str(prediction.get("class_index")) == label
    return prediction.get("wnid") is not None and prediction.get("wnid") == label


def whole_image_box(width: int, height: int) -> np.ndarray:
    return np.array([0, 0, width - 1, height - 1], dtype=np.int64)


def centered_box(width: int, height: int, relative_w: float, relative_h: float) -> np.ndarray:
    """A box of ``round(relative size * image size)`` pixels (at least 1, at most the image),
    centred; when the leftover is odd, the extra pixel goes to the right/bottom margin."""
    box_w = min(width, max(1, round(relative_w * width)))
    box_h = min(height, max(1, round(relative_h * height)))
    x0 = (width - box_w) // 2
    y0 = (height - box_h) // 2
    return np.array([x0, y0, x0 + box_w - 1, y0 + box_h - 1], dtype=np.int64)


def percent_error(correct: int, total: int) -> float | None:
    return None if total == 0 else 100.0 * (total - correct) / total


def _gt_arrays(
    annotation: ImageAnnotation, width: int | None, height: int | None
) -> tuple[list[str], np.ndarray, bool]:
    """Ground-truth labels and boxes in the prediction's pixel grid.

    When the annotation states an image size that differs from the image actually evaluated
    (the user resized the images), the boxes are scaled to the evaluated size. A box that
    reaches outside the image is clipped to it, with a note.
    """
    labels = [label for label, _ in annotation.boxes]
    boxes = np.array([box for _, box in annotation.boxes], dtype=np.int64).reshape(-1, 4)
    rescaled = False
    if (
        len(boxes)
        and width is not None
        and height is not None
        and annotation.width is not None
        and annotation.height is not None
        and (annotation.width, annotation.height) != (width, height)
    ):
        boxes = scale_boxes(
            boxes, (annotation.width, annotation.height), np.array([[width, height]])
        )
        rescaled = True
    if len(boxes) and width is not None and height is not None:
        clipped = np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1])
        if (clipped != boxes).any():
            logger.info(
                "note: %s: a ground-truth box reaches outside the %dx%d image; clipped to it",
                printable_path(annotation.image_id), width, height,
            )  # fmt: skip
            boxes = clipped
    return labels, boxes, rescaled


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
        labels, gt_boxes, rescaled = _gt_arrays(annotation, width, height)
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


# --- MaxBoxAccV2 ------------------------------------------------------------------------------


def gt_boxes_in_grid(
    annotation: ImageAnnotation, width: int, height: int, grid_shape: tuple[int, int]
) -> np.ndarray:
    """An image's ground-truth boxes ``[n, 4]`` mapped from its ``width x height`` pixels to a
    CAM grid of ``grid_shape`` (rows, cols), where MaxBoxAccV2 compares them."""
    _, gt_boxes, _ = _gt_arrays(annotation, width, height)
    if len(gt_boxes) == 0:
        return gt_boxes
    grid = np.array([grid_shape[::-1]])  # (width, height) of the CAM grid
    return scale_boxes(gt_boxes, (width, height), grid)


@dataclass(frozen=True)
class MaxBoxAccProtocol:
    """How MaxBoxAccV2 turns a CAM and ground truth into boxes, one field per ingredient, so
    each difference from wsolevaluation can be switched on alone and measured.

    ``resize``: the CAM from feature resolution to 224x224, ``cubic`` (``cv2.INTER_CUBIC``,
    theirs) or ``bilinear`` (cam-cli's pipeline upsampling). ``gt_boxes``: ground truth into
    that grid, ``truncate`` (their ``resize_bbox``) or ``outward`` (cam-cli's `scale_boxes`).
    ``boxes``: ``contours`` (every ``findContours`` contour, holes too, ``boundingRect``'s
    ``x + w``, ``[0, 0, 0, 0]`` for an empty mask) or ``components`` (the tight box of each
    8-connected component; an empty mask has none). ``input_size_cam``: score the CAM the
    pipeline upsampled to the network input (cam-cli before this protocol existed; the GPU
    sweep computes this one) instead of resizing the feature-resolution CAM here.
    """

    name: str
    resize: str = "cubic"
    gt_boxes: str = "truncate"
    boxes: str = "contours"
    input_size_cam: bool = False


MAXBOXACC_PROTOCOLS = {
    # wsolevaluation's BoxEvaluator, rule for rule: the default
    MaxBoxAccProtocolName.wsol: MaxBoxAccProtocol(MaxBoxAccProtocolName.wsol.value),
    # what cam-cli computed before: the bilinear input-size CAM, outward-rounded ground truth,
    # tight component boxes (the README's old 63.44); also what the GPU sweep computes
    MaxBoxAccProtocolName.cam_cli: MaxBoxAccProtocol(
        MaxBoxAccProtocolName.cam_cli.value,
        resize="bilinear",
        gt_boxes="outward",
        boxes="components",
        input_size_cam=True,
    ),
}


def maxboxacc_protocol(protocol: str | MaxBoxAccProtocol) -> MaxBoxAccProtocol:
    """A protocol by name (`MAXBOXACC_PROTOCOLS`), or the one given."""
    if isinstance(protocol, MaxBoxAccProtocol):
        return protocol
    if protocol not in MAXBOXACC_PROTOCOLS:
        names = ", ".join(MAXBOXACC_PROTOCOLS)
        raise ValueError(f"unknown MaxBoxAccV2 protocol {protocol!r}; expected one of {names}")
    return MAXBOXACC_PROTOCOLS[protocol]


class MaxBoxAccV2:
    """MaxBoxAccV2 (Choe et al., CVPR 2020): by default (``protocol="wsol"``) exactly
    clovaai/wsolevaluation's BoxEvaluator with ``multi_contour_eval=True``,
    ``multi_iou_eval=True`` and ``cam_curve_interval=0.01`` (`wsol_protocol` has the rules).

    Per CAM: a 224x224 score map (`wsol_protocol.scoremap_from_cam`), min-max normalised to
    [0, 1] (a constant or NaN map becomes all zeros), quantised to 8 bits as
    ``uint8(map * 255)`` (truncation), and for each threshold t the pixels
    ``q > int(t * max(q))`` (``cv2.threshold``, ``THRESH_BINARY``: strictly greater, on the
    8-bit map). Every box of every mask counts; an image is a hit at (t, IoU level) when one of
    the boxes at t has IoU >= level with any ground-truth box. Accuracy per IoU level is the
    best over t (the lowest t on ties, as ``numpy.argmax``; wsolevaluation reports no
    threshold); MaxBoxAccV2 is the mean of those over the IoU levels (0.3, 0.5, 0.7).

    The ``cam-cli`` protocol (the figure before) differs from wsolevaluation in three rules;
    each, switched alone on the 434-image real sample, is measured in the README section
    "MaxBoxAccV2: wsolevaluation's figure". ``reproduce_wsol_boxes`` (components only) widens
    each tight box by one pixel right and down, as ``boundingRect``'s ``x + w``.

    `add` and `best_ious` take a map already in the scoring grid and ground-truth boxes in
    that grid; `image_ious` takes a CAM and an image's annotation and does the rest.
    """

    def __init__(
        self,
        thresholds: Sequence[float] | np.ndarray | None = None,
        iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
        reproduce_wsol_boxes: bool = False,
        *,
        protocol: str | MaxBoxAccProtocol = "wsol",
    ) -> None:
        self.thresholds = (
            np.arange(0, 1, 0.01) if thresholds is None else np.asarray(thresholds, np.float64)
        )
        self.iou_thresholds = np.asarray(iou_thresholds, dtype=np.float64)
        self.reproduce_wsol_boxes = reproduce_wsol_boxes
        self.protocol = maxboxacc_protocol(protocol)
        self.hits = np.zeros((len(self.thresholds), len(self.iou_thresholds)), dtype=np.int64)
        self.images = 0

    def masks(self, cam: np.ndarray) -> np.ndarray:
        """The ``[T, H, W]`` boolean masks of one CAM, one per threshold (see class doc)."""
        cam = np.array(cam, dtype=np.float64)
        if cam.ndim != 2:
            raise ValueError(f"expected one map [H, W], got shape {cam.shape}")
        if np.isnan(cam).any() or cam.min() == cam.max():
            cam = np.zeros_like(cam)
        else:
            cam -= cam.min()
            cam /= cam.max()
        quantised = (cam * 255).astype(np.uint8)
        cuts = np.trunc(self.thresholds * float(quantised.max())).astype(np.int64)
        return quantised[None, :, :] > cuts[:, None, None]

    def add(self, cam: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
        """Accumulate one CAM ``[H, W]`` and its gt boxes ``[n, 4]`` (inclusive, CAM grid).

        Returns the best IoU at each threshold ``[T]``.
        """
        best = self.best_ious(cam, gt_boxes)
        self.add_best_ious(best)
        return best

    def best_ious(self, cam: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
        """The best IoU at each threshold ``[T]`` for one map in the scoring grid (normalised
        here) and gt boxes in that grid, without counting it.

        Pure (no state changes), so it can run in the pipeline's worker threads.
        """
        gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
        if len(gt_boxes) == 0:
            raise ValueError("MaxBoxAccV2 needs at least one ground-truth box per image")
        if self.protocol.boxes == "contours":
            from cam_cli.evaluation.wsol_protocol import normalize_scoremap

            return self.scoremap_ious(normalize_scoremap(cam), gt_boxes)
        masks = self.masks(cam)
        map_index, boxes = component_boxes(masks)
        if self.reproduce_wsol_boxes and len(boxes):
            height, width = masks.shape[1:]
            boxes = boxes.copy()
            boxes[:, 2] = np.minimum(boxes[:, 2] + 1, width - 1)
            boxes[:, 3] = np.minimum(boxes[:, 3] + 1, height - 1)
        best = np.zeros(len(self.thresholds))
        if len(boxes):
            np.maximum.at(best, map_index, pairwise_iou_inclusive(boxes, gt_boxes).max(axis=1))
        return best

    def scoremap_ious(self, scoremap: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
        """`best_ious` of a score map in [0, 1] taken as it is (not normalised again), with
        every contour's box: what their ``BoxEvaluator.accumulate`` does with a map."""
        from cam_cli.evaluation.wsol_protocol import scoremap_boxes

        gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
        if len(gt_boxes) == 0:
            raise ValueError("MaxBoxAccV2 needs at least one ground-truth box per image")
        map_index, boxes = scoremap_boxes(scoremap, self.thresholds)
        best = np.zeros(len(self.thresholds))
        np.maximum.at(best, map_index, pairwise_iou_inclusive(boxes, gt_boxes).max(axis=1))
        return best

    def scoremap(self, cam: np.ndarray) -> np.ndarray:
        """The 224x224 score map of a feature-resolution CAM, by this protocol's resize."""
        from cam_cli.evaluation.wsol_protocol import scoremap_from_cam

        return scoremap_from_cam(cam, self.protocol.resize)

    def gt_boxes(self, annotation: ImageAnnotation, width: int, height: int) -> np.ndarray:
        """An image's ground-truth boxes in the 224x224 scoring grid, by this protocol's rule.

        ``truncate`` maps the boxes as annotated, from the annotated image size (the evaluated
        image's when the annotation states none), unclipped, as their metadata is mapped.
        """
        from cam_cli.evaluation.wsol_protocol import SCOREMAP_SIZE, truncated_gt_boxes

        if self.protocol.gt_boxes == "outward":
            return gt_boxes_in_grid(annotation, width, height, (SCOREMAP_SIZE, SCOREMAP_SIZE))
        boxes = np.array([box for _, box in annotation.boxes], dtype=np.int64).reshape(-1, 4)
        size = (annotation.width or width, annotation.height or height)
        return truncated_gt_boxes(boxes, size) if len(boxes) else boxes

    def image_ious(
        self, cam: np.ndarray, annotation: ImageAnnotation, width: int, height: int
    ) -> np.ndarray:
        """`best_ious` of a CAM for an image of ``width x height`` and its annotation; all
        zeros without boxes. The CAM is at feature resolution (resized here, `scoremap`), or,
        with ``protocol.input_size_cam``, already upsampled (scored in its own grid)."""
        if self.protocol.input_size_cam:
            gt_boxes = gt_boxes_in_grid(annotation, width, height, cam.shape)
            if len(gt_boxes) == 0:
                return np.zeros(len(self.thresholds))
            return self.best_ious(cam, gt_boxes)
        return self.scoremap_image_ious(self.scoremap(cam), annotation, width, height)

    def scoremap_image_ious(
        self, scoremap: np.ndarray, annotation: ImageAnnotation, width: int, height: int
    ) -> np.ndarray:
        """`image_ious` of a 224x224 score map (`scoremap`, or one read from a file)."""
        gt_boxes = self.gt_boxes(annotation, width, height)
        if len(gt_boxes) == 0:
            return np.zeros(len(self.thresholds))
        if self.protocol.boxes == "contours":
            return self.scoremap_ious(scoremap, gt_boxes)
        return self.best_ious(scoremap, gt_boxes)

    def add_best_ious(self, best: np.ndarray) -> None:
        """Count one image from its best IoU per threshold (as `add` returns them), so a resumed
        evaluation re-adds stored images without recomputing their CAMs."""
        best = np.asarray(best, dtype=np.float64)
        if best.shape != (len(self.thresholds),):
            raise ValueError(f"expected {len(self.thresholds)} IoUs, got shape {best.shape}")
        self.hits += best[:, None] >= self.iou_thresholds[None, :]
        self.images += 1

    def summary(self) -> dict:
        """Per IoU level: best accuracy (%) and the CAM threshold reaching it (the lowest one
        on ties); their mean is MaxBoxAccV2. Accuracies are None before any image."""
        levels = [float(v) for v in self.iou_thresholds]
        common = {"protocol": self.protocol.name, "threshold_source": "best on these images"}
        if self.images == 0:
            return {
                "images": 0,
                "iou_thresholds": levels,
                "accuracy": [None] * len(levels),
                "best_threshold": [None] * len(levels),
                "maxboxacc_v2": None,
                **common,
            }
        accuracy = 100.0 * self.hits / self.images  # [T, I]
        best_index = accuracy.argmax(axis=0)
        best = accuracy.max(axis=0)
        return {
            "images": self.images,
            "iou_thresholds": levels,
            "accuracy": [float(v) for v in best],
            "best_threshold": [float(self.thresholds[i]) for i in best_index],
            "maxboxacc_v2": float(best.mean()),
            **common,
        }

    def summary_at(self, carried: Mapping) -> dict:
        """The accuracies at CAM thresholds chosen elsewhere, one per IoU level
        (``carried["thresholds"]``, e.g. another split's best, `thresholds.carried_thresholds`):
        the threshold protocol, where the figure is not maximised on the images it scores."""
        chosen = [float(t) for t in carried["thresholds"]]
        if len(chosen) != len(self.iou_thresholds):
            raise ValueError(
                f"{len(chosen)} carried thresholds for {len(self.iou_thresholds)} IoU levels"
            )
        index = []
        for t in chosen:
            near = np.flatnonzero(np.isclose(self.thresholds, t, rtol=0, atol=1e-9))
            if len(near) == 0:
                raise ValueError(f"carried CAM threshold {t} is not on this run's grid")
            index.append(int(near[0]))
        accuracy = (
            [None] * len(index)
            if self.images == 0
            else [float(100.0 * self.hits[i, level] / self.images) for level, i in enumerate(index)]
        )
        return {
            "images": self.images,
            "iou_thresholds": [float(v) for v in self.iou_thresholds],
            "accuracy": accuracy,
            "threshold": [float(self.thresholds[i]) for i in index],
            "maxboxacc_v2": None if self.images == 0 else float(np.mean(accuracy)),
            "protocol": self.protocol.name,
            "threshold_source": str(carried["source"]),
        }


# --- presentation -----------------------------------------------------------------------------


def table_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(
    summary: Mapping, maxboxacc: Mapping | None = None, gt_known_note: str | None = None
) -> str:
    """A plain-text table for people: errors in percent, 2 decimals, with the baselines.

    ``maxboxacc`` (a `MaxBoxAccV2.summary`) may also be given as ``summary["maxboxacc_v2"]``.
    ``gt_known_note``: said in place of the GT-known figures (a run that cannot give them).
    """
    maxboxacc = maxboxacc if maxboxacc is not None else summary.get("maxboxacc_v2")
    baselines = summary.get("baselines", {})
    whole = baselines.get("whole_image", {})
    median = baselines.get("centered_median_box", {})
    rows = [
        ("classification error", summary.get("top1_cls_error"), summary.get("top5_cls_error")),
        ("localization error", summary.get("top1_loc_error"), summary.get("top5_loc_error")),
        ("  baseline: whole-image box", whole.get("top1_loc_error"), whole.get("top5_loc_error")),
        (
            "  baseline: centred median-size box",
            median.get("top1_loc_error"),
            median.get("top5_loc_error"),
        ),
        ("GT-known localization error", summary.get("gt_known_loc_error"), None),
    ]
    if whole.get("gt_known_loc_error") is not None:  # the baselines' GT-known error, to compare
        rows += [
            ("  baseline: whole-image box", whole.get("gt_known_loc_error"), None),
            ("  baseline: centred median-size box", median.get("gt_known_loc_error"), None),
        ]
    width = max(len(name) for name, _, _ in rows)
    lines = [
        f"{summary.get('images', 0)} images, {summary.get('failed_images', 0)} failed; "
        f"box correct at IoU >= {summary.get('iou_threshold', IOU_THRESHOLD)}; "
        "errors in %, lower is better",
        f"{'':<{width}}  {'top-1':>7}  {'top-5':>7}",
    ]
    for name, top1, top5 in rows:
        if gt_known_note is not None and name == "GT-known localization error":
            lines.append(f"{name:<{width}}  {gt_known_note}")
        else:
            lines.append(f"{name:<{width}}  {table_cell(top1):>7}  {table_cell(top5):>7}")
    if median.get("relative_size"):
        rel_w, rel_h = median["relative_size"]
        lines.append(f"(median-size box: {100 * rel_w:.1f}% x {100 * rel_h:.1f}% of the image)")
    if maxboxacc:
        lines += format_maxboxacc(maxboxacc, summary.get("maxboxacc_v2_carried"))
    return "\n".join(lines)


def format_maxboxacc(maxboxacc: Mapping, carried: Mapping | None = None) -> list[str]:
    """The MaxBoxAccV2 lines of the table: the figure, then each IoU level's accuracy and the
    CAM threshold it used; with ``carried`` (`MaxBoxAccV2.summary_at`), the figure at the
    thresholds chosen elsewhere, and where they came from."""
    protocol = maxboxacc.get("protocol", "wsol")
    named = "" if protocol == "wsol" else f", protocol {protocol}"
    lines = [
        f"MaxBoxAccV2 ({maxboxacc.get('images', 0)} images; accuracy in %, higher is better"
        f"{named}): {table_cell(maxboxacc.get('maxboxacc_v2'))}"
    ]
    for level, accuracy, threshold in zip(
        maxboxacc["iou_thresholds"], maxboxacc["accuracy"], maxboxacc["best_threshold"], strict=True
    ):
        at = "" if threshold is None else f" at CAM threshold {threshold:.2f}"
        lines.append(f"  IoU >= {level:.1f}: {table_cell(accuracy)}{at}")
    if carried:
        lines.append(
            f"MaxBoxAccV2 at CAM thresholds from {carried['threshold_source']}: "
            f"{table_cell(carried.get('maxboxacc_v2'))}"
        )
        for level, accuracy, threshold in zip(
            carried["iou_thresholds"], carried["accuracy"], carried["threshold"], strict=True
        ):
            at = f" at CAM threshold {threshold:.2f}"
            lines.append(f"  IoU >= {level:.1f}: {table_cell(accuracy)}{at}")
    return lines
