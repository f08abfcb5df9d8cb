"""Hand-made maps whose right box is obvious from the picture in the test."""

import numpy as np

from cam_cli.boxes.components import boxes_from_cams, component_boxes, scale_boxes


def maps(*rows_per_map: list[str]) -> np.ndarray:
    """Draw maps with digits: '0'..'9' are values."""
    return np.array([[[float(c) for c in row] for row in m] for m in rows_per_map])


def test_two_blobs_largest_wins():
    cam = maps([
        "000000",
        "090000",
        "000000",
        "000550",
        "000550",
        "000550",
    ])  # fmt: skip
    # the peak (9) is a 1-pixel blob; the 2x3 blob of 5s is larger, so it wins
    assert boxes_from_cams(cam, 0.2).tolist() == [[3, 3, 4, 5]]


def test_diagonal_neighbours_join_with_8_connectivity():
    cam = maps([
        "9000",
        "0900",
        "0090",
        "0000",
    ])  # fmt: skip
    assert boxes_from_cams(cam, 0.2).tolist() == [[0, 0, 2, 2]]


def test_component_on_the_border():
    cam = maps([
        "0000",
        "0000",
        "0009",
        "0009",
    ])  # fmt: skip
    assert boxes_from_cams(cam, 0.2).tolist() == [[3, 2, 3, 3]]


def test_pixel_exactly_at_threshold_is_out():
    # threshold 0.2 * 5 = 1.0: the 1s are exactly at the threshold, so not "above" it
    cam = maps([
        "11111",
        "10001",
        "10501",
        "10001",
        "11111",
    ])  # fmt: skip
    assert boxes_from_cams(cam, 0.2).tolist() == [[2, 2, 2, 2]]
    # just above the threshold they join the segmentation: the ring is the largest component
    cam[cam == 1] = 1.0001
    assert boxes_from_cams(cam, 0.2).tolist() == [[0, 0, 4, 4]]


def test_tie_goes_to_first_component_in_raster_order():
    cam = maps([
        "0000",
        "0990",
        "0000",
        "9900",
    ])  # fmt: skip
    assert boxes_from_cams(cam, 0.2).tolist() == [[1, 1, 2, 1]]


def test_degenerate_maps_get_the_whole_map():
    constant = np.full((1, 3, 5), 2.0)
    negative = -np.arange(15, dtype=float).reshape(1, 3, 5) - 1
    zeros = np.zeros((1, 3, 5))
    for cam in (constant, negative, zeros):
        assert boxes_from_cams(cam, 0.2).tolist() == [[0, 0, 4, 2]]


def test_a_batch_of_maps_is_labelled_independently():
    # the blob of map 0 touches the bottom edge, the blob of map 1 the top edge: stacked they
    # would be neighbours, but components never cross maps
    a = maps(["000", "000", "090"])[0]
    b = maps(["090", "090", "000"])[0]
    c = np.zeros((3, 3))
    stack = np.stack([a, b, c, a])
    assert boxes_from_cams(stack, 0.2).tolist() == [
        [1, 2, 1, 2],
        [1, 0, 1, 1],
        [0, 0, 2, 2],
        [1, 2, 1, 2],
    ]


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
