"""Box arithmetic every part shares: the devkit's inclusive IoU, the two baseline boxes, and
boxes moved into another grid. Pure numpy, no state.

Boxes are ``[x0, y0, x1, y1]`` in inclusive pixels (README, "Conventions"): a one-pixel box is
``[x, y, x, y]`` and has area 1, as in the ILSVRC devkit and wsolevaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cam_cli.boxes.components import scale_boxes

IOU_THRESHOLD = 0.5  # the ILSVRC rule: a box is right at IoU >= 0.5 with a ground-truth box


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


def whole_image_box(width: int, height: int) -> np.ndarray:
    """The box of every pixel: the baseline a localization figure must beat."""
    return np.array([0, 0, width - 1, height - 1], dtype=np.int64)


def centered_box(width: int, height: int, relative_w: float, relative_h: float) -> np.ndarray:
    """A box of ``round(relative size * image size)`` pixels (at least 1, at most the image),
    centred; when the leftover is odd, the extra pixel goes to the right/bottom margin."""
    box_w = min(width, max(1, round(relative_w * width)))
    box_h = min(height, max(1, round(relative_h * height)))
    x0 = (width - box_w) // 2
    y0 = (height - box_h) // 2
    return np.array([x0, y0, x0 + box_w - 1, y0 + box_h - 1], dtype=np.int64)


def boxes_in_grid(
    boxes: np.ndarray, image_size: tuple[int, int], grid_shape: tuple[int, ...]
) -> np.ndarray:
    """Boxes ``[n, 4]`` from an image of ``(width, height)`` pixels to a grid of
    ``grid_shape`` (rows, cols), e.g. a CAM's, rounding outwards (`components.scale_boxes`)."""
    if len(boxes) == 0:
        return np.asarray(boxes, dtype=np.int64).reshape(0, 4)
    grid = np.array([grid_shape[-2:][::-1]])  # (width, height) of the grid
    return scale_boxes(boxes, image_size, grid)
