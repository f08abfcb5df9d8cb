"""Device JPEG decoding (`data.decode`): which file goes where, that a mixed batch
keeps its order, sizes and the PIL path's error lines, that the pixels stay close to the PIL
path's, and the real sample's figures. Run on the CPU (torchvision decodes CPU tensors with
the same call), and on CUDA where there is one."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEVICES
from PIL import Image

from cam_cli.data.batches import ImageListDataset, collate_images
from cam_cli.data.decode import (
    JpegRoutingDataset,
    decode_pending,
    draft_scale,
    resolve_decode,
    route_jpeg,
)
from cam_cli.errors import SetupError

SIZE = 224


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Photo-like content: smooth shading, hard-edged shapes and fine noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (height // 32 + 2, width // 32 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    array = np.asarray(image).astype(np.int16)
    yy, xx = np.mgrid[:height, :width]
    for _ in range(6):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(8, 80)
        array[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(0, 255, 3)
    array += rng.integers(-12, 12, array.shape, dtype=np.int16)
    return Image.fromarray(array.clip(0, 255).astype(np.uint8))


def save(folder: Path, name: str, image: Image.Image, **kwargs) -> str:
    path = folder / name
    image.save(path, **kwargs)
    return str(path)


def undefined_huffman_table(folder: Path) -> str:
    """A baseline JPEG whose scan names a Huffman table it never defines: the headers look
    fine (the router sends it to the device), every decoder refuses it."""
    buffer = io.BytesIO()
    photo(40, 24, seed=5).save(buffer, "JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    sos = data.index(b"\xff\xda")
    count = data[sos + 4]
    for i in range(count):
        data[sos + 6 + 2 * i] = 0x33  # DC and AC table 3 for every component
    path = folder / "bad_tables.jpg"
    path.write_bytes(bytes(data))
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """One file of every kind the router must tell apart."""
    folder = tmp_path_factory.mktemp("kinds")
    rotated = Image.Exif()
    rotated[0x0112] = 6
    upright = Image.Exif()
    upright[0x0112] = 1
    made = {
        "baseline": save(folder, "baseline.jpg", photo(96, 64), quality=90),
        "baseline_444": save(folder, "b444.jpg", photo(70, 110, 1), quality=90, subsampling=0),
        "progressive": save(folder, "prog.jpg", photo(96, 64, 2), quality=90, progressive=True),
        "grey": save(folder, "grey.jpg", photo(64, 48, 3).convert("L"), quality=90),
        "cmyk": save(folder, "cmyk.jpg", photo(64, 48, 4).convert("CMYK"), quality=90),
        "exif_rotated": save(folder, "rot.jpg", photo(80, 40, 6), exif=rotated, quality=90),
        "exif_upright": save(folder, "up.jpg", photo(80, 40, 7), exif=upright, quality=90),
        "xmp_rotated": save(
            folder,
            "xmp.jpg",
            photo(80, 40, 8),
            xmp=b'<x:xmpmeta><rdf:Description tiff:Orientation="8"/></x:xmpmeta>',
        ),
        "png": save(folder, "image.png", photo(64, 48, 9)),
        "over_limit": save(folder, "big.jpg", photo(300, 200, 10), quality=80),
        "bad_tables": undefined_huffman_table(folder),
    }
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("hello, I am not an image")
    data = Path(made["baseline"]).read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    made.update(
        empty=str(folder / "empty.jpg"),
        text=str(folder / "text.jpg"),
        truncated=str(folder / "truncated.jpg"),
    )
    return made


MAX_PIXELS = 50_000  # "over_limit" is 300x200 = 60,000 pixels

ROUTES = {
    "baseline": ("device", "baseline"),
    "baseline_444": ("device", "baseline"),
    "exif_upright": ("device", "baseline"),
    "bad_tables": ("device", "baseline"),  # caught when the device fails to decode it
    "progressive": ("pil", "progressive"),
    "grey": ("pil", "greyscale"),
    "cmyk": ("pil", "CMYK or YCCK"),
    "exif_rotated": ("pil", "EXIF orientation 6"),
    "xmp_rotated": ("pil", "XMP orientation"),
    "png": ("pil", "not a JPEG (no SOI marker)"),
    "empty": ("pil", "not a JPEG (no SOI marker)"),
    "text": ("pil", "not a JPEG (no SOI marker)"),
    "truncated": ("pil", "no EOI marker at the end (truncated, or data after the image)"),
    "over_limit": ("pil", "over the pixel limit"),
}


def test_every_file_kind_takes_its_path(files):
    dataset = JpegRoutingDataset([], SIZE, MAX_PIXELS)
    got = {kind: dataset.route(path)[0] for kind, path in files.items()}
    assert {kind: (r.route, r.reason) for kind, r in got.items()} == ROUTES
    assert (got["baseline"].width, got["baseline"].height) == (96, 64)
    assert (got["baseline_444"].width, got["baseline_444"].height) == (70, 110)
    assert (got["over_limit"].width, got["over_limit"].height) == (300, 200)
    # the header parser alone, on bytes
    assert route_jpeg(b"", MAX_PIXELS).reason == "empty file"
    progressive = Path(files["progressive"]).read_bytes()
    assert route_jpeg(progressive, MAX_PIXELS, progressive_on_device=True).route == "device"


def test_items_off_the_device_path_are_the_pil_paths_own(files):
    """What the workers hand over: bytes for the device, else exactly `ImageListDataset`'s item."""
    paths = list(files.values())
    routed = JpegRoutingDataset(paths, SIZE, MAX_PIXELS)
    plain = ImageListDataset(paths, SIZE, MAX_PIXELS)
    for index, kind in enumerate(files):
        item, reference = routed[index], plain[index]
        if ROUTES[kind][0] == "device":
            assert item.pixels is None
            assert item.error is None
            assert item.encoded.tobytes() == Path(paths[index]).read_bytes()
            continue
        assert item.encoded is None, kind
        assert item.error == reference.error, kind
        assert (item.width, item.height) == (reference.width, reference.height)
        if reference.pixels is not None:
            np.testing.assert_array_equal(item.pixels, reference.pixels)


