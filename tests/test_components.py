"""The CAM-to-box step, numpy/scipy and PyTorch, against hand-made maps, and the PyTorch one
against the scipy reference.

`cam_cli.boxes.components_torch` must give exactly the boxes of `cam_cli.boxes.components`: the
hand-made maps pin the conventions with answers visible in the test, the families below compare
the two on thousands of random maps and on masks built to defeat label propagation (one-pixel-
wide spirals, snakes and mazes, where a label has to travel tens of thousands of pixels).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES
from scipy import ndimage

from cam_cli.boxes.components import (
    boxes_from_cams,
    boxes_from_masks,
    component_boxes,
    scale_boxes,
)
from cam_cli.boxes.components_torch import (
    boxes_from_cams_torch,
    boxes_from_masks_torch,
    component_roots,
)

EIGHT = np.ones((3, 3), dtype=bool)


def maps(*rows_per_map: list[str]) -> np.ndarray:
    """Draw maps with digits: '0'..'9' are values."""
    return np.array([[[float(c) for c in row] for row in m] for m in rows_per_map])


def torch_boxes(cams: np.ndarray, device: str, threshold: float = 0.2) -> list:
    got = boxes_from_cams_torch(torch.from_numpy(cams).to(device), threshold)
    assert got.dtype == torch.int64
    assert got.device.type == device
    return got.cpu().tolist()


def mask_boxes(masks: np.ndarray, device: str) -> list:
    return boxes_from_masks_torch(torch.from_numpy(masks).to(device)).cpu().tolist()


def assert_same_as_reference(cams: np.ndarray, device: str, threshold: float = 0.2) -> None:
    want = boxes_from_cams(cams, threshold)
    got = torch_boxes(cams, device, threshold)
    assert got == want.tolist()


def assert_masks_same_as_reference(masks: np.ndarray, device: str) -> None:
    assert mask_boxes(masks, device) == boxes_from_masks(masks).tolist()


# ---------------------------------------------------------------- hand-made maps
# One case table for both backends: every case runs on `boxes.components` (numpy/scipy) and on
# `boxes.components_torch` (on the CPU, and on CUDA where there is one).

BACKENDS = ["numpy", *DEVICES]


def backend_boxes(cams: np.ndarray, backend: str, threshold: float = 0.2) -> list:
    if backend == "numpy":
        return boxes_from_cams(cams, threshold).tolist()
    return torch_boxes(cams, backend, threshold)


def backend_mask_boxes(masks: np.ndarray, backend: str) -> list:
    if backend == "numpy":
        return boxes_from_masks(masks).tolist()
    return mask_boxes(masks, backend)


def _ring(inner: float) -> np.ndarray:
    # threshold 0.2 * 5 = 1.0: 1s are exactly at the threshold, so not "above" it
    cam = maps(["11111", "10001", "10501", "10001", "11111"])
    cam[cam == 1] = inner
    return cam


def _negative_with_one_positive_pixel() -> np.ndarray:
    cam = -maps(["5555", "5115", "5555"])
    cam[0, 0, 0] = 1.0  # one positive pixel: not degenerate, and only it is above 0.5
    return cam


def _wide() -> np.ndarray:
    cam = np.zeros((1, 7, 13))
    cam[0, 1:3, 9:12] = 5.0  # rows 1..2, columns 9..11
    cam[0, 5, 0] = 9.0
    return cam


# the blob of map A touches the bottom edge, the blob of map B the top edge: stacked they would be
# neighbours, but components never cross maps; in D the last column of a row and the first of the
# next are neighbours in the flat raster order, never in the map
_A, _B = maps(["000", "000", "090"])[0], maps(["090", "090", "000"])[0]
_C, _D = np.zeros((3, 3)), maps(["009", "900", "000"])[0]

CAM_CASES = [  # (maps, threshold, boxes)
    pytest.param(
        maps(["000000", "090000", "000000", "000550", "000550", "000550"]), 0.2, [[3, 3, 4, 5]],
        id="the 2x3 blob of 5s is larger than the 1-pixel peak: it wins",
    ),
    pytest.param(
        maps(["9000", "0900", "0090", "0000"]), 0.2, [[0, 0, 2, 2]],
        id="diagonal neighbours join (8-connectivity)",
    ),
    pytest.param(
        maps(["0000", "0000", "0009", "0009"]), 0.2, [[3, 2, 3, 3]],
        id="a component on the border",
    ),
    pytest.param(_ring(1.0), 0.2, [[2, 2, 2, 2]], id="a pixel exactly at the threshold is out"),
    pytest.param(
        _ring(1.0001), 0.2, [[0, 0, 4, 4]],
        id="just above the threshold: the ring joins and is the largest component",
    ),
    pytest.param(
        maps(["0000", "0990", "0000", "9900"]), 0.2, [[1, 1, 2, 1]],
        id="a tie goes to the first component in raster order",
    ),
    pytest.param(
        maps(["0099", "0000", "9900", "0000"]), 0.2, [[2, 0, 3, 0]],
        id="a tie: the later component is further left, raster order still wins",
    ),
    pytest.param(np.full((1, 3, 5), 2.0), 0.2, [[0, 0, 4, 2]], id="a constant map: whole map"),
    pytest.param(
        -np.arange(15, dtype=float).reshape(1, 3, 5) - 1, 0.2, [[0, 0, 4, 2]],
        id="a negative map: whole map",
    ),
    pytest.param(np.zeros((1, 3, 5)), 0.2, [[0, 0, 4, 2]], id="a zero map: whole map"),
    pytest.param(
        # with threshold 2 and max -1 the cut is at -2: the -1s would be "above" it, but a map
        # with nothing positive has no object (for thresholds in [0, 1] the mask is empty anyway)
        -maps(["5555", "5115", "5555"]), 2.0, [[0, 0, 3, 2]],
        id="a negative map is degenerate even where the threshold would keep pixels",
    ),
    pytest.param(
        _negative_with_one_positive_pixel(), 0.5, [[0, 0, 0, 0]],
        id="one positive pixel: not degenerate",
    ),
    pytest.param(
        maps(["000", "090", "000", "000"]), 1.0, [[0, 0, 2, 3]],
        id="nothing is strictly above the max itself: whole map",
    ),
    pytest.param(
        np.stack([_A, _B, _C, _A]), 0.2, [[1, 2, 1, 2], [1, 0, 1, 1], [0, 0, 2, 2], [1, 2, 1, 2]],
        id="a batch of maps is labelled independently",
    ),
    pytest.param(
        np.stack([_A, _B, _C, _A, _D]), 0.2,
        [[1, 2, 1, 2], [1, 0, 1, 1], [0, 0, 2, 2], [1, 2, 1, 2], [2, 0, 2, 0]],
        id="a batch of maps: row ends are not neighbours",
    ),
    pytest.param(_wide(), 0.2, [[9, 1, 11, 2]], id="maps wider than tall keep x and y apart"),
    pytest.param(
        _wide().transpose(0, 2, 1), 0.2, [[1, 9, 2, 11]], id="a strided view, taller than wide"
    ),
]  # fmt: skip

_INTEGER_MASKS = maps(["0000", "0220", "0000", "3300", "0300"]).astype(np.uint8)
MASK_CASES = [  # (masks, boxes)
    pytest.param(
        np.zeros((2, 4, 3), dtype=bool), [[0, 0, 2, 3]] * 2, id="empty masks get the whole map"
    ),
    pytest.param(_INTEGER_MASKS, [[0, 3, 1, 4]], id="integer masks: nonzero is foreground"),
    pytest.param(_INTEGER_MASKS > 0, [[0, 3, 1, 4]], id="the same masks as booleans"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("cams", "threshold", "want"), CAM_CASES)
def test_hand_made_maps(backend, cams, threshold, want):
    assert backend_boxes(cams, backend, threshold) == want


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("masks", "want"), MASK_CASES)
def test_hand_made_masks(backend, masks, want):
    assert backend_mask_boxes(masks, backend) == want


# numpy only: all component boxes per map, scaling to the image's pixels, scikit-image


def test_all_component_boxes_per_map():
    masks = maps(["1001", "0000", "1100"], ["0000", "0000", "0000"], ["0110", "0000", "0000"]) > 0
    map_index, boxes = component_boxes(masks)
    assert map_index.tolist() == [0, 0, 0, 2]
    assert boxes.tolist() == [[0, 0, 0, 0], [3, 0, 3, 0], [0, 2, 1, 2], [1, 0, 2, 0]]


def test_scale_boxes_to_original_pixels():
    # a 4x4 grid onto an 8x6 image: pixel x covers [2x, 2x+2) horizontally, [1.5y, 1.5y+1.5)
    boxes = np.array([[0, 0, 3, 3], [1, 1, 1, 1], [2, 2, 3, 3]])
    sizes = np.array([[8, 6]] * 3)
    assert scale_boxes(boxes, (4, 4), sizes).tolist() == [
        [0, 0, 7, 5],  # the whole grid -> the whole image
        [2, 1, 3, 2],  # y: [1.5, 3.0) -> rows 1..2
        [4, 3, 7, 5],  # y: [3.0, 6.0) -> rows 3..5
    ]


def test_random_maps_agree_with_scikit_image():
    """The batched path against a per-map reference: skimage label + regionprops, largest area,
    first in raster order on a tie (skimage numbers components in raster order too)."""
    from skimage.measure import label, regionprops

    rng = np.random.default_rng(7)
    for trial in range(20):
        size = int(rng.integers(3, 9))
        coarse = rng.standard_normal((12, size, size))
        cams = np.kron(coarse, np.ones((7, 7)))[:, : 40 + trial, : 45 - trial]  # blocky maps
        cams += 0.3 * rng.standard_normal(cams.shape)
        threshold = float(rng.choice([0.0, 0.2, 0.5]))
        got = boxes_from_cams(cams, threshold)
        for cam, box in zip(cams, got, strict=True):
            if cam.max() <= 0:
                assert box.tolist() == [0, 0, cam.shape[1] - 1, cam.shape[0] - 1]
                continue
            regions = regionprops(label(cam > threshold * cam.max(), connectivity=2))
            biggest = max(regions, key=lambda r: (r.area, -r.label))
            y0, x0, y1, x1 = biggest.bbox
            assert box.tolist() == [x0, y0, x1 - 1, y1 - 1]


def test_no_maps_no_boxes():
    assert boxes_from_cams_torch(torch.zeros(0, 5, 7)).shape == (0, 4)
    assert boxes_from_masks_torch(torch.zeros(0, 5, 7, dtype=torch.bool)).shape == (0, 4)
    assert boxes_from_cams(np.zeros((0, 5, 7))).shape == (0, 4)


def test_a_single_map_or_integer_maps_are_refused():
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        boxes_from_cams_torch(torch.ones(5, 7))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        boxes_from_masks_torch(torch.ones(5, 7, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating"):
        boxes_from_cams_torch(torch.ones(1, 5, 7, dtype=torch.int64))


# ---------------------------------------------------------------- adversarial masks


def spiral(height: int, width: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A one-pixel-wide square spiral from the top-left corner inwards, arms one pixel apart.

    Returns the mask and its pixels in path order.
    """
    mask = np.zeros((height, width), dtype=bool)
    y, x, dy, dx = 0, 0, 0, 1
    mask[0, 0] = True
    path = [(0, 0)]
    turned = False
    while True:
        ny, nx, ay, ax = y + dy, x + dx, y + 2 * dy, x + 2 * dx
        inside = 0 <= ny < height and 0 <= nx < width
        blocked_ahead = 0 <= ay < height and 0 <= ax < width and mask[ay, ax]
        if inside and not mask[ny, nx] and not blocked_ahead:
            y, x, turned = ny, nx, False
            mask[y, x] = True
            path.append((y, x))
        elif turned:
            return mask, path
        else:
            dy, dx, turned = dx, -dy, True


