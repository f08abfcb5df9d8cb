"""wsolevaluation's MaxBoxAccV2 rules (`evaluation.maxboxacc.wsol_protocol`), hand-computed case
by case, and the two protocols of `maxboxacc.metric.MaxBoxAccV2` told apart by them."""

from __future__ import annotations

import numpy as np
import pytest

from cam_cli.data.annotations import ImageAnnotation
from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2
from cam_cli.evaluation.maxboxacc.wsol_protocol import (
    check_scoremap,
    normalize_scoremap,
    resize_cam,
    scoremap_boxes,
    scoremap_from_cam,
    truncated_gt_boxes,
)

SNAKE = "n01751748"


def _annotation(*boxes, width=227, height=227) -> ImageAnnotation:
    return ImageAnnotation("img", (SNAKE,), tuple((SNAKE, b) for b in boxes), width, height)


# --- ground truth into 224x224 ---------------------------------------------------------------


def test_gt_truncation_and_outward_rounding_differ():
    # [10, 20, 100, 150] on a 227x227 image, x * 224 / 227:
    #   9.87 -> 9, 19.74 -> 19, 98.68 -> 98, 148.02 -> 148 (their resize_bbox truncates)
    # outward (cam-cli's span [x0, x1 + 1) scaled): x1 = ceil(101 * 224 / 227) - 1 = 99,
    #   y1 = ceil(151 * 224 / 227) - 1 = ceil(149.009) - 1 = 149.
    box = [10, 20, 100, 150]
    assert truncated_gt_boxes([box], (227, 227)).tolist() == [[9, 19, 98, 148]]
    annotation = _annotation(box)
    assert MaxBoxAccV2().gt_boxes(annotation, 227, 227).tolist() == [[9, 19, 98, 148]]
    legacy = MaxBoxAccV2(protocol="cam-cli")
    assert legacy.gt_boxes(annotation, 227, 227).tolist() == [[9, 19, 99, 149]]


def test_gt_truncation_uses_the_annotated_size_and_does_not_clip():
    # A box reaching the far edge of a 500x375 image (x1 = 500): int(500 * 224 / 500) = 224, as
    # their metadata maps it; cam-cli clips such a box for its own figures, not here.
    annotation = _annotation([0, 0, 500, 374], width=500, height=375)
    # the evaluated image may have been resized: the annotated frame is what is mapped
    assert MaxBoxAccV2().gt_boxes(annotation, 250, 188).tolist() == [[0, 0, 224, 223]]
    # no size in the annotation (Kaggle CSV): the evaluated image's size
    csv = ImageAnnotation("img", (SNAKE,), ((SNAKE, (0, 0, 99, 49)),))
    assert MaxBoxAccV2().gt_boxes(csv, 100, 50).tolist() == [[0, 0, 221, 219]]


# --- the score map -----------------------------------------------------------------------------