def test_decode_choice():
    assert resolve_decode("auto", torch.device("cpu")) == "pil"  # the CPU default is unchanged
    assert resolve_decode("pil", torch.device("cpu")) == "pil"
    assert resolve_decode("device", torch.device("cpu")) == "device"
    with pytest.raises(SetupError, match="^decode 'gpu'") as error:  # the CLI adds "--"
        resolve_decode("gpu", torch.device("cpu"))
    assert error.value.argument == "decode"
    assert [draft_scale(w, h, 224) for w, h in [(500, 375), (700, 500), (1000, 900)]] == [1, 2, 4]
    assert draft_scale(2000, 1800, 224) == 8


@pytest.mark.parametrize("device", DEVICES)
def test_a_mixed_batch_keeps_order_sizes_and_error_lines(files, device):
    paths = list(files.values())
    routed = JpegRoutingDataset(paths, SIZE, MAX_PIXELS)
    batch = collate_images([routed[i] for i in range(len(paths))])
    assert batch.pending is not None
    assert len(batch.pending.items) == 4
    done = decode_pending(batch, torch.device(device), SIZE, MAX_PIXELS)
    reference = collate_images(
        [ImageListDataset(paths, SIZE, MAX_PIXELS)[i] for i in range(len(paths))]
    )

    assert done.pending is None
    assert done.pixels.device.type == device
    assert [s.index for s in done.items] == [s.index for s in reference.items]  # input order
    assert [(s.width, s.height) for s in done.items] == [
        (s.width, s.height) for s in reference.items
    ]
    sizes = {Path(s.path).name: (s.width, s.height) for s in done.items}
    assert sizes["baseline.jpg"] == (96, 64)
    assert sizes["b444.jpg"] == (70, 110)
    assert sizes["rot.jpg"] == (40, 80)  # EXIF orientation 6: the upright size, as PIL gives it
    assert [(s.index, s.error) for s in done.failed] == [
        (s.index, s.error) for s in reference.failed
    ]
    errors = {Path(s.path).name: s.error for s in done.failed}
    assert set(errors) == {"bad_tables.jpg", "big.jpg", "empty.jpg", "text.jpg", "truncated.jpg"}
    assert errors["empty.jpg"] == "empty file (0 bytes)"
    assert errors["big.jpg"].startswith("refused: 300x200 = 60000 pixels exceeds the limit")
    assert "truncated" in errors["truncated.jpg"]
    difference = (done.pixels.cpu().int() - reference.pixels.int()).abs().float()
    if device == "cpu":  # libjpeg on both paths: the resize's rounding only
        assert difference.max() <= 2, difference.max()
    else:  # nvJPEG's IDCT and chroma upsampling are not libjpeg's: a loose bound, unmeasured
        assert difference.mean() < 3.0, difference.mean()


