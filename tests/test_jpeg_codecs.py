"""The JPEG decoder libraries (`data.jpeg_codecs`): which one a process uses and how to force
one, that a batch with a bad file still gives every good image, and what was measured on the
CPU: TorchCodec 0.17, torchvision 0.29 and PIL decode the same pixels bit for bit (libjpeg-turbo
in all three, default settings), on the 434 sample photos and on every JPEG kind the device
path takes. The TorchCodec tests skip where it is not installed (``pip install -e
".[torchcodec]"``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEVICES
from PIL import Image
from test_decode import photo

from cam_cli.data import decode, jpeg_codecs
from cam_cli.data.jpeg_codecs import ENV_VAR, decode_jpegs, jpeg_codec
from cam_cli.errors import SetupError

HAVE_TORCHCODEC = jpeg_codecs.torchcodec_problem() is None
needs_torchcodec = pytest.mark.skipif(
    not HAVE_TORCHCODEC,
    reason=f"TorchCodec does not work here ({jpeg_codecs.torchcodec_problem()})",
)
CODECS = ["torchvision", pytest.param("torchcodec", marks=needs_torchcodec)]


@pytest.fixture
def fresh(monkeypatch):
    """`jpeg_codec` and `decode._probe` decided anew in this test (both cache per process)."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(decode, "_probed", {})
    jpeg_codec.cache_clear()
    yield monkeypatch
    jpeg_codec.cache_clear()


def encoded(image: Image.Image, **kwargs) -> torch.Tensor:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def pil_rgb(data: torch.Tensor) -> torch.Tensor:
    with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


def test_the_codec_is_torchcodec_where_it_works_and_can_be_forced(fresh):
    assert jpeg_codec() == ("torchcodec" if HAVE_TORCHCODEC else "torchvision")
    for value, expected in [("torchvision", "torchvision"), (" TorchVision ", "torchvision")]:
        fresh.setenv(ENV_VAR, value)
        jpeg_codec.cache_clear()
        assert jpeg_codec() == expected
    fresh.setenv(ENV_VAR, "nvjpeg")
    jpeg_codec.cache_clear()
    with pytest.raises(SetupError, match=f"^{ENV_VAR}='nvjpeg': use one of auto, torchcodec, "):
        jpeg_codec()


def test_a_torchcodec_that_does_not_work_falls_back_unless_forced(fresh):
    fresh.setattr(jpeg_codecs, "torchcodec_problem", lambda: "built for another torch")
    assert jpeg_codec() == "torchvision"
    fresh.setenv(ENV_VAR, "torchcodec")
    jpeg_codec.cache_clear()
    with pytest.raises(SetupError, match="TorchCodec does not work here .built for another"):
        jpeg_codec()
    # --decode device names the reason; auto would use PIL with a warning
    with pytest.raises(SetupError, match="^`decode` device: cannot decode JPEGs on cpu .CAM_CLI"):
        decode.resolve_decode("device", torch.device("cpu"))