def _keys_cubic(cam: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resampling written out: Keys' kernel with a = -0.75 (OpenCV's), pixel centres
    aligned ((x + 0.5) * scale - 0.5), border pixels repeated."""

    def weights(t):
        a = -0.75
        d = np.abs(np.stack([t + 1, t, 1 - t, 2 - t]))
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        return np.where(d <= 1, near, far)

    def along(axis_len):
        src = (np.arange(size) + 0.5) * axis_len / size - 0.5
        base = np.floor(src).astype(int)
        taps = np.clip(base[:, None] + np.arange(-1, 3), 0, axis_len - 1)
        matrix = np.zeros((size, axis_len))
        for j in range(4):
            np.add.at(matrix, (np.arange(size), taps[:, j]), weights(src - base)[j])
        return matrix

    rows, cols = along(cam.shape[0]), along(cam.shape[1])
    return rows @ cam.astype(np.float64) @ cols.T


def test_cubic_resize_is_keys_bicubic():
    rng = np.random.default_rng(3)
    for shape in [(7, 7), (13, 13), (14, 9)]:
        cam = rng.normal(size=shape).astype(np.float32)
        ours = resize_cam(cam, 224, "cubic")
        assert ours.dtype == np.float64
        assert ours.shape == (224, 224)
        # OpenCV's coefficients are float32: equal to the formula to float32 precision
        np.testing.assert_allclose(ours, _keys_cubic(cam, 224), atol=1e-5)


def test_normalize_scoremap_is_theirs_and_leaves_the_input_alone():
    cam = np.array([[2.0, 4.0], [6.0, 10.0]])
    np.testing.assert_array_equal(normalize_scoremap(cam), [[0.0, 0.25], [0.5, 1.0]])
    assert cam[0, 0] == 2.0  # theirs works in place; this one copies
    assert not normalize_scoremap(np.full((3, 3), 5.0)).any()  # constant: zeros
    with_nan = cam.copy()
    with_nan[0, 1] = np.nan
    assert not normalize_scoremap(with_nan).any()  # NaN anywhere: zeros


def test_cubic_versus_bilinear_moves_the_best_threshold():
    # One peak in the middle of a 7x7 CAM. Bicubic overshoots below zero around the peak, so
    # after min-max normalisation the flat background sits at 0.100, 8-bit 25 (bilinear: 0).
    cam = np.zeros((7, 7), dtype=np.float32)
    cam[3, 3] = 1.0
    cubic, bilinear = scoremap_from_cam(cam, "cubic"), scoremap_from_cam(cam, "bilinear")
    assert cubic[0, 0] == pytest.approx(0.10003, abs=1e-5)
    assert int(cubic[0, 0] * 255) == 25
    assert bilinear[0, 0] == 0.0
    # Below t = 0.10 the cut int(t * 255) <= 22 keeps that background (25): the mask is the
    # whole image. At t = 0.10 the cut is int(25.5) = 25, and 25 > 25 is false: the peak alone.
    gt = [[80, 80, 143, 143]]
    metric = MaxBoxAccV2(iou_thresholds=(0.5,))
    best_cubic = metric.scoremap_ious(cubic, gt)
    best_bilinear = metric.scoremap_ious(bilinear, gt)
    assert best_cubic[9] < 0.5 <= best_cubic[10]  # whole image at 0.09: IoU 4096 / 50176
    assert best_cubic[9] == pytest.approx(64 * 64 / 224**2)
    assert best_bilinear[0] >= 0.5
    for scoremap, expected in [(cubic, 0.10), (bilinear, 0.0)]:
        one = MaxBoxAccV2(iou_thresholds=(0.5,))
        annotation = _annotation([80, 80, 143, 143], width=224, height=224)
        one.add_best_ious(one.scoremap_image_ious(scoremap, annotation, 224, 224))
        assert one.summary()["best_threshold"] == [pytest.approx(expected)]


# --- boxes: contours --------------------------------------------------------------------------


def test_a_hole_contour_is_a_box():
    # A 100x100 square (rows/cols 50..149) with a 40x40 hole (80..119).
    scoremap = np.zeros((224, 224))
    scoremap[50:150, 50:150] = 1.0
    scoremap[80:120, 80:120] = 0.0
    index, boxes = scoremap_boxes(scoremap, [0.0])
    # outer: boundingRect x = 50, w = 100 -> [50, 50, 150, 150]; the hole's contour runs on
    # the foreground pixels around it (79 and 120): x = 79, w = 42 -> [79, 79, 121, 121]
    assert index.tolist() == [0, 0]
    assert sorted(boxes.tolist()) == [[50, 50, 150, 150], [79, 79, 121, 121]]
    # gt = the hole (1600 px): the hole box (43 x 43 = 1849 px) gives 1600 / 1849; the outer
    # box alone 1600 / 101^2, and the tight component box 1600 / 100^2
    gt = [[80, 80, 119, 119]]
    wsol = MaxBoxAccV2(thresholds=[0.0])
    np.testing.assert_allclose(wsol.scoremap_ious(scoremap, gt), [1600 / 1849])
    legacy = MaxBoxAccV2(thresholds=[0.0], protocol="cam-cli")
    np.testing.assert_allclose(legacy.best_ious(scoremap, gt), [1600 / 10000])


def test_no_contour_scores_the_box_0_0_0_0():
    # A constant map becomes zeros: no pixel above any cut, no contour -> their [0, 0, 0, 0]
    # (one pixel), scored like any box: IoU with gt [0, 0, 0, 1] (2 px) is 1 / 2.
    flat = np.full((224, 224), 0.3)
    index, boxes = scoremap_boxes(normalize_scoremap(flat), [0.0, 0.5])
    assert index.tolist() == [0, 1]
    assert boxes.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]
    metric = MaxBoxAccV2(thresholds=[0.0, 0.5])
    np.testing.assert_allclose(metric.best_ious(flat, [[0, 0, 0, 1]]), [0.5, 0.5])
    # cam-cli's components: an empty mask has no box at all
    legacy = MaxBoxAccV2(thresholds=[0.0, 0.5], protocol="cam-cli")
    np.testing.assert_allclose(legacy.best_ious(flat, [[0, 0, 0, 1]]), [0.0, 0.0])


def test_bounding_rect_is_one_pixel_wider_and_clipped_at_223():
    scoremap = np.zeros((224, 224))
    scoremap[10, 20] = 1.0  # one pixel: boundingRect (20, 10, 1, 1) -> [20, 10, 21, 11]
    scoremap[200:224, 210:224] = 0.6  # touches the corner: [210, 200, 224, 224] -> 223
    _, boxes = scoremap_boxes(scoremap, [0.5])
    assert sorted(boxes.tolist()) == [[20, 10, 21, 11], [210, 200, 223, 223]]


def test_thresholds_cut_the_8_bit_map_strictly_above():
    # 0.5 -> 8-bit 127; t = 0.49 cuts at int(0.49 * 255) = 124 (in), t = 0.5 at 127 (out)
    scoremap = np.zeros((224, 224))
    scoremap[0:4, 0:4] = 1.0
    scoremap[100:104, 100:104] = 0.5
    index, _ = scoremap_boxes(scoremap, [0.49, 0.5])
    assert np.bincount(index).tolist() == [2, 1]


def test_check_scoremap_refuses_what_boxevaluator_refuses():
    good = np.zeros((224, 224))
    check_scoremap(good)
    for bad, reason in [
        (np.zeros((224, 224), dtype=np.uint8), "float"),
        (np.zeros((1, 224, 224)), "2-D"),
        (np.zeros((100, 100)), "224x224"),
        (np.full((224, 224), 1.5), r"\[0, 1\]"),
        (np.full((224, 224), np.nan), "NaN"),
    ]:
        with pytest.raises(ValueError, match=reason):
            check_scoremap(bad)
