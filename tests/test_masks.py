"""`outputs.masks` (`cam --pseudo-masks`): hand-computed masks, Pascal VOC's palette, and the
masks of a run equal to thresholding the run's own ``--npy image`` maps, on non-square images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import invoke, one_line_error, write_image, write_own_checkpoint
from PIL import Image

from cam_cli.outputs.masks import mask_png, pseudo_mask, voc_palette


def test_hand_computed_mask():
    cams = np.array(
        [
            [[0, 1, 5], [0, 0, 0]],  # rank 1, class 3: above 1.0 -> (0, 2)
            [[4, 4, 4], [0, 0, 4]],  # rank 2, class 7: above 0.8 -> (0, 0) (0, 1) (0, 2) (1, 2)
        ],
        dtype=np.float32,
    )
    mask = pseudo_mask(cams, [3, 7], (3, 2), 0.2)  # the map's own size: no resampling
    assert mask.dtype == np.uint8
    assert mask.tolist() == [[8, 8, 4], [0, 0, 8]]  # rank 1 wins where both cover
    flat = pseudo_mask(np.zeros((1, 2, 3), np.float32), [0], (3, 2), 0.2)
    assert flat.tolist() == [[0, 0, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="class index 254 does not fit an 8-bit mask"):
        pseudo_mask(cams, [254, 1], (3, 2), 0.2)


def test_palette_png():
    palette = voc_palette()
    assert palette[:15] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128]
    assert palette[255 * 3 : 256 * 3] == [224, 224, 192]  # VOC's "ignore" colour
    image = Image.open(io.BytesIO(mask_png(np.array([[0, 1], [2, 0]], np.uint8))))
    assert image.mode == "P"
    assert image.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    assert np.array(image).tolist() == [[0, 1], [2, 0]]


def test_cam_pseudo_masks_equal_the_runs_own_maps(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_image(tmp_path / "a" / "x.jpg", seed=1, size=(64, 40))
    write_image(tmp_path / "b" / "x.jpg", seed=2, size=(30, 50))
    checkpoint = write_own_checkpoint(tmp_path / "own.pt", ["jellyfish", "king_penguin", "fox"])
    result = invoke("cam", "--checkpoint", checkpoint, "--images", tmp_path / "a",
                    "--images", tmp_path / "b", "--out", tmp_path / "cams", "--npy", "image",
                    "--pseudo-masks", tmp_path / "masks", "--workers", "0", "--no-fast",
                    "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    for name, size in (("x", (64, 40)), ("x-2", (30, 50))):
        image = Image.open(tmp_path / "masks" / f"{name}.png")
        assert image.mode == "P"
        assert image.size == size
        (npy,) = (tmp_path / "cams").glob(f"{name}_rank1_*.image.npy")
        cam = np.load(npy)
        index = ["jellyfish", "king_penguin", "fox"].index(npy.name.split("_rank1_")[1]
                                                          .split("-")[0])  # fmt: skip
        expected = np.where(cam > 0.2 * cam.max(), index + 1, 0)
        assert (np.array(image) == expected).all()
        assert 0 < (expected > 0).sum() < size[0] * size[1]


def test_masks_never_over_an_input(tmp_path):
    write_image(tmp_path / "x.png", seed=1, size=(64, 40))
    checkpoint = write_own_checkpoint(tmp_path / "own.pt", ["a", "b"])
    result = invoke("cam", "--checkpoint", checkpoint, "--images", tmp_path / "x.png",
                    "--out", tmp_path / "cams", "--pseudo-masks", tmp_path, "--workers", "0",
                    "-q")  # fmt: skip
    one_line_error(result, "--pseudo-masks", "x.png would overwrite that input image")
