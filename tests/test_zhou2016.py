"""The released CAM box generator (zhoubolei/CAM bboxgenerator/dt_box), step by step.

Small hand-made maps whose right answer can be read off the test, plus the released example
reproduced exactly. Nothing here needs OpenCV; the last tests compare with cv2 when installed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cam_cli.boxes.zhou2016 import (
    _libstdcxx_sort,
    big_overlap,
    clip_rects,
    contour_rects,
    inner_mask,
    merge_rects,
    quantize_heatmap,
    rank_rects,
    released_rects,
    scaled_distance_transform,
    zhou2016_boxes,
)
from cam_cli.data.heatmaps import load_heatmap

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EXAMPLE = SHARED / "data" / "zhou2016-bboxgenerator"


def _example_heatmap() -> np.ndarray:
    path = EXAMPLE / "heatmap_6.jpg"
    if not path.exists():
        pytest.skip(f"{path} not present (the ../shared folder beside the repository)")
    return load_heatmap(path)


def _rects(*rows: tuple[int, int, int, int]) -> np.ndarray:
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


# --- the released example -------------------------------------------------------------------


def _expected_output() -> list[int]:
    """The one all-integer line of EXPECTED.txt: bboxgenerator/heatmap_6.txt as shipped."""
    text = (EXAMPLE / "EXPECTED.txt").read_text()
    lines = [line.split() for line in text.splitlines()]
    return next(
        [int(v) for v in words] for words in lines if words and all(w.isdigit() for w in words)
    )


@pytest.mark.shared
def test_released_example_is_reproduced_exactly():
    heatmap = _example_heatmap()
    assert heatmap.shape == (368, 500)
    assert heatmap.dtype == np.uint8
    expected = _expected_output()  # dt_box heatmap_6.jpg 20 100 110
    assert expected == [41, 145, 362, 202, 102, 188, 242, 126]
    assert released_rects(heatmap, (20, 100, 110)).ravel().tolist() == expected
    assert zhou2016_boxes(heatmap).tolist() == [[41, 145, 402, 346], [102, 188, 343, 313]]


@pytest.mark.shared
def test_released_example_levels_and_the_box_the_merge_drops():
    heatmap = _example_heatmap()
    per_level = [contour_rects(inner_mask(heatmap, t)).tolist() for t in (20, 100, 110)]
    assert per_level == [[[41, 145, 362, 202]], [[102, 188, 242, 126]], [[108, 192, 230, 118]]]
    # the 110 box lies inside the 100 box and covers more than half of it: merged away
    assert big_overlap((102, 188, 242, 126), (108, 192, 230, 118))


# --- step 1: distance transform, 8-bit scaling, keep > 10 -----------------------------------


def test_distance_is_to_the_nearest_background_pixel_and_scaled_to_255():
    row = np.array([[0, 1, 1, 1, 1, 1, 0]], dtype=bool)  # distances 0 1 2 3 2 1 0, max 3
    assert scaled_distance_transform(row).tolist() == [[0, 85, 170, 255, 170, 85, 0]]


def test_scaling_rounds_half_up_like_the_c_cast():
    # distances 0..6..0: 255 * d / 6 = 42.5, 127.5, 212.5 -> 43, 128, 213 ((int)(v + 0.5));
    # numpy's half-to-even rounding would give 42 and 212
    row = np.array([[0] + [1] * 11 + [0]], dtype=bool)
    assert scaled_distance_transform(row).tolist() == [
        [0, 43, 85, 128, 170, 213, 255, 213, 170, 128, 85, 43, 0]
    ]


def test_distance_is_euclidean_not_squared():
    mask = np.ones((3, 3), dtype=bool)
    mask[0, 0] = False  # the only background pixel
    distance = np.hypot(*np.mgrid[0:3, 0:3])  # to (0, 0): 1, sqrt 2, 2, sqrt 5, sqrt 8
    expected = np.floor(255 * distance / math.sqrt(8) + 0.5)
    assert scaled_distance_transform(mask).tolist() == expected.tolist()


def test_image_border_is_not_background():
    row = np.array([[1, 1, 1, 1, 0]], dtype=bool)  # distances 4 3 2 1 0, not 1 at the border
    assert scaled_distance_transform(row).tolist() == [[255, 191, 128, 64, 0]]


def test_masks_with_one_value_are_left_as_they_are():
    # dt.c:106: min == max, nothing is scaled (a full mask's distances are all +INF)
    assert (scaled_distance_transform(np.ones((4, 5), bool)) == 255).all()
    assert (scaled_distance_transform(np.zeros((4, 5), bool)) == 0).all()


def test_inner_mask_keeps_levels_above_10():
    # A run of n ones between zeros has distances 1..(n+1)//2; its end pixels scale to
    # 255 / max + 0.5 truncated: 11 for max 24 (kept), 10 for max 25 (dropped).
    def run(n: int) -> np.ndarray:
        return np.array([[0] + [200] * n + [0]], dtype=np.uint8)

    assert inner_mask(run(47), 100)[0].tolist() == [False] + [True] * 47 + [False]  # max 24
    assert inner_mask(run(49), 100)[0].tolist() == [False, False] + [True] * 47 + [False] * 2
    assert inner_mask(run(49), 200).sum() == 0  # strictly above the threshold


# --- step 2: contours -----------------------------------------------------------------------


def test_ring_gives_its_outer_rect_then_its_hole_rect():
    mask = np.zeros((9, 9), dtype=bool)
    mask[1:8, 1:8] = True
    mask[3:6, 3:6] = False  # a 3x3 hole at x, y = 3..5
    # the hole contour runs on the ring pixels around the hole: x, y = 2..6
    assert contour_rects(mask).tolist() == [[1, 1, 7, 7], [2, 2, 5, 5]]


def test_island_in_a_hole_is_an_outer_contour_met_last_and_listed_first():
    mask = np.zeros((11, 11), dtype=bool)
    mask[1:10, 1:10] = True
    mask[2:9, 2:9] = False  # hole x, y = 2..8
    mask[4:7, 4:7] = True  # island x, y = 4..6
    assert contour_rects(mask).tolist() == [[4, 4, 3, 3], [1, 1, 9, 9], [1, 1, 9, 9]]


def test_components_are_listed_last_met_first_each_with_its_holes():
    mask = np.zeros((8, 16), dtype=bool)
    mask[1:6, 1:6] = True  # A, with one hole
    mask[3, 3] = False
    mask[2:7, 8:14] = True  # B, with two holes, the second met later
    mask[3, 10] = False
    mask[5, 11] = False
    assert contour_rects(mask).tolist() == [
        [8, 2, 6, 5],  # B
        [10, 4, 3, 3],  # B's hole at (11, 5)
        [9, 2, 3, 3],  # B's hole at (10, 3)
        [1, 1, 5, 5],  # A
        [2, 2, 3, 3],  # A's hole at (3, 3)
    ]


def test_foreground_is_8_connected_and_holes_4_connected():
    mask = np.zeros((5, 5), dtype=bool)
    mask[1:4, 1:4] = True
    mask[2, 2] = False  # a one-pixel hole
    mask[1, 3] = False  # break the ring at a corner: still one component, still a hole
    assert contour_rects(mask).tolist() == [[1, 1, 3, 3], [1, 1, 3, 3]]
    diagonal = np.eye(5, dtype=bool)
    diagonal[0, 0] = diagonal[4, 4] = False
    assert contour_rects(diagonal).tolist() == [[1, 1, 3, 3]]  # one 8-connected line


def test_opencv_2_4_zeroes_the_image_frame_first():
    full = np.ones((6, 8), dtype=bool)
    assert contour_rects(full).tolist() == [[1, 1, 6, 4]]  # the frame pixels are gone
    assert contour_rects(full, zero_frame=False).tolist() == [[0, 0, 8, 6]]  # OpenCV >= 3.2
    line = np.zeros((6, 8), dtype=bool)
    line[0, :] = True  # lives on the frame only
    assert contour_rects(line).tolist() == []
    assert contour_rects(line, zero_frame=False).tolist() == [[0, 0, 8, 1]]


# --- step 2b: the clip ----------------------------------------------------------------------


def test_clip_leaves_5_pixels_free_at_the_right_and_bottom():
    width, height = 20, 10
    clipped = clip_rects(_rects((2, 3, 18, 7), (0, 0, 5, 5)), width, height)
    # right end x + w <= 20 - 5, bottom y + h <= 10 - 5
    assert clipped.tolist() == [[2, 3, 13, 2], [0, 0, 5, 5]]


def test_clip_of_a_rect_starting_in_the_last_5_columns_has_width_zero_or_negative():
    # w = LIMIT(w, 0, W - x - 5) returns the upper limit when it is below 0 (dt_box.cpp:91)
    clipped = clip_rects(_rects((15, 0, 3, 3), (17, 8, 2, 1)), 20, 10)
    assert clipped.tolist() == [[15, 0, 0, 3], [15, 5, -2, -3]]


def test_whole_map_blob_is_clipped_after_the_frame_is_zeroed():
    heatmap = np.full((10, 20), 50, dtype=np.uint8)  # above 20 only: one level, one rect
    assert released_rects(heatmap).tolist() == [[1, 1, 14, 4]]  # x 1..14, y 1..4


# --- step 3: rank and merge -----------------------------------------------------------------


def test_big_overlap_means_more_than_half_of_the_larger_area_truncated():
    assert not big_overlap((0, 0, 5, 1), (0, 0, 2, 1))  # overlap 2, t = int(2.5) = 2
    assert big_overlap((0, 0, 5, 1), (0, 0, 3, 1))  # overlap 3 > 2
    assert not big_overlap((0, 0, 4, 1), (0, 0, 2, 1))  # exactly half: kept
    assert not big_overlap((0, 0, 4, 4), (4, 0, 4, 4))  # touching: x + w is exclusive


def test_rank_is_by_area_largest_first_and_keeps_ties_in_order_up_to_16():
    rects = _rects((0, 0, 1, 2), (0, 0, 3, 3), (5, 5, 2, 1), (0, 0, 1, 1), (9, 9, 1, 2))
    assert rank_rects(rects).tolist() == [
        [0, 0, 3, 3],
        [0, 0, 1, 2],
        [5, 5, 2, 1],
        [9, 9, 1, 2],
        [0, 0, 1, 1],
    ]


def test_rank_reorders_ties_beyond_16_rects_as_std_sort_does():
    # 17 equal areas: one quicksort partition, then insertion sort (printed by g++'s std::sort)
    rects = _rects(*[(i, 0, 1, 1) for i in range(17)])
    expected = [8, 16, 15, 14, 13, 12, 11, 10, 9, 0, 7, 6, 5, 4, 3, 2, 1]
    assert rank_rects(rects)[:, 0].tolist() == expected


def test_libstdcxx_sort_sorts():
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 16, 17, 40, 300):
        for depth in (None, 0, 1):
            keys = rng.integers(0, 6, size=n).tolist()
            order = _libstdcxx_sort(list(range(n)), lambda i, j, k=keys: k[i] > k[j], depth)
            assert sorted(order) == list(range(n))
            assert [keys[i] for i in order] == sorted(keys, reverse=True)


def test_merge_drops_big_overlaps_but_skips_the_rect_after_each_drop():
    a = (0, 0, 10, 10)  # area 100, half = 50
    b = (0, 0, 9, 9)  # overlaps a by 81: dropped
    c = (1, 1, 8, 8)  # overlaps a by 64, but sits right after b: never compared with a
    d = (0, 0, 8, 7)  # overlaps a by 56: dropped (compared, as c was skipped)
    e = (20, 20, 2, 2)  # elsewhere: kept
    assert merge_rects(_rects(a, b, c, d, e)).tolist() == [list(a), list(c), list(e)]


def test_merge_skip_chains_through_later_rects():
    a = (0, 0, 10, 10)
    c = (1, 1, 8, 8)  # skipped by a (after b), then compared with what follows it
    f = (1, 1, 7, 7)  # overlaps c by 49 > 32: dropped by c
    assert merge_rects(_rects(a, (0, 0, 9, 9), c, f)).tolist() == [list(a), list(c)]


# --- the whole program ----------------------------------------------------------------------


def test_square_blob_gives_one_box_in_inclusive_coordinates():
    heatmap = np.zeros((40, 40), dtype=np.uint8)
    heatmap[10:30, 10:30] = 50  # above 20 only
    assert released_rects(heatmap).tolist() == [[10, 10, 20, 20]]
    assert zhou2016_boxes(heatmap).tolist() == [[10, 10, 29, 29]]


def test_same_box_at_all_three_levels_comes_out_twice():
    # [r, r, r]: r[1] is dropped by r[0], and r[2], moved into its slot, is skipped
    heatmap = np.zeros((40, 40), dtype=np.uint8)
    heatmap[10:30, 10:30] = 200
    assert released_rects(heatmap).tolist() == [[10, 10, 20, 20], [10, 10, 20, 20]]


def test_negative_width_from_the_clip_is_swapped_like_the_released_matlab():
    heatmap = np.zeros((20, 30), dtype=np.uint8)
    heatmap[5:15, 26:29] = 50  # x = 26..28: starts in the last 5 columns
    assert released_rects(heatmap).tolist() == [[25, 5, -1, 10]]  # x -> 25, w -> 30-26-5
    assert zhou2016_boxes(heatmap).tolist() == [[24, 5, 24, 14]]  # corners 25 + -1 and 25


def test_empty_map_gives_no_box():
    assert zhou2016_boxes(np.full((30, 30), 20, dtype=np.uint8)).shape == (0, 4)


@pytest.mark.parametrize("thresholds", [(20, 100), (100, 20, 110), (0, 100, 110), (20, 100, 255)])
def test_thresholds_the_released_program_would_ignore_are_refused(thresholds):
    # dt_box.cpp:230 silently falls back to 30 90 150 for these
    with pytest.raises(ValueError, match="thresholds"):
        zhou2016_boxes(np.zeros((10, 10), dtype=np.uint8), thresholds)


def test_heatmap_must_be_one_uint8_map():
    with pytest.raises(ValueError, match="uint8"):
        zhou2016_boxes(np.zeros((10, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        zhou2016_boxes(np.zeros((10, 10, 3), dtype=np.uint8))


# --- the heatmap the MATLAB code saved ------------------------------------------------------


def test_quantize_divides_by_the_max_and_rounds_half_up():
    cam = np.array([[1, 3, 5, 7, 510]], dtype=np.float32)  # x * 255 = 0.5 1.5 2.5 3.5 255
    assert quantize_heatmap(cam).tolist() == [[1, 2, 3, 4, 255]]  # np.round: 0 2 2 4


def test_quantize_saturates_and_maps_nan_to_zero():
    cam = np.array([[-3.0, np.nan, 2.0, 4.0]])
    assert quantize_heatmap(cam).tolist() == [[0, 0, 128, 255]]
    assert quantize_heatmap(np.zeros((2, 2))).tolist() == [[0, 0], [0, 0]]
    assert quantize_heatmap(-np.ones((2, 2))).tolist() == [[0, 0], [0, 0]]


# --- against OpenCV, when it is installed ---------------------------------------------------


def _cv2_rects(cv2, mask: np.ndarray) -> list[list[int]]:
    image = mask.astype(np.uint8)
    contours = cv2.findContours(image, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[-2]
    return [list(cv2.boundingRect(c)) for c in contours]


def test_contour_rects_match_cv2_find_contours_on_random_masks():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(5)
    for trial in range(300):
        height, width = (int(v) for v in rng.integers(1, 40, size=2))
        mask = rng.random((height, width)) < rng.uniform(0.2, 0.95)
        if trial % 3 == 0:  # nested rings: holes in holes, islands in holes
            y, x = np.mgrid[0:height, 0:width]
            to_border = np.minimum.reduce([y, x, height - 1 - y, width - 1 - x])
            mask = (to_border % 2 == 0) ^ (rng.random((height, width)) < 0.05)
        # modern OpenCV pads the image with zeros; zeroing the frame first gives OpenCV 2.4
        framed = mask.copy()
        framed[0, :] = framed[-1, :] = framed[:, 0] = framed[:, -1] = False
        assert contour_rects(mask).tolist() == _cv2_rects(cv2, framed)
        assert contour_rects(mask, zero_frame=False).tolist() == _cv2_rects(cv2, mask)


@pytest.mark.shared
def test_load_heatmap_matches_cv2_grey_decoding():
    cv2 = pytest.importorskip("cv2")
    heatmap = _example_heatmap()
    assert np.array_equal(heatmap, cv2.imread(str(EXAMPLE / "heatmap_6.jpg"), cv2.IMREAD_GRAYSCALE))
