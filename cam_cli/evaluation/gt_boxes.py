"""An image's ground-truth boxes where they are scored: in the pixels of the image evaluated
(`gt_arrays`), or in the grid of its CAM (`gt_boxes_in_grid`)."""

from __future__ import annotations

import logging

import numpy as np

from cam_cli.boxes.components import scale_boxes
from cam_cli.boxes.geometry import boxes_in_grid
from cam_cli.data.ground_truth import ImageAnnotation
from cam_cli.files.checks import printable_path

logger = logging.getLogger(__name__)


def gt_arrays(
    annotation: ImageAnnotation, width: int | None, height: int | None
) -> tuple[list[str], np.ndarray, bool]:
    """Ground-truth labels and boxes in the prediction's pixel grid, and whether they were
    rescaled.

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


def gt_boxes_in_grid(
    annotation: ImageAnnotation, width: int, height: int, grid_shape: tuple[int, ...]
) -> np.ndarray:
    """An image's ground-truth boxes ``[n, 4]`` mapped from its ``width x height`` pixels to a
    CAM grid of ``grid_shape`` (rows, cols), where MaxBoxAccV2 compares them."""
    _, gt_boxes, _ = gt_arrays(annotation, width, height)
    if len(gt_boxes) == 0:
        return gt_boxes
    return boxes_in_grid(gt_boxes, (width, height), grid_shape)