def snake(height: int, width: int) -> np.ndarray:
    """Full rows on every other row, joined alternately at the right and at the left end."""
    mask = np.zeros((height, width), dtype=bool)
    mask[::2] = True
    for k, row in enumerate(range(1, height, 2)):
        mask[row, width - 1 if k % 2 == 0 else 0] = True
    return mask


def maze(height: int, width: int, seed: int) -> np.ndarray:
    """A random perfect maze (a spanning tree of the cells at even coordinates): long,
    branching, winding one-pixel corridors that form one component."""
    rng = np.random.default_rng(seed)
    rows, cols = (height + 1) // 2, (width + 1) // 2
    mask = np.zeros((height, width), dtype=bool)
    seen = np.zeros((rows, cols), dtype=bool)
    stack = [(0, 0)]
    seen[0, 0] = mask[0, 0] = True
    while stack:
        r, c = stack[-1]
        steps = [
            (r + dr, c + dc)
            for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0))
            if 0 <= r + dr < rows and 0 <= c + dc < cols and not seen[r + dr, c + dc]
        ]
        if not steps:
            stack.pop()
            continue
        nr, nc = steps[rng.integers(len(steps))]
        seen[nr, nc] = mask[2 * nr, 2 * nc] = mask[r + nr, c + nc] = True
        stack.append((nr, nc))
    return mask


