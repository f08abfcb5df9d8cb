"""Which device sweep computes MaxBoxAccV2's best IoUs for a batch of CAMs: the one of the box
step the run resolved (`boxes.backends.resolve_box_backend`), torch or triton, imported at first use
(the triton one needs Triton)."""

from __future__ import annotations

import numpy as np
import torch


def device_best_ious(
    step: str,
    cams: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_valid: torch.Tensor,
    thresholds: np.ndarray,
    reproduce_wsol_boxes: bool = False,
) -> torch.Tensor:
    """MaxBoxAccV2's best IoU per CAM and threshold ``[B, T]`` float64 on the CAMs' device,
    with the resolved ``step`` "torch" or "triton" (`sweep_torch`, `sweep_triton`)."""
    if step == "triton":
        from cam_cli.evaluation.maxboxacc.sweep_triton import best_ious_triton as best_ious
    else:
        from cam_cli.evaluation.maxboxacc.sweep_torch import best_ious_torch as best_ious
    return best_ious(cams, gt_boxes, gt_valid, thresholds, reproduce_wsol_boxes)