def _sample_pixels(paths: list[str], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    routed = JpegRoutingDataset(paths, SIZE)
    batch = collate_images([routed[i] for i in range(len(paths))])
    assert batch.pending is not None
    assert len(batch.pending.items) == len(paths)
    done = decode_pending(batch, torch.device(device), SIZE, routed.max_pixels)
    reference = collate_images([ImageListDataset(paths, SIZE)[i] for i in range(len(paths))])
    return done.pixels.cpu().int(), reference.pixels.int()


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_pixels_match_the_pil_path_on_the_real_sample(sample_dir, device):
    """The 434 real photos (227x227, so no draft scaling): measured on the CPU, mean absolute
    difference 0.0035 and max 2 grey levels (libjpeg decodes on both paths; the resize differs
    by rounding only)."""
    paths = sorted(str(p) for p in (sample_dir / "val").iterdir())
    for start in range(0, len(paths), 64):
        got, want = _sample_pixels(paths[start : start + 64], device)
        difference = (got - want).abs().float()
        if device == "cpu":
            assert difference.mean() < 0.01, difference.max()
            assert difference.max() <= 2, difference.max()
        else:  # nvJPEG's IDCT and chroma upsampling differ from libjpeg's: not measured yet
            assert difference.mean() < 2.0, difference.mean()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("width", "height"), [(700, 500), (1000, 900), (2000, 1800)])
def test_large_jpegs_are_scaled_as_pil_drafts_them(tmp_path, device, width, height):
    """Draft's DCT scaling by 2, 4 and 8, stood in for by block averages. Measured on the CPU
    on these images: mean absolute difference 0.46, 0.43 and 0.37 grey levels, max 25, 14 and
    6 (on real photos tiled into large JPEGs 0.3-0.5 and max 15-21, where one antialiased
    resize of the full image gave 2.4-3.2 and max 60-66)."""
    paths = [save(tmp_path, f"{i}.jpg", photo(width, height, seed=i), quality=90) for i in range(2)]
    got, want = _sample_pixels(paths, device)
    difference = (got - want).abs().float()
    assert difference.mean() < (1.0 if device == "cpu" else 2.5), difference.mean()
    assert device != "cpu" or difference.max() <= 40, difference.max()


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_real_sample_figures_with_device_decoding(sample_dir, mobilenet_weights, device):
    """`cam-cli eval --decode device --no-fast` on the 434-image sample: within 0.25 points of
    the PIL path's fp32 figures (on the CPU the README's 51.61 / 42.63, GT-known 40.78, which
    test_localizer checks; on CUDA the PIL path is run too). Measured on the CPU: the same
    localization figures; top-5 classification 5.99 instead of 6.22 (one image)."""
    from cam_cli.eval_options import EvalOptions, SourceOptions, TruthOptions
    from cam_cli.evaluation.evaluate import evaluate
    from cam_cli.inference.localizer import RunOptions
    from cam_cli.models.loading import ModelOptions

    def figures(decode: str) -> dict:
        report = evaluate(
            EvalOptions(
                truth=TruthOptions(
                    images=sample_dir / "val", annotations=sample_dir / "LOC_val_solution.csv"
                ),
                source=SourceOptions(
                    model=ModelOptions(
                        arch="mobilenet_v2",
                        weights=str(mobilenet_weights),
                        classes_file=sample_dir / "LOC_synset_mapping.txt",
                    ),
                    run=RunOptions(
                        device=device,
                        fast=False,
                        decode=decode,
                        workers=0 if device == "cpu" else 2,
                    ),
                ),
            )
        ).to_json()
        assert report["settings"]["decode"] == decode
        assert report["images"] == 434
        assert report["failed_images"] == 0
        return report

    keys = ("top1_loc_error", "top5_loc_error", "gt_known_loc_error")
    readme = dict(zip(keys, (51.61, 42.63, 40.78), strict=True))
    pil = readme if device == "cpu" else figures("pil")
    report = figures("device")
    for key in keys:
        assert abs(report[key] - pil[key]) <= 0.25, (key, report[key], pil[key])