def checkerboard(height: int, width: int, cell: int = 1) -> np.ndarray:
    y, x = np.indices((height, width))
    return (y // cell + x // cell) % 2 == 0


def one_component(mask: np.ndarray) -> bool:
    return ndimage.label(mask, structure=EIGHT)[1] == 1


def whole(height: int, width: int) -> list[int]:
    return [0, 0, width - 1, height - 1]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(224, 224), (224, 160), (160, 224), (7, 13), (13, 7)])
def test_a_spiral_is_one_component_and_converges_fast(device, shape):
    mask, path = spiral(*shape)
    assert one_component(mask)
    assert len(path) > mask.size // 3
    stack = np.ascontiguousarray(np.stack([mask, mask[::-1], mask[:, ::-1], mask[::-1, ::-1]]))
    assert mask_boxes(stack, device) == [whole(*shape)] * 4
    assert (
        mask_boxes(np.ascontiguousarray(stack.transpose(0, 2, 1)), device)
        == [whole(*shape[::-1])] * 4
    )
    # the same spirals as CAMs, with a ramp along the path so values differ everywhere
    cams = np.zeros(mask.shape)
    ys, xs = np.array(path).T
    cams[ys, xs] = np.linspace(1.0, 2.0, len(path))
    assert_same_as_reference(np.ascontiguousarray(np.stack([cams, cams[::-1, ::-1]])), device)
    # hooking keeps the iterations logarithmic: label propagation with pointer jumping alone
    # needs hundreds on the 224x224 spiral
    _, _, iterations = component_roots(torch.from_numpy(stack).to(device))
    assert iterations <= 12


