"""MaxBoxAccV2 on the device equals `metrics.MaxBoxAccV2` on the host, value for value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DEVICES

from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2
from cam_cli.evaluation.maxboxacc.sweep_torch import best_ious_torch, pad_gt_boxes


def _smooth(rng, grid: int, size=(96, 112)) -> np.ndarray:
    coarse = torch.from_numpy(rng.normal(size=(1, 1, grid, grid)).astype(np.float32))
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear")[0, 0].numpy()


def _cases(rng) -> tuple[list[np.ndarray], list[np.ndarray]]:
    cams, gts = [], []
    for i in range(14):
        cam = _smooth(rng, (7, 14)[i % 2])
        if i == 1:
            cam[:] = 0.7  # constant: all zeros, no component
        if i == 2:
            cam[3, 4] = np.nan
        if i == 3:
            cam = np.zeros_like(cam)
            cam[50, 60] = 1.0  # one pixel above every threshold
        boxes = []
        for _ in range(0 if i == 4 else 1 + i % 3):
            x0, y0 = rng.integers(0, 90, 2)
            boxes.append([x0, y0, x0 + rng.integers(0, 40), y0 + rng.integers(0, 30)])
        cams.append(cam)
        gts.append(np.array(boxes, dtype=np.int64).reshape(-1, 4))
    return cams, gts


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("wsol_boxes", [False, True])
def test_equal_to_the_host_sweep(device, wsol_boxes):
    cams, gts = _cases(np.random.default_rng(0))
    reference = MaxBoxAccV2(reproduce_wsol_boxes=wsol_boxes, protocol="cam-cli")
    want = [
        reference.best_ious(c, g) if len(g) else np.zeros(100)
        for c, g in zip(cams, gts, strict=True)
    ]
    boxes, valid = pad_gt_boxes(gts, torch.device(device))
    stack = torch.from_numpy(np.stack(cams)).to(device)
    got = best_ious_torch(stack, boxes, valid, reference.thresholds, wsol_boxes).cpu().numpy()
    assert got.shape == (len(cams), 100)
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        np.testing.assert_array_equal(g, w, err_msg=f"map {i}")
    assert got[1].max() == 0
    assert got[4].max() == 0
    assert got[3].max() > 0 or gts[3][:, 0].min() > 60  # the one-pixel box is a box


def test_hand_made_two_blobs():
    """Two blobs: at a low threshold both are components; the one over the gt box scores."""
    cam = np.zeros((20, 30), dtype=np.float32)
    cam[2:6, 3:9] = 1.0  # 6 x 4 blob at x 3..8, y 2..5
    cam[10:18, 20:28] = 0.5  # 8 x 8 blob at x 20..27, y 10..17
    gt = [np.array([[20, 10, 27, 17]])]
    boxes, valid = pad_gt_boxes(gt, torch.device("cpu"))
    thresholds = np.array([0.0, 0.4, 0.6])
    best = best_ious_torch(torch.from_numpy(cam[None]), boxes, valid, thresholds).numpy()[0]
    # q = 255 on the first blob, 127 on the second; cuts 0, 102, 153: the second blob is a
    # component at t = 0 and 0.4 (IoU 1 with the gt box), gone at 0.6 (only the first: IoU 0).
    np.testing.assert_array_equal(best, [1.0, 1.0, 0.0])
