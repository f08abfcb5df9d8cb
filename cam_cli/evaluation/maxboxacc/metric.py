"""MaxBoxAccV2 (Choe et al., CVPR 2020) on the host: the threshold sweep of one CAM or score map
against its ground truth, the hit table over a data set, and its summary. Pure numpy; the
device sweeps (`sweep_torch`, `sweep_triton`) give the same best IoUs for a batch.

`MaxBoxAccV2` keeps a [thresholds, IoUs] hit table and nothing per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cam_cli.boxes.components import component_boxes
from cam_cli.boxes.geometry import pairwise_iou_inclusive
from cam_cli.data.ground_truth import ImageAnnotation
from cam_cli.evaluation.gt_boxes import gt_boxes_in_grid
from cam_cli.evaluation.maxboxacc.protocol import MaxBoxAccProtocol, maxboxacc_protocol
from cam_cli.evaluation.maxboxacc.wsol_protocol import (
    SCOREMAP_SIZE,
    normalize_scoremap,
    scoremap_boxes,
    scoremap_from_cam,
    truncated_gt_boxes,
)


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
        gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
        if len(gt_boxes) == 0:
            raise ValueError("MaxBoxAccV2 needs at least one ground-truth box per image")
        map_index, boxes = scoremap_boxes(scoremap, self.thresholds)
        best = np.zeros(len(self.thresholds))
        np.maximum.at(best, map_index, pairwise_iou_inclusive(boxes, gt_boxes).max(axis=1))
        return best

    def scoremap(self, cam: np.ndarray) -> np.ndarray:
        """The 224x224 score map of a feature-resolution CAM, by this protocol's resize."""
        return scoremap_from_cam(cam, self.protocol.resize)

    def gt_boxes(
        self,
        annotation: ImageAnnotation,
        width: int,
        height: int,
        grid: tuple[int, ...] = (SCOREMAP_SIZE, SCOREMAP_SIZE),
    ) -> np.ndarray:
        """An image's ground-truth boxes in the 224x224 scoring grid, by this protocol's rule.

        ``truncate`` maps the boxes as annotated, from the annotated image size (the evaluated
        image's when the annotation states none), unclipped, as their metadata is mapped.
        ``outward`` rounds them outwards into ``grid`` (rows, cols: a CAM's at input size).
        """
        if self.protocol.gt_boxes == "outward":
            return gt_boxes_in_grid(annotation, width, height, grid)
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
        """`image_ious` of a score map in [0, 1]: 224x224 (`scoremap`, or one read from a
        file), or with the ``cam-cli`` protocol the CAM at input size, normalised (the same
        boxes as `image_ious` of the CAM itself)."""
        gt_boxes = self.gt_boxes(annotation, width, height, scoremap.shape)
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

    def carried_indices(self, thresholds: Sequence[float]) -> list[int]:
        """Where CAM thresholds chosen elsewhere (one per IoU level) lie on this run's grid;
        ValueError for one that is not on it (checked before any image is scored)."""
        chosen = [float(t) for t in thresholds]
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
        return index

    def summary_at(self, carried: Mapping) -> dict:
        """The accuracies at CAM thresholds chosen elsewhere, one per IoU level
        (``carried["thresholds"]``, e.g. another split's best,
        `carried_thresholds.carried_thresholds`): the threshold protocol, where the figure is
        not maximised on the images it scores."""
        index = self.carried_indices(carried["thresholds"])
        hits = [
            float(100.0 * self.hits[i, level] / max(self.images, 1))
            for level, i in enumerate(index)
        ]
        accuracy: list[float | None] = [None] * len(index) if self.images == 0 else list(hits)
        return {
            "images": self.images,
            "iou_thresholds": [float(v) for v in self.iou_thresholds],
            "accuracy": accuracy,
            "threshold": [float(self.thresholds[i]) for i in index],
            "maxboxacc_v2": None if self.images == 0 else float(np.mean(hits)),
            "protocol": self.protocol.name,
            "threshold_source": str(carried["source"]),
        }