@pytest.mark.parametrize("device", DEVICES)
def test_a_spiral_cut_in_two(device):
    mask, path = spiral(224, 224)
    cuts = (5, len(path) // 3, len(path) // 2, len(path) - 50)
    stack = np.stack([mask] * len(cuts))
    for broken, at in zip(stack, cuts, strict=True):
        broken[path[at]] = False
        assert ndimage.label(broken, structure=EIGHT)[1] == 2  # a cut, not a corner skipped
    boxes = mask_boxes(stack, device)
    assert boxes == boxes_from_masks(stack).tolist()
    # cut after 5 pixels, in the middle, or 50 before the end: the outer part is the larger (by
    # one pixel, in the middle) and still reaches every border
    assert boxes[0] == boxes[2] == boxes[3] == whole(224, 224)
    # cut after a third: the inner two thirds win, a box strictly inside the map
    x0, y0, x1, y1 = boxes[1]
    assert 0 < x0 < x1 < 223
    assert 0 < y0 < y1 < 223


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(224, 224), (224, 160), (7, 13)])
def test_snakes_and_mazes_are_one_component(device, shape):
    h, w = shape
    snakes = [snake(h, w), snake(w, h).T, snake(h, w)[::-1], snake(w, h).T[:, ::-1]]
    mazes = [maze(h, w, seed) for seed in range(3)]
    for mask in snakes + mazes:
        assert one_component(mask)
    stack = np.ascontiguousarray(np.stack(snakes + mazes))
    maze_box = [0, 0, w - 1 - (w - 1) % 2, h - 1 - (h - 1) % 2]  # cells at even coordinates
    assert mask_boxes(stack, device) == [whole(h, w)] * 4 + [maze_box] * 3
    # a maze's walls are one winding component too (the complement of the corridors)
    walls = ~stack[4:]
    assert_masks_same_as_reference(np.ascontiguousarray(walls), device)
    _, _, iterations = component_roots(torch.from_numpy(stack).to(device))
    assert iterations <= 14


@pytest.mark.parametrize("device", DEVICES)
def test_checkerboards_join_on_diagonals(device):
    boards = [checkerboard(224, 224), checkerboard(224, 160, 2), checkerboard(224, 160)[:, ::-1]]
    for board in boards[1:]:
        assert one_component(board)
    assert mask_boxes(boards[0][None], device) == [whole(224, 224)]
    stack = np.ascontiguousarray(np.stack(boards[1:]))
    # the mirrored board starts at (0, 1): its box still spans the map
    assert mask_boxes(stack, device) == [whole(224, 160)] * 2
    assert_masks_same_as_reference(stack, device)


