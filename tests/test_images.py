"""Decoding real-world files: every mode becomes upright 8-bit RGB; bad files become one line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke, model_args, one_line_error
from PIL import Image

from cam_cli.data.batches import ImageListDataset, collate_images
from cam_cli.data.images import find_images, load_resized, open_rgb


def save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_modes_become_rgb(tmp_path):
    grey = save(tmp_path, "grey.png", Image.new("L", (8, 6), 100))
    palette = save(tmp_path, "palette.gif", Image.new("P", (8, 6), 3))
    rgba = Image.new("RGBA", (8, 6), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent -> white background
    rgba_path = save(tmp_path, "rgba.png", rgba)
    cmyk = save(tmp_path, "cmyk.jpg", Image.new("CMYK", (8, 6), (0, 255, 255, 0)))
    sixteen = Image.fromarray(np.full((6, 8), 65535, dtype=np.uint16))
    sixteen.putpixel((0, 0), 32768)
    sixteen_path = save(tmp_path, "sixteen.png", sixteen)
    for path in (grey, palette, rgba_path, cmyk, sixteen_path):
        image, size = open_rgb(path)
        assert image.mode == "RGB", path
        assert size == (8, 6), path
    assert open_rgb(grey)[0].getpixel((3, 3)) == (100, 100, 100)
    assert open_rgb(rgba_path)[0].getpixel((0, 0)) == (255, 255, 255)
    assert open_rgb(rgba_path)[0].getpixel((1, 1)) == (255, 0, 0)
    red = open_rgb(cmyk)[0].getpixel((3, 3))
    assert red[0] > 200
    assert red[1] < 60
    assert red[2] < 60
    # 16-bit: full scale is white and half scale mid-grey, not everything clipped to 255
    assert open_rgb(sixteen_path)[0].getpixel((3, 3)) == (255, 255, 255)
    assert open_rgb(sixteen_path)[0].getpixel((0, 0))[0] == 128


def test_exif_orientation_is_applied(tmp_path):
    # stored 8 wide x 4 high, left half black; orientation 6 = rotate 90 degrees clockwise
    array = np.full((4, 8, 3), 255, dtype=np.uint8)
    array[:, :4] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, "rotated.jpg", Image.fromarray(array), exif=exif, quality=100)
    image, size = open_rgb(path)
    assert size == (4, 8)
    assert image.size == (4, 8)
    upright = np.asarray(image)
    assert upright[:3, :, 0].mean() < 30  # the black half is on top after rotation
    assert upright[-3:, :, 0].mean() > 220
    pixels, width, height = load_resized(path, 16)
    assert (width, height) == (4, 8)
    assert pixels.shape == (3, 16, 16)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty file"),
        ("text.jpg", b"hello, I am not an image", "not an image"),
    ],
)
def test_bad_files_give_a_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=reason):
        open_rgb(path)


def test_truncated_jpeg_is_an_error(tmp_path):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path = save(tmp_path, "full.jpg", noise, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        open_rgb(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = save(tmp_path, "big.png", Image.new("L", (200, 100)))
    with pytest.raises(ValueError, match="decompression bomb"):
        open_rgb(path, max_pixels=10_000)


def test_dataset_never_raises_and_collate_separates_failures(tmp_path):
    good = save(tmp_path, "a.png", Image.new("RGB", (10, 20), (1, 2, 3)))
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"")
    dataset = ImageListDataset([str(good), str(bad)], size=12)
    batch = collate_images([dataset[0], dataset[1]])
    assert tuple(batch.pixels.shape) == (1, 3, 12, 12)
    assert [(i.width, i.height) for i in batch.items] == [(10, 20)]
    assert batch.failed[0].path == str(bad)
    assert "empty" in batch.failed[0].error


def test_find_images_walks_directories_and_reports_missing(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("sub/b.JPEG", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = list(find_images([str(tmp_path), str(tmp_path / "nope.jpg")]))
    assert [(p.name, problem) for p, problem in found] == [
        ("a.png", None),
        ("b.JPEG", None),
        ("nope.jpg", "no such file or directory"),
    ]


def test_one_extension_set_for_every_command(tmp_path):
    """bbox, eval's image matching and training's folders take exactly the same files."""
    from cam_cli.data.annotations import ImageAnnotation
    from cam_cli.data.matching import match_images
    from cam_cli.training.data import scan_data

    folder = tmp_path / "train" / "n01"
    folder.mkdir(parents=True)
    names = ["a.gif", "b.png", "c.ppm", "d.JPEG", "notes.txt"]
    for name in names[:-1]:
        Image.new("RGB", (9, 7), (200, 10, 10)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    images = {p.name for p, problem in find_images([str(folder)]) if problem is None}
    assert images == {"a.gif", "b.png", "c.ppm", "d.JPEG"}
    truth = {Path(n).stem: ImageAnnotation(Path(n).stem, ("n01",)) for n in names[:-1]}
    matched, unmatched, missing = match_images(folder, truth)
    assert {p.name for p, _ in matched} == images
    assert not unmatched
    assert not missing
    data = scan_data(tmp_path)
    assert {Path(path).name for path, _ in data.train} == images


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width x height``: what is refused from the header is
    never decoded, so its pixel data need not be there."""
    import struct
    import zlib

    Image.new("1", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:33] = ihdr + struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def large_pngs(tmp_path_factory):
    """PNGs over Pillow's default warning limit (a real 1-bit one), just under ours (169 MP),
    just over ours, and over twice ours (headers only)."""
    folder = tmp_path_factory.mktemp("large")
    Image.new("1", (9500, 9500), 1).save(folder / "90mp.png")
    for name, size in {"169mp": 13000, "180mp": 13400, "400mp": 20000}.items():
        _png_claiming(folder / f"{name}.png", size, size)
    return folder