@pytest.mark.slow
def test_the_commands_take_decode(files, sample_dir, mobilenet_weights, tmp_path):
    """`--decode` on bbox (real run: workers route, the CPU decodes), cam and eval (--help),
    and refused where eval scores records without a model."""
    import json
    import os
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "cam_cli", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    photos = sorted(str(p) for p in (sample_dir / "val").iterdir())[:3]
    inputs = [photos[0], files["empty"], photos[1], files["progressive"], photos[2]]
    result = run("bbox", "--arch", "mobilenet_v2", "--weights", str(mobilenet_weights),
                 "--classes", str(sample_dir / "LOC_synset_mapping.txt"), "--device", "cpu",
                 "--decode", "device", "--workers", "1", "--topk", "1", *inputs)  # fmt: skip
    assert result.returncode == 1, result.stderr  # the empty file
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == inputs
    assert records[1] == {"path": files["empty"], "error": "empty file (0 bytes)"}
    assert f"{files['empty']}: empty file (0 bytes)" in result.stderr
    assert (records[3]["width"], records[3]["height"]) == (96, 64)  # by PIL, in the worker
    assert all((r["width"], r["height"]) == (227, 227) for r in records[::2])
    assert "decoded 3 JPEGs on cpu and 2 files with PIL" in result.stderr
    for command in ("bbox", "cam", "eval"):
        assert "--decode" in run(command, "--help").stdout
    refused = run("eval", "--predictions", "-", "--annotations", str(tmp_path), "--decode", "pil")
    assert refused.returncode == 2
    assert "leave out --decode" in refused.stderr


def test_an_image_the_device_cannot_resize_goes_to_pil(files, monkeypatch):
    """A resize the device refuses (CUDA's antialiasing has a shared-memory limit on extreme
    downscales) sends those images to the PIL path: PIL's exact pixels, nothing lost."""
    from cam_cli.data import decode

    real = decode.resize_like_pil

    def refuse_96x64(images, size):
        if tuple(images.shape[-2:]) == (64, 96):
            raise RuntimeError("Too much shared memory required")
        return real(images, size)

    monkeypatch.setattr(decode, "resize_like_pil", refuse_96x64)
    paths = [files["baseline_444"], files["baseline"], files["png"]]
    routed = JpegRoutingDataset(paths, SIZE)
    done = decode_pending(
        collate_images([routed[i] for i in range(3)]), torch.device("cpu"), SIZE, 10**9
    )
    assert [s.path for s in done.items] == paths
    assert not done.failed
    np.testing.assert_array_equal(done.pixels[1].numpy(), ImageListDataset(paths, SIZE)[1].pixels)


@pytest.mark.slow
def test_torchvisions_deprecation_warning_does_not_reach_stderr(tmp_path):
    import os
    import subprocess
    import sys

    from cam_cli.models.registry import build_model

    Image.fromarray(np.full((40, 48, 3), 128, np.uint8)).save(tmp_path / "a.jpg")
    torch.save(build_model("small-gap", 2).state_dict(), tmp_path / "w.pth")
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # DeprecationWarnings shown, as in pytest
    args = ["bbox", "--arch", "small-gap", "--weights", tmp_path / "w.pth", "--images",
            tmp_path / "a.jpg", "--decode", "device", "--device", "cpu", "-q"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "cam_cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1, proc.stderr
    assert proc.stderr == ""