@pytest.mark.parametrize("device", DEVICES)
def test_stripes_and_dots_are_ties_won_by_the_first(device):
    rows = np.zeros((24, 31), dtype=bool)
    rows[1::2] = True  # 12 equal rows, apart by one
    columns = np.zeros((24, 31), dtype=bool)
    columns[:, 2::2] = True
    dots = np.zeros((24, 31), dtype=bool)
    dots[3::2, 1::2] = True  # one-pixel components only
    stack = np.stack([rows, columns, dots])
    assert mask_boxes(stack, device) == [[0, 1, 30, 1], [2, 0, 2, 23], [1, 3, 1, 3]]
    assert_masks_same_as_reference(stack, device)


def rings(height: int, width: int) -> np.ndarray:
    """Concentric rectangle outlines one pixel apart; each is its own component."""
    y, x = np.indices((height, width))
    depth = np.minimum(np.minimum(y, height - 1 - y), np.minimum(x, width - 1 - x))
    return depth % 2 == 0


@pytest.mark.parametrize("device", DEVICES)
def test_concentric_rings(device):
    mask = rings(224, 160)
    assert ndimage.label(mask, structure=EIGHT)[1] == 40  # depths 0, 2, .., 78
    topless = mask.copy()
    topless[0, :] = False  # the outer ring, 764 pixels, keeps 604: the second (748) wins
    core = mask.copy()
    core[60:164, 30:130] = True  # a filled block joins every ring it crosses (depth 30..78)
    stack = np.stack([mask, topless, core])
    assert mask_boxes(stack, device) == [[0, 0, 159, 223], [2, 2, 157, 221], [30, 30, 129, 193]]
    assert_masks_same_as_reference(stack, device)


@pytest.mark.parametrize("device", DEVICES)
def test_components_touching_every_border(device):
    cross = np.zeros((40, 30), dtype=bool)
    cross[17, :] = cross[:, 11] = True  # touches all four borders
    corners = np.zeros((40, 30), dtype=bool)
    corners[:2, :2] = corners[:2, -2:] = corners[-2:, :2] = corners[-2:, -2:] = True
    frame = np.zeros((40, 30), dtype=bool)
    frame[[0, -1], :] = frame[:, [0, -1]] = True
    frame[5:35, 5:25] = True  # 600 pixels inside beat the 136 of the frame
    stack = np.stack([cross, corners, frame])
    assert mask_boxes(stack, device) == [[0, 0, 29, 39], [0, 0, 1, 1], [5, 5, 24, 34]]
    assert_masks_same_as_reference(stack, device)


@pytest.mark.parametrize("device", DEVICES)
def test_equal_squares_tie_on_raster_order(device):
    rng = np.random.default_rng(3)
    stack = np.zeros((50, 60, 44), dtype=bool)
    for mask in stack:
        # 3x3 squares on a 5-pixel lattice: never touching, all of one size
        for k in rng.choice(12 * 8, size=int(rng.integers(2, 9)), replace=False):
            y, x = divmod(int(k), 8)
            mask[5 * y : 5 * y + 3, 5 * x + 1 : 5 * x + 4] = True
    want = []
    for mask in stack:
        y, x = np.argwhere(mask)[0]  # raster order: the first square's top-left pixel
        want.append([x, y, x + 2, y + 2])
    assert mask_boxes(stack, device) == want
    assert_masks_same_as_reference(stack, device)


# ---------------------------------------------------------------- random maps