def test_the_probe_names_the_codec(fresh):
    def refuse(files, device):
        raise RuntimeError("no decoder here\nsecond line")

    fresh.setenv(ENV_VAR, "torchvision")
    fresh.setattr(decode, "decode_jpegs", refuse)
    with pytest.raises(SetupError) as error:
        decode.resolve_decode("device", torch.device("cpu"))
    assert str(error.value) == (
        "`decode` device: cannot decode JPEGs on cpu (torchvision: no decoder here)"
    )
    # e.g. a TorchCodec built without nvJPEG, on CUDA: the way out is named
    fresh.setattr(decode, "_probed", {})
    fresh.setattr(decode, "jpeg_codec", lambda: "torchcodec")
    with pytest.raises(SetupError) as error:
        decode.resolve_decode("device", torch.device("cpu"))
    assert str(error.value).endswith(
        "(torchcodec: no decoder here; CAM_CLI_JPEG_CODEC=torchvision uses torchvision's decoder)"
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("codec", CODECS)
def test_a_bad_file_costs_only_itself(fresh, codec, device):
    """One batched call; when it raises, file by file: the good files still come back."""
    fresh.setenv(ENV_VAR, codec)
    good = [encoded(photo(40, 24, seed=i), quality=90) for i in range(2)]
    bad = torch.frombuffer(bytearray(b"\xff\xd8\xff\xe0 not a JPEG"), dtype=torch.uint8)
    assert decode_jpegs([], torch.device(device)) == []
    together = decode_jpegs(good, torch.device(device))
    decoded = decode_jpegs([good[0], bad, good[1]], torch.device(device))
    assert isinstance(decoded[1], Exception)
    for image, alone in zip(decoded[::2], together, strict=True):
        assert image.device.type == device
        assert image.dtype == torch.uint8
        assert tuple(image.shape) == (3, 24, 40)
        assert torch.equal(image, alone)


@needs_torchcodec
def test_torchcodec_torchvision_and_pil_agree_bit_for_bit_on_every_kind(fresh):
    """Every JPEG kind the device path can take (chroma 4:2:0, 4:2:2, 4:4:4, progressive when
    asked), and those it leaves to PIL (greyscale, CMYK): the same pixels from all three.
    TorchCodec applies EXIF orientation (torchvision does not), which is why the router sends
    rotated files to PIL."""
    base = photo(333, 251, seed=3)
    rotated = Image.Exif()
    rotated[0x0112] = 6
    kinds = {
        "4:2:0": encoded(base, quality=90),
        "4:2:2": encoded(base, quality=90, subsampling=1),
        "4:4:4": encoded(base, quality=90, subsampling=0),
        "progressive": encoded(base, quality=90, progressive=True),
        "quality 50": encoded(base, quality=50),
        "greyscale": encoded(base.convert("L"), quality=90),
        "CMYK": encoded(base.convert("CMYK"), quality=90),
    }
    cpu = torch.device("cpu")
    by = {}
    for codec in ("torchcodec", "torchvision"):
        fresh.setenv(ENV_VAR, codec)
        jpeg_codec.cache_clear()
        by[codec] = decode_jpegs(list(kinds.values()), cpu)
        by[codec + " rotated"] = decode_jpegs([encoded(base, quality=90, exif=rotated)], cpu)[0]
    for kind, tc, tv, data in zip(
        kinds, by["torchcodec"], by["torchvision"], kinds.values(), strict=True
    ):
        assert torch.equal(tc, tv), kind
        assert torch.equal(tc, pil_rgb(data)), kind
    assert tuple(by["torchcodec rotated"].shape) == (3, 333, 251)  # turned upright
    assert tuple(by["torchvision rotated"].shape) == (3, 251, 333)  # as stored


@needs_torchcodec
@pytest.mark.slow
def test_the_sample_decodes_to_the_same_pixels_with_either_codec(fresh, sample_dir):
    """The 434 sample photos at full size: TorchCodec == torchvision == PIL (Image.open,
    convert RGB) bit for bit, measured on the CPU (max and mean absolute difference 0)."""
    paths = sorted((sample_dir / "val").iterdir())
    files = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    by = {}
    for codec in ("torchcodec", "torchvision"):
        fresh.setenv(ENV_VAR, codec)
        jpeg_codec.cache_clear()
        by[codec] = decode_jpegs(files, torch.device("cpu"))
    for path, data, tc, tv in zip(paths, files, by["torchcodec"], by["torchvision"], strict=True):
        assert isinstance(tc, torch.Tensor), (path.name, tc)
        assert torch.equal(tc, tv), Path(path).name
        assert torch.equal(tc, pil_rgb(data)), Path(path).name


@needs_torchcodec
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_on_cuda_both_codecs_stay_close_to_libjpeg(fresh, sample_dir):
    """nvJPEG on CUDA, through each library: close to the CPU's libjpeg pixels (a loose bound,
    unmeasured: nvJPEG's IDCT and chroma upsampling are not libjpeg's)."""
    paths = sorted((sample_dir / "val").iterdir())[:64]
    files = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    want = [pil_rgb(data).int() for data in files]
    for codec in ("torchcodec", "torchvision"):
        fresh.setenv(ENV_VAR, codec)
        jpeg_codec.cache_clear()
        got = decode_jpegs(files, torch.device("cuda"))
        for path, image, reference in zip(paths, got, want, strict=True):
            assert isinstance(image, torch.Tensor), (codec, path.name, image)
            assert image.is_cuda, (codec, path.name, image)
            difference = (image.cpu().int() - reference).abs().float()
            assert difference.mean() < 2.0, (codec, path.name, difference.mean())
