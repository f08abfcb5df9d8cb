"""The one place that calls a JPEG decoder library: TorchCodec where it works, else torchvision.

torchvision's image decoders are deprecated since 0.29 in favour of TorchCodec (0.16+), which
decodes JPEGs with libjpeg-turbo on the CPU and with batched nvJPEG on CUDA, without FFmpeg.
Both are asked for the same thing (8-bit RGB, ``[3, H, W]`` uint8 on the device, one batched
call per batch); on the CPU both run libjpeg-turbo with its default settings, so their pixels
are the same bit for bit (on the 434-image sample; `tests/test_jpeg_codecs.py` pins it).

Which one this process uses (`jpeg_codec`): ``CAM_CLI_JPEG_CODEC=torchcodec|torchvision`` forces
one; unset (or ``auto``), TorchCodec if it imports and decodes a tiny JPEG here, torchvision
otherwise. TorchCodec is tied to torch (0.17: torch's stable ABI, torch 2.11 or newer, and one
CUDA major version): a mismatched build fails to load its libraries, and this falls back
rather than fails. On the CPU it is slower per call (0.34 against 0.30 ms for a 227x227 photo
here); the CPU decodes this way only with `decode` ``device`` and `device` ``cpu``.

CUDA streams, which differ between the two:
- torchvision (0.29) allocates its outputs on the current stream but has nvJPEG write them on a
  private stream that does not wait for the current one (pytorch/vision PR #9606): the caching
  allocator may hand it blocks that kernels queued on the current stream still read. So the
  caller drains its stream first and decodes on a stream no other thread uses
  (`data.decode._decode_all`, in `inference.threads.decoded_beside`'s thread).
- TorchCodec (0.17) decodes on the caller's current stream and host-synchronizes that stream
  before the hardware batch (nvJPEG's hardware engine ignores stream order; torchcodec PR
  #1634) and again before returning. Its outputs are complete on return and ordered after
  everything queued on the current stream; nothing is drained here. Used from another thread
  with its own stream, the outputs belong to that stream (``record_stream`` them where another
  stream reads them).

TorchCodec also applies EXIF orientation and torchvision does not; the router
(`data.decode.route_jpeg`) sends every rotated file to PIL, so neither rotates anything here.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Callable
from functools import cache
from typing import cast

import torch

from cam_cli.errors import SetupError

logger = logging.getLogger(__name__)
# torchvision 0.29 deprecates its image codecs (for TorchCodec) with a DeprecationWarning on
# every decode_jpeg call: a note to this module's author, not to the user (filtered by its text).
warnings.filterwarnings(
    "ignore",
    message="The image decoding and encoding capabilities of TorchVision are deprecated",
    category=DeprecationWarning,
)

ENV_VAR = "CAM_CLI_JPEG_CODEC"
CODECS = ("torchcodec", "torchvision")

# (one file or a list of files, device) -> one image or a list of images
Decoder = Callable[..., "torch.Tensor | list[torch.Tensor]"]


def _tiny_jpeg() -> torch.Tensor:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 30, 10)).save(buffer, "JPEG")
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def _torchcodec_decoder() -> Decoder:
    from torchcodec.decoders import decode_jpeg

    def decode(
        data: list[torch.Tensor] | torch.Tensor, device: torch.device
    ) -> torch.Tensor | list[torch.Tensor]:
        return decode_jpeg(data, mode="RGB", device=device)

    return decode


def _torchvision_decoder() -> Decoder:
    from torchvision.io import ImageReadMode, decode_jpeg

    def decode(
        data: list[torch.Tensor] | torch.Tensor, device: torch.device
    ) -> torch.Tensor | list[torch.Tensor]:
        return decode_jpeg(data, device=device, mode=ImageReadMode.RGB)

    return decode


_DECODERS = {"torchcodec": _torchcodec_decoder, "torchvision": _torchvision_decoder}


@cache
def torchcodec_problem() -> str | None:
    """None if TorchCodec imports and decodes a JPEG on the CPU here, else why not."""
    try:
        image = _torchcodec_decoder()(_tiny_jpeg(), torch.device("cpu"))
        if not isinstance(image, torch.Tensor) or tuple(image.shape) != (3, 8, 16):
            return f"decoded a 16x8 JPEG to {getattr(image, 'shape', type(image))}"
    except Exception as error:  # noqa: BLE001 - not installed, or built for another torch
        return (str(error).strip().splitlines() or [type(error).__name__])[0]
    return None


@cache
def jpeg_codec() -> str:
    """The library this process decodes JPEGs with, "torchcodec" or "torchvision" (cached).

    ``CAM_CLI_JPEG_CODEC`` forces one; forcing TorchCodec where it does not work is a
    `SetupError` (which `decode` ``auto`` turns into PIL decoding with a warning).
    """
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced not in ("", "auto", *CODECS):
        raise SetupError(f"{ENV_VAR}={forced!r}: use one of auto, {', '.join(CODECS)}")
    if forced == "torchvision":
        return "torchvision"
    problem = torchcodec_problem()
    if problem is None:
        return "torchcodec"
    if forced == "torchcodec":
        raise SetupError(f"{ENV_VAR}=torchcodec: TorchCodec does not work here ({problem})")
    logger.debug("TorchCodec does not work here (%s); decoding JPEGs with torchvision", problem)
    return "torchvision"


def decode_jpegs(files: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | Exception]:
    """Every file (1-D uint8 CPU tensor) decoded to a ``[3, H, W]`` uint8 tensor on ``device``,
    or the exception it raised: one batched call, file by file only if that raises, so one bad
    file costs a retry of its batch and nothing else."""
    if not files:
        return []
    codec = jpeg_codec()
    decode = _DECODERS[codec]()
    try:
        return list(decode(files, device))
    except Exception:  # noqa: BLE001 - one bad file: find it below
        pass
    decoded: list[torch.Tensor | Exception] = []
    for data in files:
        try:
            # one file in, one image out (the Decoder's union is for the batched call)
            decoded.append(cast(torch.Tensor, decode(data, device)))
        except Exception as error:  # noqa: BLE001 - this file goes to PIL
            decoded.append(error)
    return decoded
