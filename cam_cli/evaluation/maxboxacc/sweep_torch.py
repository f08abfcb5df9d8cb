"""MaxBoxAccV2's per-image work on the device where the CAMs are: `metric.MaxBoxAccV2.best_ious`
for a whole batch, in plain torch.

The sweep is 100 thresholds per CAM, each mask labelled and every component boxed: about 16 ms
of CPU per image with scipy, which would hold a GPU pipeline back by two orders of magnitude.
Here the masks of many images are labelled at once (`boxes.components_torch`), the IoUs taken
against each image's ground truth, and only ``[B, T]`` best IoUs leave the device. The
arithmetic is `MaxBoxAccV2`'s, in float64, so the results are equal, not close (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from cam_cli.boxes.components_torch import component_boxes_torch
from cam_cli.runtime.streams import to_device

IMAGES_PER_CHUNK = 8  # 8 CAMs x 100 thresholds x 224 x 224 masks: ~160 MB of int32 grid


def pad_gt_boxes(boxes: Sequence[np.ndarray], device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-image ground-truth boxes ``[n_i, 4]`` -> ``[B, G, 4]`` int64 and a ``[B, G]`` mask."""
    most = max((len(b) for b in boxes), default=0)
    padded = np.zeros((len(boxes), max(most, 1), 4), dtype=np.int64)
    valid = np.zeros((len(boxes), max(most, 1)), dtype=bool)
    for i, image_boxes in enumerate(boxes):
        padded[i, : len(image_boxes)] = np.asarray(image_boxes, dtype=np.int64).reshape(-1, 4)
        valid[i, : len(image_boxes)] = True
    # pinned and non_blocking on CUDA: no host wait in the batch's device work
    return to_device(torch.from_numpy(padded), device), to_device(torch.from_numpy(valid), device)


def _iou_with_gt(boxes: Tensor, gt: Tensor, valid: Tensor) -> Tensor:
    """Best IoU of each box ``[C, 4]`` with its own image's valid gt boxes ``[C, G, 4]``."""
    a = boxes.double()[:, None, :]
    b = gt.double()
    inter_w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0]) + 1).clamp(
        min=0
    )
    inter_h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1]) + 1).clamp(
        min=0
    )
    intersection = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - intersection
    iou = torch.where(union > 0, intersection / union.clamp(min=1e-300), 0.0)
    return torch.where(valid, iou, 0.0).amax(dim=1)


def quantise(cams: Tensor, thresholds: Tensor) -> tuple[Tensor, Tensor]:
    """`MaxBoxAccV2.masks`' two halves for a stack ``[B, H, W]``: the 8-bit maps ``[B, H, W]``
    uint8 and the cut of each threshold ``[B, T]`` int16; a mask is ``quantised > cut``."""
    cam = cams.double()
    flat = cam.flatten(1)
    low, high = flat.amin(dim=1), flat.amax(dim=1)
    bad = torch.isnan(flat).any(dim=1) | (low == high)
    shifted = cam - low.view(-1, 1, 1)
    top = shifted.flatten(1).amax(dim=1).view(-1, 1, 1)
    scaled = torch.where(bad.view(-1, 1, 1), 0.0, shifted / torch.where(top > 0, top, 1.0))
    quantised = (scaled * 255).to(torch.uint8)
    peak = quantised.flatten(1).amax(dim=1).double()
    cuts = torch.trunc(thresholds[None, :] * peak[:, None]).to(torch.int16)  # [B, T]
    return quantised, cuts


def _masks(cams: Tensor, thresholds: Tensor) -> Tensor:
    """`MaxBoxAccV2.masks` for a stack ``[B, H, W]`` -> ``[B * T, H, W]``."""
    quantised, cuts = quantise(cams, thresholds)
    masks = quantised[:, None].to(torch.int16) > cuts[:, :, None, None]
    return masks.flatten(0, 1)


def best_ious_torch(
    cams: Tensor,
    gt_boxes: Tensor,
    gt_valid: Tensor,
    thresholds: np.ndarray,
    reproduce_wsol_boxes: bool = False,
) -> Tensor:
    """`MaxBoxAccV2.best_ious` of every CAM of ``[B, H, W]`` -> ``[B, T]`` float64, where
    ``gt_boxes [B, G, 4]`` (inclusive, in the CAM's grid; `pad_gt_boxes`) and ``gt_valid
    [B, G]`` say each image's ground truth. An image without a box gets all zeros."""
    device = cams.device
    t = to_device(torch.tensor(np.asarray(thresholds, dtype=np.float64)), device)
    height, width = cams.shape[1:]
    best = torch.zeros((len(cams), len(t)), dtype=torch.float64, device=device)
    for start in range(0, len(cams), IMAGES_PER_CHUNK):
        stop = min(start + IMAGES_PER_CHUNK, len(cams))
        map_index, boxes = component_boxes_torch(_masks(cams[start:stop], t))
        if len(boxes) == 0:
            continue
        if reproduce_wsol_boxes:
            boxes = boxes.clone()
            boxes[:, 2] = (boxes[:, 2] + 1).clamp(max=width - 1)
            boxes[:, 3] = (boxes[:, 3] + 1).clamp(max=height - 1)
        image = start + map_index // len(t)
        ious = _iou_with_gt(boxes, gt_boxes[image], gt_valid[image])
        chunk = best[start:stop].view(-1)
        chunk.scatter_reduce_(0, map_index, ious, reduce="amax")
    return best