def smooth_maps(n: int, coarse: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """CAM-like maps: a coarse random grid, bilinearly upsampled like `upsample_cams`."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.randn(n, 1, coarse, coarse, generator=g)
    return F.interpolate(grid, size=shape, mode="bilinear", align_corners=False)[:, 0].numpy()


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("n", "coarse", "shape"),
    [
        (160, 7, (224, 224)),
        (160, 14, (224, 224)),
        (80, 7, (224, 160)),
        (80, 14, (160, 224)),
        (600, 7, (28, 28)),
        (600, 3, (7, 13)),
        (600, 4, (13, 7)),
    ],
)
def test_random_smooth_maps_agree_with_the_reference(device, n, coarse, shape):
    cams = smooth_maps(n, coarse, shape, seed=n + coarse + shape[1])
    # some maps shifted down until most or all of them is negative (degenerate ones)
    cams[::7] -= np.linspace(0, 3, len(cams[::7]))[:, None, None]
    for threshold in (0.2, 0.0, 0.5):
        assert_same_as_reference(cams, device, threshold)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(32, 32), (17, 45), (64, 48), (1, 50), (50, 1)])
def test_random_sparse_maps_agree_with_the_reference(device, shape):
    """Salt-and-pepper masks from nearly empty to nearly full, around the percolation
    density: many small components, many ties, a few huge tangled ones."""
    rng = np.random.default_rng(shape[0] * shape[1])
    densities = np.repeat([0.01, 0.05, 0.15, 0.3, 0.4, 0.45, 0.6, 0.9], 40)
    on = rng.random((len(densities), *shape)) < densities[:, None, None]
    assert_masks_same_as_reference(on, device)
    # the same as CAMs: every "on" pixel is well above 0.2 * max, every other one at 0
    cams = np.where(on, 0.5 + 0.5 * rng.random(on.shape), 0.0)
    assert_same_as_reference(cams, device)
    assert torch_boxes(cams, device) == mask_boxes(on, device)


# ---------------------------------------------------------------- precision


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_maps_are_compared_in_float32(device, dtype):
    # peak 3: the float32 threshold is 0.6000000238; `level` is 0.6 rounded to the half type,
    # just above it, so in; a threshold rounded to the half type would equal `level`: out
    level = torch.tensor(0.6).to(dtype).item()
    assert level > 0.6
    cam = torch.tensor([[[3.0, 0.0, level, level]]], dtype=dtype)
    assert boxes_from_cams_torch(cam.to(device)).cpu().tolist() == [[2, 0, 3, 0]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_maps_give_the_boxes_of_their_float32_values(device, dtype):
    smooth = torch.from_numpy(smooth_maps(200, 7, (56, 40), seed=11)).to(dtype)
    # few distinct values, so many pixels sit exactly where rounding decides
    levels = torch.tensor([0.0, torch.tensor(0.6).to(dtype).item(), 2.0, 3.0])
    blocky = levels[torch.randint(4, (100, 9, 11), generator=torch.Generator().manual_seed(5))]
    blocky[:, 0, 0] = 3.0
    for stack in (smooth, blocky.to(dtype)):
        exact = stack.float()
        got = boxes_from_cams_torch(stack.to(device))
        assert got.dtype == torch.int64
        assert got.cpu().tolist() == boxes_from_cams_torch(exact.to(device)).cpu().tolist()
        assert got.cpu().tolist() == boxes_from_cams(exact.numpy()).tolist()


@pytest.mark.parametrize("device", DEVICES)
def test_threshold_is_rounded_like_numpy(device):
    """float32 maps: ``0.2 * max`` rounded to float32, a pixel exactly there is out."""
    rng = np.random.default_rng(2)
    peaks = rng.uniform(0.5, 100, 4000).astype(np.float32)
    at_threshold = np.float32(0.2) * peaks  # float32 product, as numpy and torch compute it
    # keep the peaks where the float64 product is smaller: there a float64 threshold would
    # count the pixel as above it
    keep = at_threshold.astype(np.float64) > 0.2 * peaks.astype(np.float64)
    assert keep.sum() > 100
    cams = np.zeros((int(keep.sum()), 3, 4), dtype=np.float32)
    cams[:, 0, 0] = peaks[keep]
    cams[:, 2, 1:4] = at_threshold[keep, None]  # 3 pixels exactly at the threshold
    assert boxes_from_cams(cams).tolist() == [[0, 0, 0, 0]] * len(cams)
    assert torch_boxes(cams, device) == [[0, 0, 0, 0]] * len(cams)


def test_float64_maps_stay_float64():
    # above the float64 threshold, equal to it once rounded to float32
    cam = np.zeros((1, 3, 3))
    cam[0, 0, 0] = 1.0
    cam[0, 2, :] = 0.2 + 1e-12
    assert np.float32(cam[0, 2, 0]) == np.float32(0.2) * np.float32(1.0)
    assert torch_boxes(cam, "cpu") == [[0, 2, 2, 2]] == boxes_from_cams(cam).tolist()
    assert torch_boxes(cam.astype(np.float32), "cpu") == [[0, 0, 0, 0]]


@pytest.mark.parametrize("device", DEVICES)
def test_maps_with_nan_get_the_whole_map_like_the_reference(device):
    # the reference's max is NaN, nothing is "above" NaN: an empty mask, so the whole map
    cams = smooth_maps(4, 3, (6, 8), seed=1)
    cams[1, 2, 3] = np.nan
    cams[3] = np.nan
    assert_same_as_reference(cams, device)
    assert torch_boxes(cams, device)[1] == [0, 0, 7, 5]
