"""Report pictures (`report.pictures`): tiny images enlarged by a whole factor with crisp
pixels, large ones shrunk, boxes drawn on exactly their pixels, the CAM laid over the image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cam_cli.report.inputs import ReportOptions
from cam_cli.report.pictures import (
    GT_COLOUR,
    PREDICTED_COLOUR,
    DrawnBox,
    PictureRequest,
    draw_picture,
    render_pictures,
    viridis,
    viridis_stops,
)

pytest.importorskip("matplotlib", reason="the report extra (pip install 'cam-cli[report]')")

OPTIONS = ReportOptions()
BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def _save(path, pixels: np.ndarray) -> str:
    Image.fromarray(pixels).save(path)
    return str(path)


def test_a_tiny_image_is_enlarged_by_a_whole_factor_with_crisp_pixels(tmp_path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = _save(tmp_path / "tiny.png", pixels)
    image, upscaled = draw_picture(PictureRequest(path, None, None, ()), OPTIONS)
    # 40 px wide, at least 224: 6 times (ceil(224 / 40)), each pixel a 6 x 6 square
    assert upscaled
    assert image.size == (240, 180)
    assert (np.asarray(image) == pixels.repeat(6, axis=0).repeat(6, axis=1)).all()


def test_a_large_image_is_shrunk_to_the_picture_side(tmp_path) -> None:
    path = _save(tmp_path / "wide.png", np.full((300, 900, 3), 128, dtype=np.uint8))
    image, upscaled = draw_picture(PictureRequest(path, None, None, ()), OPTIONS)
    assert not upscaled
    assert image.size == (448, 149)


def test_a_box_is_drawn_on_exactly_its_pixels(tmp_path) -> None:
    path = _save(tmp_path / "white.png", np.full((30, 40, 3), 255, dtype=np.uint8))
    box = DrawnBox((5, 5, 14, 9), PREDICTED_COLOUR)
    image, _ = draw_picture(PictureRequest(path, None, None, (box,)), OPTIONS)
    row = np.asarray(image)[45]  # a row through the box (image rows 5..9 -> 30..59)
    orange = _rgb(PREDICTED_COLOUR)
    # pixels 5..14 enlarged 6 times: 30..89; a 3 px band (180 / 70 -> 3) in black casings
    assert tuple(row[29]) == BLACK
    assert tuple(row[89 + 1]) == BLACK
    assert all(tuple(row[x]) == orange for x in (30, 31, 32, 87, 88, 89))
    assert tuple(row[33]) == BLACK
    assert tuple(row[86]) == BLACK
    assert tuple(row[34]) == WHITE
    assert tuple(row[85]) == WHITE
    assert tuple(row[20]) == WHITE


@pytest.mark.parametrize("dashed", [False, True])
def test_a_box_thinner_than_its_band_is_drawn_whole(tmp_path, dashed) -> None:
    """Tiny ImageNet has one-pixel ground-truth boxes: at 6x the box is 6 px wide, under two
    3 px bands; it is drawn (its colour on its pixels, black casing round it), never refused."""
    path = _save(tmp_path / "white.png", np.full((30, 40, 3), 255, dtype=np.uint8))
    box = DrawnBox((5, 5, 5, 5), GT_COLOUR, dashed=dashed)
    image, _ = draw_picture(PictureRequest(path, None, None, (box,)), OPTIONS)
    pixels = np.asarray(image)
    assert tuple(pixels[30, 30]) == _rgb(GT_COLOUR)  # pixel 5 -> 30..35
    assert tuple(pixels[30, 29]) == BLACK
    assert tuple(pixels[30, 36]) == BLACK


def test_boxes_in_another_grid_are_scaled_to_the_picture(tmp_path) -> None:
    """Boxes given for an 80 x 60 grid on a 40 x 30 image: halved, then enlarged 6 times."""
    path = _save(tmp_path / "white.png", np.full((30, 40, 3), 255, dtype=np.uint8))
    box = DrawnBox((10, 10, 29, 19), PREDICTED_COLOUR)
    image, _ = draw_picture(PictureRequest(path, (80, 60), None, (box,)), OPTIONS)
    row = np.asarray(image)[45]
    assert tuple(row[30]) == _rgb(PREDICTED_COLOUR)
    assert tuple(row[89]) == _rgb(PREDICTED_COLOUR)


def test_a_dashed_box_shows_its_colour_and_gaps(tmp_path) -> None:
    path = _save(tmp_path / "white.png", np.full((30, 40, 3), 255, dtype=np.uint8))
    box = DrawnBox((0, 0, 39, 29), GT_COLOUR, dashed=True)
    image, _ = draw_picture(PictureRequest(path, None, None, (box,)), OPTIONS)
    top = [tuple(p) for p in np.asarray(image)[1, :]]
    assert _rgb(GT_COLOUR) in top
    assert (32, 32, 32) in top


def test_the_cam_is_laid_where_it_peaks(tmp_path) -> None:
    path = _save(tmp_path / "grey.png", np.full((64, 64, 3), 128, dtype=np.uint8))
    cam = np.zeros((8, 8))
    cam[1, 6] = 1.0  # peak near the top right
    image, _ = draw_picture(PictureRequest(path, None, cam, ()), OPTIONS)
    pixels = np.asarray(image, dtype=np.float64)
    high, low = viridis(np.array(1.0)).astype(float), viridis(np.array(0.0)).astype(float)
    peak = pixels[int(1.5 * 32), int(6.5 * 32)]  # the centre of map cell (1, 6) of 256 px
    corner = pixels[250, 5]
    assert np.linalg.norm(peak - high) < np.linalg.norm(peak - low)
    assert np.linalg.norm(corner - low) < np.linalg.norm(corner - high)


def test_an_unreadable_image_gives_its_reason(tmp_path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    good = _save(tmp_path / "ok.png", np.zeros((8, 8, 3), dtype=np.uint8))
    requests = [
        PictureRequest(str(tmp_path / p), None, None, ()) for p in ("gone.jpg", "broken.jpg")
    ]
    out = render_pictures([*requests, PictureRequest(good, None, None, ())], OPTIONS)
    assert "No such file or directory" in out[0]
    assert "not an image" in out[1]
    assert out[2].data_uri.startswith("data:image/jpeg;base64,")
    assert out[2].upscaled


def test_viridis_ends() -> None:
    stops = viridis_stops()
    assert (stops[0], stops[-1]) == ("#440154", "#fde725")
