"""The paper's CAM-to-box step as union-find kernels in Triton: `components_torch` at memory speed.

The torch step (`boxes.components_torch`) labels by repeated full-grid window minimums over int32
grids and int64 pixel lists: about 98 GB of memory traffic per batch of 1,280 maps of 224x224
(`scripts/benchmarks/bench_box_traffic.py`), 29 ms at H100 bandwidth, 2.5 times the forward, and it
waits for the device inside (``nonzero``, ``torch.equal``). Here the traffic is a few passes over
the maps' own size and nothing waits: every output has a size known before the launch.

The contract is `boxes.components.boxes_from_cams`' (inclusive boxes, strictly above
``threshold * max``, 8-connectivity, the largest component wins and a tie goes to the one whose
first pixel comes first in raster order, the whole-map box for degenerate maps and empty masks);
the tests compare with scipy map for map on adversarial families and the real sample.

Design (the block-based union-find of Allegretti et al., with Playne and Hawick's lock-free
union): the masks are cut into 2x2 blocks, since all foreground pixels of a 2x2 block are
8-connected to each other, so labels are per block (a quarter of the pixels). Five launches:

1. ``init``: per block a 4-bit code of its foreground pixels (``map > threshold_of_map``), and
   its label: its own index, or -1 when empty.
2. ``merge``: each block is joined to its left, upper-left, upper and upper-right neighbours when
   a foreground pixel of each touches; the union links the larger root under the smaller with
   ``atomic_min`` and retries when another thread got there first, so every component ends with
   its smallest block index as root, whatever the order of the threads.
3. ``flatten``: each block points straight at its root; the root gathers the component's area
   (``atomic_add`` of popcounts) and its first pixel in raster order (``atomic_min`` of
   ``y * W + x``: block order is not pixel order, and the tie rule is on pixels).
4. ``winner``: per map, the largest area, then the earliest first pixel (``atomic_max`` of one
   int64 key).
5. ``extent``: the blocks of each map's winning component widen its box (``atomic_min`` /
   ``atomic_max`` of pixel rows and columns).

Memory traffic, counted as `scripts/benchmarks/bench_box_traffic.py` counts it (each launch is a
``cam_cli::`` custom op, so the count sees every tensor it takes and writes), for 1,280 maps of
224x224 float32 (the maps are 257 MB; block arrays int32 [1280, 112, 112] are 64 MB, the codes
16 MB): the per-map min and max read the maps (257 MB); init reads them again and writes codes
and labels (337 MB); merge reads codes and labels and writes labels (144 MB); flatten reads
codes and labels, writes labels, and fills and writes area and first pixel (528 MB); winner
reads labels, area and first pixel (192 MB); extent reads labels, codes and first pixel
(144 MB): about 1.6 GB in all, against 98 GB for the torch step.

The kernels are textbook lock-free union-find; parents are read with volatile loads, since other
threads write them meanwhile. On the CPU Triton runs them only under ``TRITON_INTERPRET=1``,
which executes programs one after another (each program's lanes atomically in lane order): that
proves the logic and the exactness, not the concurrency. So the first use on a device runs a
self-check against the torch step (`triton_problem`), and `box_backend` ``auto`` takes triton only
where that passes.
"""

from __future__ import annotations

import functools
import os
import threading
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from cam_cli.boxes.components_torch import boxes_from_cams_torch, cam_stack

BLOCK = 1024  # blocks (of 2x2 pixels) per program on a GPU
INTERPRETED_BLOCK = 4096  # under TRITON_INTERPRET: fewer, wider programs (numpy per program)
_MAX_BLOCKS = 2**30  # block indices stay int32; bigger stacks run in chunks of maps


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def _kernels() -> dict:
    """The Triton kernels (`ccl_kernels`) by name, imported at first use (this module needs no
    Triton); every launch goes through `launch`."""
    from cam_cli.boxes import ccl_kernels

    return vars(ccl_kernels)


# The interpreter patches `triton.language` for the duration of each launch, so two launches at
# once (two decode lanes boxing two batches) break each other ("Did you forget to add
# @triton.jit?"). Interpreted launches are taken one at a time; compiled ones run as they come.
_INTERPRETER_LOCK = threading.Lock()


