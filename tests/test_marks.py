"""The marks shared by `bbox --draw` and the report (`outputs.marks`): boxes mapped onto exactly
their enlarged pixels, whole enlargement factors, rank tags that never overlap one another."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cam_cli.outputs.marks import (
    RANK_COLOURS,
    box_rect,
    draw_outline,
    hex_rgb,
    place_tags,
    rank_colour,
    whole_factor,
)


def test_whole_factor_reaches_the_target_side() -> None:
    assert [whole_factor(s, 320) for s in (64, 100, 160, 227, 319, 320, 500)] == [
        5,
        4,
        2,
        2,
        2,
        1,
        1,
    ]


def test_a_box_maps_onto_exactly_its_enlarged_pixels_on_a_non_square_grid() -> None:
    # a 100 x 60 image enlarged 6 times (600 x 360): pixels x0..x1 -> 6 * x0 .. 6 * (x1 + 1) - 1
    assert box_rect((10, 20, 10, 30), (100, 60), (600, 360)) == (60, 120, 65, 185)
    assert box_rect((0, 0, 99, 59), (100, 60), (600, 360)) == (0, 0, 599, 359)
    # a box in a record's grid (300 x 200) drawn on a picture of another size (150 x 100)
    assert box_rect((30, 20, 89, 59), (300, 200), (150, 100)) == (15, 10, 44, 29)


def test_a_one_pixel_wide_box_is_outlined_on_its_own_pixels() -> None:
    image = Image.new("RGB", (40, 30), (255, 255, 255))
    draw_outline(ImageDraw.Draw(image), (10, 5, 14, 20), RANK_COLOURS[0], 2)
    row = np.asarray(image)[12]
    orange, black, white = hex_rgb(RANK_COLOURS[0]), (0, 0, 0), (255, 255, 255)
    expected = [white, black, orange, orange, black, orange, orange, black, white]
    assert [tuple(v) for v in row[8:17]] == expected  # casing 9, band 10-11, inner 12, band 13-14


def test_rank_colours_cycle_after_five() -> None:
    assert [rank_colour(r) for r in (1, 5, 6)] == [
        RANK_COLOURS[0],
        RANK_COLOURS[4],
        RANK_COLOURS[0],
    ]


def _apart(rects: list[tuple[int, int, int, int]]) -> bool:
    return all(
        a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
        for a, b in itertools.combinations(rects, 2)
    )


@pytest.mark.parametrize("size", [(320, 320), (640, 320), (320, 480)])
def test_five_tags_never_overlap(size) -> None:
    w, h = size
    same = [(0, 0, w - 1, h - 1)] * 5  # five ranks, one box: a row at the corner
    tags = place_tags(same, size, [(17, 17)] * 5)
    assert _apart(tags)
    assert [t[:2] for t in tags] == [(18 * i, 0) for i in range(5)]
    rng = np.random.default_rng(0)
    for _ in range(200):
        corners = rng.integers(0, [w, h], (5, 2))
        far = corners + rng.integers(1, 60, (5, 2))
        boxes = [(int(a), int(b), int(min(c, w - 1)), int(min(d, h - 1)))
                 for (a, b), (c, d) in zip(corners, far, strict=True)]  # fmt: skip
        tags = place_tags(boxes, size, [(17, 19)] * 5)
        assert _apart(tags)
        assert all(min(t) >= 0 and t[2] < w and t[3] < h for t in tags)


def test_a_tag_goes_above_its_box_when_there_is_room() -> None:
    [tag] = place_tags([(50, 40, 90, 80)], (200, 100), [(16, 18)])
    assert tag == (50, 22, 65, 39)  # just above the top-left corner, touching the box