@pytest.mark.slow
def test_one_pixel_limit_for_pillow_and_the_tool(large_pngs):
    from cam_cli.data.images import DEFAULT_MAX_PIXELS, open_image

    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS == 178_956_970
    pixels, width, height = load_resized(large_pngs / "90mp.png", 32)  # Pillow's default: refused
    assert (width, height) == (9500, 9500)
    assert pixels.shape == (3, 32, 32)
    assert pixels.min() == 255
    with open_image(large_pngs / "169mp.png") as image:  # under the limit: opens for decoding
        assert image.size == (13000, 13000)
    with pytest.raises(ValueError, match="exceeds the limit") as refused:
        open_rgb(large_pngs / "180mp.png")
    assert str(refused.value) == (
        "refused: 13400x13400 = 179560000 pixels exceeds the limit of 178956970 "
        "(decompression bomb?)"
    )
    with pytest.raises(
        ValueError, match="exceeds the limit"
    ) as refused:  # Pillow's own error (over twice its limit)
        open_rgb(large_pngs / "400mp.png")
    assert str(refused.value) == (
        "refused: 400000000 pixels exceeds the limit of 178956970 (decompression bomb?)"
    )


def test_heatmap_images_and_reference_sizes_have_the_same_limit(large_pngs):
    from cam_cli.data.heatmaps import read_maps, reference_size

    assert reference_size(large_pngs / "90mp.png") == (9500, 9500)
    with pytest.raises(ValueError, match="180mp.png: cannot read .*exceeds the limit of 17895"):
        reference_size(large_pngs / "180mp.png")
    with pytest.raises(ValueError, match="13400x13400 = 179560000 pixels exceeds the limit"):
        read_maps(large_pngs / "180mp.png")


# --- moved from test_hardening.py (issue 13: what a careless user or an attacker tries) ---


def test_images_folder_without_images(fake, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    result = invoke("bbox", *model_args(fake), "--images", tmp_path / "empty")
    one_line_error(result, f"no images found in {tmp_path / 'empty'}")
    missing = invoke("bbox", *model_args(fake), "--images", tmp_path / "gone.jpg")
    assert missing.exit_code == 1
    assert '"error": "no such file or directory"' in missing.stdout


def test_fifo_image_is_not_an_empty_file(fake, tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    result = invoke("bbox", *model_args(fake), "--images", tmp_path / "pipe.jpg")
    assert result.exit_code == 1
    assert "not a regular file (a FIFO)" in result.stdout
