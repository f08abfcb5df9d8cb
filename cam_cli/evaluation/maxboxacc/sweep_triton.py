"""MaxBoxAccV2's sweep in one Triton launch: `sweep_torch.best_ious_torch` without the
per-mask arrays.

The torch sweep labels 8 images x 100 thresholds of masks at a time with the torch labelling (about
1,240 GB of memory traffic per 256 images, counted by `scripts/benchmarks/bench_box_traffic.py`),
and waits for the device inside every chunk. Here a fixed number of programs share the (image,
threshold) masks; each labels one mask at a time in its own scratch slice (block labels and four
extents per 2x2 block, `boxes.ccl_kernels.sweep`), computing the mask on the fly from the 8-bit map
and the threshold's cut, and writes only the best IoU. Counted traffic for 256 images x 100
thresholds at 224x224: the quantisation's ATen ops (the same as the torch sweep's, under 1 GB), the
8-bit maps (13 MB), the scratch (5 x 12,544 int32 per program: 257 MB read and written for 1,024
programs) and the ``[B, T]`` result. Nothing waits for the device.

Equal to `best_ious_torch` value for value: the same quantisation (`sweep_torch.quantise`),
the same components as scipy's (tested), the same float64 IoU arithmetic.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from cam_cli.boxes.components_triton import block_size, launch
from cam_cli.evaluation.maxboxacc.sweep_torch import quantise
from cam_cli.runtime.streams import to_device

PROGRAMS_PER_SM = 8  # programs in flight per streaming multiprocessor on CUDA


@torch.library.custom_op("cam_cli::maxboxacc_sweep", mutates_args=("scratch", "best"))
def _sweep(
    quantised: Tensor,
    cuts: Tensor,
    gt: Tensor,
    valid: Tensor,
    scratch: Tensor,
    best: Tensor,
    wsol: bool,
) -> None:
    images, height, width = quantised.shape
    bh, bw = -(-height // 2), -(-width // 2)
    programs = scratch.shape[0]
    launch(
        "sweep", (programs,), quantised, cuts, gt, valid, scratch, best, best.numel(),
        best.shape[1], height, width, bh, bw, gt.shape[1], programs, wsol=wsol, BLOCK=block_size(),
    )  # fmt: skip


def _programs(masks: int, device: torch.device) -> int:
    if device.type == "cuda":
        processors = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(masks, PROGRAMS_PER_SM * processors))
    return max(1, min(masks, 4))  # the interpreter runs programs one after another


def best_ious_triton(
    cams: Tensor,
    gt_boxes: Tensor,
    gt_valid: Tensor,
    thresholds: np.ndarray,
    reproduce_wsol_boxes: bool = False,
) -> Tensor:
    """`MaxBoxAccV2.best_ious` of every CAM of ``[B, H, W]`` -> ``[B, T]`` float64, as
    `sweep_torch.best_ious_torch` (same arguments, same values)."""
    device = cams.device
    t = to_device(torch.tensor(np.asarray(thresholds, dtype=np.float64)), device)
    images, height, width = cams.shape
    best = torch.zeros((images, len(t)), dtype=torch.float64, device=device)
    if images == 0 or len(t) == 0 or height * width == 0:
        return best
    quantised, cuts = quantise(cams, t)
    programs = _programs(best.numel(), device)
    per_map = -(-height // 2) * -(-width // 2)
    scratch = torch.empty((programs, 5, per_map), dtype=torch.int32, device=device)
    _sweep(
        quantised.contiguous(),
        cuts.contiguous(),
        gt_boxes.to(torch.int32).contiguous(),
        gt_valid.to(torch.int32).contiguous(),
        scratch,
        best,
        bool(reproduce_wsol_boxes),
    )
    return best
