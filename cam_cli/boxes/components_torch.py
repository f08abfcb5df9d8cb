"""The paper's CAM-to-box step in plain, batched PyTorch: `boxes.components` without the host.

`cam_cli.boxes.components.boxes_from_cams` labels with scipy, so the maps must first be copied to
the host (N*H*W floats per batch) and labelled there. The maps are computed on the accelerator;
here the whole step runs where they are, and only the ``[N, 4]`` boxes need to leave it.

The contract is exact equality with `cam_cli.boxes.components.boxes_from_cams`, whose docstring
holds the conventions (inclusive boxes, strictly above ``threshold * max``, 8-connectivity, the
largest component wins and a tie goes to the first one in raster order, whole-map box for
degenerate maps and empty masks). Nothing here is approximate: the tests compare the two on
thousands of maps and on adversarial masks (spirals, snakes, mazes, checkerboards).

Connected components without a union-find. The foreground pixels of the stack are numbered in
raster order (``nonzero``); every pixel starts as its own root, and each iteration

1. takes the minimum root over the pixel's 3x3 window, on a padded grid whose background holds a
   sentinel larger than every root (so it never wins, and no window spans two maps),
2. *hooks*: offers that minimum to the root the pixel points at (``scatter_reduce`` amin), so a
   whole tree of pixels moves at once instead of one pixel per iteration, and
3. *jumps* twice: replaces each root by the root of its root (``R = R[R]``).

A root is always a pixel of the same component that is not later in raster order, so roots only
decrease, and the first pixel of a component stays its own root. The loop stops when the window
minimum changes no root: then each component has one root, its first pixel, which makes the tie
rule free (of two equal components, the first in raster order has the smaller root). Without
step 2 a one-pixel-wide spiral over 224x224 takes hundreds of iterations, the label crawling
along it; with it, 8 (see the tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def component_roots(masks: Tensor) -> tuple[Tensor, Tensor, int]:
    """8-connected components of a mask stack ``[N, H, W]``, never joined across maps.

    Returns ``(at, roots, iterations)``. ``at [P]`` is the flat position of each foreground
    pixel in the stack padded by one pixel on every side (``[N, H+2, W+2]``), in raster order;
    ``roots [P]`` is, for each of them, the index into ``at`` of the first pixel of its
    component; ``iterations`` counts window-minimum passes, the last of which changed nothing
    (returned so that tests and benchmarks can watch convergence).

    Only the window minimum runs over the whole grid; hooking and jumping run over the
    foreground pixels alone, which are a fraction of it in a thresholded CAM.
    """
    n, height, width = masks.shape
    device = masks.device
    at = F.pad(masks, (1, 1, 1, 1)).view(-1).nonzero().squeeze(1)
    count = at.numel()
    roots = torch.arange(count, device=device)
    if count == 0:
        return at, roots, 0
    # The grid only holds roots (< count) and the sentinel (count): int32 halves the traffic of
    # the window minimum. Roots used as indices stay int64, which every PyTorch version takes.
    small = torch.int32 if count < torch.iinfo(torch.int32).max else torch.int64
    grid = torch.full((n, height + 2, width + 2), count, dtype=small, device=device)
    # All buffers are allocated once: on the CPU a fresh tensor of this size per operation
    # costs more in page faults than the operation itself.
    rows = torch.empty((n, height + 2, width), dtype=small, device=device)
    least_padded = torch.empty_like(grid)
    least = least_padded[:, 1:-1, 1:-1]
    offered = torch.empty(count, dtype=small, device=device)
    roots_small = torch.empty(count, dtype=small, device=device)
    offered_long = torch.empty(count, dtype=torch.int64, device=device)
    table = torch.empty(count, dtype=torch.int64, device=device)

    # Comparing on an accelerator waits for it; there one comparison every two iterations
    # costs at most one idle iteration, which is cheap next to a wait per iteration.
    check_every = 1 if device.type == "cpu" else 2
    iterations = 0
    while True:
        iterations += 1
        roots_small.copy_(roots)
        grid.view(-1).index_copy_(0, at, roots_small)
        # 3x3 minimum, separable: rows of three, then columns of three.
        torch.minimum(grid[:, :, :-2], grid[:, :, 1:-1], out=rows)
        torch.minimum(rows, grid[:, :, 2:], out=rows)
        torch.minimum(rows[:, :-2], rows[:, 1:-1], out=least)
        torch.minimum(least, rows[:, 2:], out=least)
        torch.index_select(least_padded.view(-1), 0, at, out=offered)
        if iterations % check_every == 0 and torch.equal(offered, roots_small):
            return at, roots, iterations
        offered_long.copy_(offered)
        table.copy_(offered_long)
        table.scatter_reduce_(0, roots, offered_long, reduce="amin")
        # Two jumps per hook: measured 6 iterations instead of 9 on CAM-like maps, 8 instead
        # of 15 on a spiral, for less time in all; a third jump no longer paid for itself.
        torch.index_select(table, 0, table, out=roots)
        table.copy_(roots)
        torch.index_select(table, 0, table, out=roots)


def boxes_from_masks_torch(masks: Tensor) -> Tensor:
    """Box of the largest 8-connected component of each mask ``[N, H, W]`` -> ``[N, 4]`` int64.

    The mask-level half of `boxes_from_cams_torch`, for callers that segment differently (as
    `boxes.components.boxes_from_masks` is for the scipy path). An empty mask gets the whole map.
    """
    if masks.ndim != 3:
        raise ValueError(f"expected a stack of masks [N, H, W], got shape {tuple(masks.shape)}")
    masks = masks if masks.dtype == torch.bool else masks != 0
    n, height, width = masks.shape
    device = masks.device
    whole = torch.tensor([0, 0, width - 1, height - 1], dtype=torch.int64, device=device)
    if masks.numel() == 0:
        return whole.expand(n, 4).clone()

    at, roots, _ = component_roots(masks)
    padded_width, padded_area = width + 2, (height + 2) * (width + 2)
    map_of = at // padded_area
    # One key per component orders by size, then by the position of its first pixel (earlier
    # wins: `at` follows raster order within a map); keys are unique within a map, so the
    # winner never depends on how a reduction breaks ties. Pixels that are not a root get
    # keys < 0, roots > 0.
    sizes = torch.bincount(roots, minlength=at.numel())
    key = sizes * (n * padded_area) - at
    best = torch.zeros(n, dtype=torch.int64, device=device)
    best.scatter_reduce_(0, map_of, key, reduce="amax")  # stays 0 for a map with no pixel
    member = key.index_select(0, roots) == best.index_select(0, map_of)

    def extent(values: Tensor, none: int) -> tuple[Tensor, Tensor]:
        """Least and greatest of ``values`` over the winning component of each map."""
        low = torch.full((n,), none, dtype=torch.int64, device=device)
        high = torch.full((n,), -1, dtype=torch.int64, device=device)
        low.scatter_reduce_(0, map_of, torch.where(member, values, none), reduce="amin")
        high.scatter_reduce_(0, map_of, torch.where(member, values, -1), reduce="amax")
        return low, high

    # The first and last pixels of a component (in raster order) are on its top and bottom rows.
    first, last = extent(at, n * padded_area)
    xmin, xmax = extent(at % padded_width - 1, padded_width)
    ymin = first % padded_area // padded_width - 1
    ymax = last % padded_area // padded_width - 1
    boxes = torch.stack([xmin, ymin, xmax, ymax], dim=1)
    return torch.where((best > 0).view(n, 1), boxes, whole)


def cam_stack(cams: Tensor) -> Tensor:
    """``cams`` as the device box backends compare them: a stack ``[N, H, W]`` of float32 or
    float64 maps (bfloat16 and float16 in float32, as their exact values); anything else is
    refused (ValueError for the shape, TypeError for integer maps)."""
    if cams.ndim != 3:
        raise ValueError(f"expected a stack of maps [N, H, W], got shape {tuple(cams.shape)}")
    if not cams.is_floating_point():
        raise TypeError(f"expected floating-point maps, got {cams.dtype}")
    return cams if cams.dtype in (torch.float32, torch.float64) else cams.float()


def boxes_from_cams_torch(cams: Tensor, threshold: float = 0.2) -> Tensor:
    """The paper's box for each CAM of a stack ``[N, H, W]``: ``[N, 4]`` int64 on its device.

    Equal to `cam_cli.boxes.components.boxes_from_cams` on the same values. bfloat16 and float16
    maps are compared in float32, so they give exactly the boxes of their float32 values;
    float64 stays float64, as numpy keeps it.
    """
    cams = cam_stack(cams)
    if cams.numel() == 0:
        return boxes_from_masks_torch(torch.zeros(cams.shape, dtype=torch.bool, device=cams.device))
    peak = cams.amax(dim=(1, 2), keepdim=True)
    floor = cams.amin(dim=(1, 2), keepdim=True)
    # `threshold * peak` is computed in the maps' dtype, as numpy computes it (the Python float
    # is rounded to that dtype first), so a pixel exactly at the threshold is out in both.
    masks = cams > float(threshold) * peak
    masks &= ~((peak <= 0) | (peak == floor))  # degenerate maps: no object, whole-map box
    return boxes_from_masks_torch(masks)


def component_boxes_torch(masks: Tensor) -> tuple[Tensor, Tensor]:
    """Boxes of *all* 8-connected components of a mask stack (for MaxBoxAccV2), on its device.

    Returns ``(map_index [n], boxes [n, 4])`` as `boxes.components.component_boxes` does, with the
    components of each map in raster order of their first pixel (scipy's label order).
    """
    if masks.ndim != 3:
        raise ValueError(f"expected a stack of masks [N, H, W], got shape {tuple(masks.shape)}")
    masks = masks if masks.dtype == torch.bool else masks != 0
    n, height, width = masks.shape
    device = masks.device
    if masks.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=device), torch.zeros(
            (0, 4), dtype=torch.int64, device=device
        )
    at, roots, _ = component_roots(masks)
    padded_width, padded_area = width + 2, (height + 2) * (width + 2)
    components = torch.unique(roots)  # sorted: raster order of each component's first pixel
    slot = torch.searchsorted(components, roots)  # each pixel's component, 0..C-1
    count = components.numel()

    def extent(values: Tensor) -> tuple[Tensor, Tensor]:
        low = torch.full((count,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=device)
        high = torch.full((count,), -1, dtype=torch.int64, device=device)
        low.scatter_reduce_(0, slot, values, reduce="amin")
        high.scatter_reduce_(0, slot, values, reduce="amax")
        return low, high

    xmin, xmax = extent(at % padded_width - 1)
    ymin, ymax = extent(at % padded_area // padded_width - 1)
    map_index = at.index_select(0, components) // padded_area
    return map_index, torch.stack([xmin, ymin, xmax, ymax], dim=1)