def launch(kernel: str, grid: tuple[int, ...], *args: Any, **kwargs: Any) -> None:
    """The one place a kernel of `ccl_kernels` is launched, here and by
    `evaluation.maxboxacc.sweep_triton`: ``kernel[grid](*args, **kwargs)``, serialised under
    ``TRITON_INTERPRET=1`` (see above)."""
    with _INTERPRETER_LOCK if _interpreting() else nullcontext():
        _kernels()[kernel][grid](*args, **kwargs)


def block_size() -> int:
    """Blocks per program: the interpreter's cost is per program and per operation, not per
    element, so it runs wider ones (the tests also run narrow ones, to cross many chunks)."""
    return INTERPRETED_BLOCK if _interpreting() else BLOCK


def _grid(total: int) -> tuple[int]:
    return (-(-total // block_size()),)


# Each launch is a custom op, so that a TorchDispatchMode (the traffic count) sees it with every
# tensor it takes and writes.


@torch.library.custom_op("cam_cli::ccl_init", mutates_args=("codes", "labels"))
def _init(maps: Tensor, cut: Tensor, codes: Tensor, labels: Tensor, bh: int, bw: int) -> None:
    total = labels.numel()
    launch(
        "init",
        _grid(total),
        maps,
        cut,
        codes,
        labels,
        total,
        maps.shape[1],
        maps.shape[2],
        bh,
        bw,
        BLOCK=block_size(),
    )


@torch.library.custom_op("cam_cli::ccl_merge", mutates_args=("labels",))
def _merge(codes: Tensor, labels: Tensor, bh: int, bw: int) -> None:
    total = labels.numel()
    launch("merge", _grid(total), codes, labels, total, bh, bw, BLOCK=block_size())


@torch.library.custom_op("cam_cli::ccl_flatten", mutates_args=("labels", "area", "first"))
def _flatten(
    codes: Tensor, labels: Tensor, area: Tensor, first: Tensor, width: int, bh: int, bw: int
) -> None:
    total = labels.numel()
    launch(
        "flatten",
        _grid(total),
        codes,
        labels,
        area,
        first,
        total,
        width,
        bh,
        bw,
        BLOCK=block_size(),
    )


@torch.library.custom_op("cam_cli::ccl_winner", mutates_args=("best",))
def _winner(
    labels: Tensor, area: Tensor, first: Tensor, best: Tensor, pixels: int, bh: int, bw: int
) -> None:
    total = labels.numel()
    launch(
        "winner", _grid(total), labels, area, first, best, total, pixels, bh, bw, BLOCK=block_size()
    )


@torch.library.custom_op("cam_cli::ccl_extent", mutates_args=("box",))
def _extent(
    codes: Tensor,
    labels: Tensor,
    first: Tensor,
    best: Tensor,
    box: Tensor,
    width: int,
    pixels: int,
    bh: int,
    bw: int,
) -> None:
    total = labels.numel()
    launch(
        "extent",
        _grid(total),
        codes,
        labels,
        first,
        best,
        box,
        total,
        width,
        pixels,
        bh,
        bw,
        BLOCK=block_size(),
    )


def _largest_boxes(maps: Tensor, cut: Tensor) -> Tensor:
    """Box ``[N, 4]`` int64 of the largest component of ``maps > cut[:, None, None]``, the whole
    map where nothing is above the cut."""
    n, height, width = maps.shape
    bh, bw = -(-height // 2), -(-width // 2)
    device = maps.device
    codes = torch.empty((n, bh, bw), dtype=torch.uint8, device=device)
    labels = torch.empty((n, bh, bw), dtype=torch.int32, device=device)
    _init(maps, cut, codes, labels, bh, bw)
    _merge(codes, labels, bh, bw)
    pixels = height * width
    area = torch.zeros((n, bh, bw), dtype=torch.int32, device=device)
    first = torch.full((n, bh, bw), pixels, dtype=torch.int32, device=device)
    _flatten(codes, labels, area, first, width, bh, bw)
    best = torch.zeros(n, dtype=torch.int64, device=device)
    _winner(labels, area, first, best, pixels, bh, bw)
    box = torch.tensor([width, height, -1, -1], dtype=torch.int32, device=device).repeat(n, 1)
    _extent(codes, labels, first, best, box, width, pixels, bh, bw)
    return torch.where((best > 0).view(n, 1), box.long(), _whole_maps(n, height, width, device))


def _whole_maps(n: int, height: int, width: int, device: torch.device) -> Tensor:
    """The whole-map box ``[n, 4]`` int64: the box of a map with nothing above its cut."""
    whole = torch.tensor([0, 0, width - 1, height - 1], dtype=torch.int64, device=device)
    return whole.expand(n, 4)


def boxes_from_cams_triton(cams: Tensor, threshold: float = 0.2) -> Tensor:
    """The paper's box for each CAM of a stack ``[N, H, W]``: ``[N, 4]`` int64 on its device.

    Equal to `cam_cli.boxes.components.boxes_from_cams` on the same values, as
    `components_torch.boxes_from_cams_torch` is: bfloat16 and float16 maps are compared in
    float32, float64 stays float64, ``threshold * max`` is computed in the maps' dtype.
    """
    cams = cam_stack(cams)
    n, height, width = cams.shape
    if cams.numel() == 0:
        return _whole_maps(n, height, width, cams.device).clone()
    cams = cams.contiguous()
    floor, peak = torch.aminmax(cams.view(n, -1), dim=1)
    cut = float(threshold) * peak
    # degenerate maps (max <= 0, or constant) have no object: nothing is above an infinite cut
    cut = torch.where((peak <= 0) | (peak == floor), torch.inf, cut)
    return _in_chunks(cams, cut)


def boxes_from_masks_triton(masks: Tensor) -> Tensor:
    """Box of the largest 8-connected component of each mask ``[N, H, W]`` -> ``[N, 4]`` int64,
    as `components_torch.boxes_from_masks_torch`. An empty mask gets the whole map."""
    if masks.ndim != 3:
        raise ValueError(f"expected a stack of masks [N, H, W], got shape {tuple(masks.shape)}")
    n, height, width = masks.shape
    if masks.numel() == 0:
        return _whole_maps(n, height, width, masks.device).clone()
    values = (masks if masks.dtype == torch.bool else masks != 0).to(torch.float32).contiguous()
    cut = torch.full((n,), 0.5, dtype=torch.float32, device=masks.device)
    return _in_chunks(values, cut)


def _in_chunks(maps: Tensor, cut: Tensor) -> Tensor:
    """`_largest_boxes` over stacks small enough for int32 block indices (one call for any batch
    a GPU holds: 2**30 blocks are 4 G pixels)."""
    n, height, width = maps.shape
    per_map = -(-height // 2) * -(-width // 2)
    step = max(1, _MAX_BLOCKS // per_map)
    if n <= step:
        return _largest_boxes(maps, cut)
    return torch.cat(
        [_largest_boxes(maps[i : i + step], cut[i : i + step]) for i in range(0, n, step)]
    )


_checked: dict[str, str | None] = {}


def triton_problem(device: torch.device) -> str | None:
    """None when the triton box backend runs on ``device`` here, else why not (one line).

    CUDA with Triton, or any device under ``TRITON_INTERPRET=1`` (how the tests run it on the
    CPU). The first call per device boxes a small adversarial batch and compares with the
    torch step: a compile error or a different box is the reason, never an exception."""
    device = torch.device(device)
    key = str(device)
    if key in _checked:
        return _checked[key]
    if device.type != "cuda" and not _interpreting():
        problem: str | None = (
            f"Triton runs on CUDA devices, not on {device} (TRITON_INTERPRET=1 aside)"
        )
    else:
        try:
            import triton  # noqa: F401

            problem = _self_check(device)
        except Exception as error:  # noqa: BLE001 - any failure means: not here
            problem = (str(error).strip().splitlines() or [type(error).__name__])[0]
    _checked[key] = problem
    return problem


def _self_check(device: torch.device) -> str | None:
    """A spiral, a checkerboard, ties and noise, boxed by both steps: None if they agree."""
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand((6, 37, 45), generator=generator)
    maps[1] = 0.0
    maps[1, ::2, ::2] = 1.0  # dots: all ties
    maps[2] = ((torch.arange(37)[:, None] + torch.arange(45)[None]) % 2).float()  # diagonals
    maps[3] = 0.0
    maps[3, 1:36:4, :] = 1.0  # stripes
    maps[3, 1:36, 44] = 1.0  # joined on the right: a comb
    maps[4] = 0.5  # constant
    maps = maps.to(device)
    got = boxes_from_cams_triton(maps, 0.2)
    want = boxes_from_cams_torch(maps, 0.2)
    if not torch.equal(got.cpu(), want.cpu()):
        return "its self-check gave other boxes than the torch step"
    return None
