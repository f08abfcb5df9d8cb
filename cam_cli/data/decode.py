"""Decoding JPEGs where the network runs (nvJPEG on CUDA), so decoding keeps up with a GPU.

Each file is routed once, in the DataLoader worker that reads it (`JpegRoutingDataset`):
- "device": a plain 8-bit 3-component (YCbCr) baseline JPEG with nothing that would change
  its pixels (no EXIF/XMP rotation, within the pixel limit, ending in an EOI marker). Only
  its bytes travel to the main process;
- "pil": anything else (PNG, greyscale, CMYK/YCCK, 12-bit, progressive, arithmetic-coded,
  lossless, rotated, truncated, empty, not an image, over the pixel limit...) is decoded and
  resized right there by the robust PIL path (`data.images.load_resized`), so it gets the
  same pixels or the same one-line error as without device decoding.

In the main process `decode_pending` decodes a batch's JPEGs with one batched call
(`jpeg_codecs.decode_jpegs`: TorchCodec where it works, else torchvision); if that raises, it
retries file by file, and a file the device cannot decode goes to the PIL path (one bad file
never fails the batch). The decoded images are resized on the device as the PIL path resizes
them:
- PIL decodes a JPEG in draft mode (libjpeg's DCT scaling by 1/2, 1/4 or 1/8, never below the
  input size); an average over the same blocks stands in for it (on the 434-image sample's
  photos tiled into large JPEGs: mean absolute difference 0.3-0.5 grey levels, against 2.4-3.2
  for one antialiased resize of the full image);
- then Pillow's BILINEAR (antialiased on downscale), horizontal pass first, each pass rounded
  to 8 bits: the same two passes with ``interpolate(antialias=True)`` on float give pixels
  within 2 grey levels of Pillow's (mean 0.0035 on the sample, decoded by libjpeg on the CPU).

The same code runs on the CPU (``decode="device"`` with `device` ``cpu``), which is how it is
tested where there is no GPU.

On CUDA, decode in a thread of its own on a CUDA stream of its own
(`inference.threads.decoded_beside`): torchvision writes nvJPEG's output on a private stream
that does not wait for the current one (see `jpeg_codecs`), so the decoding thread's stream is
drained before each decode (that stream alone, not the device). No other thread queues work
on it or frees blocks into its pool, so the drain covers every block the decode can be given;
batches reach the network's stream with an event and ``record_stream`` (`runtime.streams`).
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from cam_cli.data.batches import (
    DecodedImage,
    ImageBatch,
    ImageListDataset,
    decode_item,
    stack_pixels,
)
from cam_cli.data.jpeg_codecs import decode_jpegs, jpeg_codec
from cam_cli.errors import ArgumentError, SetupError
from cam_cli.runtime.streams import drain_current, to_device
from cam_cli.settings import DecodeMode, choices

logger = logging.getLogger(__name__)
DECODE_CHOICES = choices(DecodeMode)
# Bigger files go to PIL, which streams them (a valid JPEG within the pixel limit is smaller).
MAX_ENCODED_BYTES = 256 * 1024 * 1024

_SOF_NAMES = {
    0xC0: "baseline",
    0xC1: "extended sequential",
    0xC2: "progressive",
    0xC3: "lossless",
    0xC5: "hierarchical",
    0xC6: "hierarchical progressive",
    0xC7: "hierarchical lossless",
    0xC9: "arithmetic-coded",
    0xCA: "arithmetic-coded progressive",
    0xCB: "arithmetic-coded lossless",
    0xCD: "hierarchical arithmetic-coded",
    0xCE: "hierarchical arithmetic-coded progressive",
    0xCF: "hierarchical arithmetic-coded lossless",
}
# (horizontal, vertical) luma sampling factors nvJPEG decodes (chroma 1x1): 4:4:4, 4:2:2,
# 4:4:0, 4:2:0, 4:1:1, 4:1:0.
_LUMA_SAMPLING = {(1, 1), (2, 1), (1, 2), (2, 2), (4, 1), (4, 2)}


@dataclass(frozen=True)
class JpegRoute:
    """Where one file is decoded, and why; width and height are the header's (0 if unknown)."""

    route: str  # "device" or "pil"
    reason: str
    width: int = 0
    height: int = 0


def _pil(reason: str, width: int = 0, height: int = 0) -> JpegRoute:
    return JpegRoute("pil", reason, width, height)


def _exif_orientation(payload: bytes) -> int | None:
    """The orientation tag (0x0112) of IFD0 in an APP1 ``Exif\\0\\0`` payload; None if absent.

    Raises ValueError for a malformed block (the PIL path then decides what it is).
    """
    tiff = payload[6:]
    if tiff[:4] == b"II*\x00":
        endian = "<"
    elif tiff[:4] == b"MM\x00*":
        endian = ">"
    else:
        raise ValueError("not a TIFF header")
    try:
        (ifd,) = struct.unpack_from(endian + "I", tiff, 4)
        (count,) = struct.unpack_from(endian + "H", tiff, ifd)
        for i in range(count):
            tag, kind = struct.unpack_from(endian + "HH", tiff, ifd + 2 + 12 * i)
            if tag == 0x0112:
                if kind != 3:  # SHORT
                    raise ValueError("orientation is not a SHORT")
                return struct.unpack_from(endian + "H", tiff, ifd + 2 + 12 * i + 8)[0]
    except struct.error:
        raise ValueError("EXIF block ends early") from None
    return None


def route_jpeg(
    data: bytes | bytearray | memoryview,
    max_pixels: int,
    *,
    progressive_on_device: bool = False,
) -> JpegRoute:
    """Read a file's JPEG headers (up to the first scan) and decide where it is decoded.

    Cheap: no entropy-coded data is touched. ``progressive_on_device``: torchvision decodes
    progressive JPEGs on CUDA one at a time with nvJPEG's CPU Huffman stage, in the main
    process; by default they go to the DataLoader workers' PIL path instead, which decodes
    them in parallel.
    """
    data = memoryview(data)
    size = len(data)
    if size == 0:
        return _pil("empty file")
    if bytes(data[:3]) != b"\xff\xd8\xff":
        return _pil("not a JPEG (no SOI marker)")
    if not bytes(data[-64:]).rstrip(b"\x00").endswith(b"\xff\xd9"):
        return _pil("no EOI marker at the end (truncated, or data after the image)")
    frame: tuple[int, int, int, int, bytes] | None = None  # marker, precision, width, height, comps
    orientation: int | None = None
    xmp_rotated = False
    adobe_transform: int | None = None
    pos = 2
    while True:
        while pos < size and data[pos] == 0xFF and pos + 1 < size and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > size or data[pos] != 0xFF:
            return _pil("malformed JPEG headers")
        marker = data[pos + 1]
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers, no length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        body = bytes(data[pos + 4 : pos + 2 + length])
        if length < 2 or len(body) != length - 2:
            return _pil("malformed JPEG headers")
        if marker == 0xDA:  # start of scan: the headers are over
            break
        if marker == 0xD9:
            return _pil("malformed JPEG headers")
        if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
            try:
                found = _exif_orientation(body)
            except ValueError as error:
                return _pil(f"unreadable EXIF ({error})")
            orientation = orientation if orientation is not None else found
        elif marker == 0xE1 and body.startswith(b"http://ns.adobe.com/xap/1.0/\x00"):
            # Pillow takes the orientation from XMP when EXIF has none
            xmp_rotated = b"tiff:Orientation" in body and not any(
                form in body for form in (b'tiff:Orientation="1"', b"tiff:Orientation>1<")
            )
        elif marker == 0xE2 and body.startswith(b"MPF\x00"):
            return _pil("multi-picture (MPO) file")
        elif marker == 0xEE and body.startswith(b"Adobe") and len(body) >= 12:
            adobe_transform = body[11]
        elif marker in _SOF_NAMES:
            if frame is not None:
                return _pil("more than one frame header")
            if len(body) < 6:
                return _pil("malformed JPEG headers")
            precision, height, width, count = struct.unpack_from(">BHHB", body)
            frame = (marker, precision, width, height, body[6 : 6 + 3 * count])
        pos += 2 + length
    if frame is None:
        return _pil("no frame header before the scan")
    marker, precision, width, height, components = frame
    if width == 0 or height == 0:
        return _pil("size not in the frame header")
    if width * height > max_pixels:
        return _pil("over the pixel limit", width, height)
    if orientation not in (None, 1):
        return _pil(f"EXIF orientation {orientation}", width, height)
    if xmp_rotated:
        return _pil("XMP orientation", width, height)
    if marker not in (0xC0, 0xC2) or (marker == 0xC2 and not progressive_on_device):
        return _pil(_SOF_NAMES[marker], width, height)
    if precision != 8:
        return _pil(f"{precision}-bit samples", width, height)
    count = len(components) // 3
    if count == 1:
        return _pil("greyscale", width, height)
    if count == 4:
        return _pil("CMYK or YCCK", width, height)
    if count != 3:
        return _pil(f"{count} components", width, height)
    if adobe_transform == 0 or components[0::3] == b"RGB":
        return _pil("RGB-coded (not YCbCr)", width, height)
    sampling = [(c >> 4, c & 15) for c in components[1::3]]
    if sampling[0] not in _LUMA_SAMPLING or sampling[1:] != [(1, 1), (1, 1)]:
        return _pil("unusual chroma subsampling", width, height)
    return JpegRoute("device", _SOF_NAMES[marker], width, height)


class JpegRoutingDataset(ImageListDataset):
    """`ImageListDataset` for device decoding: a JPEG the device can take comes back as its
    bytes (``DecodedImage.encoded``, size from its header); anything else is decoded here by
    the PIL path, exactly as `ImageListDataset` does. Never raises."""

    progressive_on_device = False

    def route(self, path: str) -> tuple[JpegRoute, bytearray | None]:
        """Where ``path`` is decoded, with its bytes when it goes to the device."""
        if not os.path.isfile(path):  # a FIFO would block here; PIL's path names it
            return _pil("not a regular file"), None
        try:
            with open(path, "rb") as handle:
                if handle.read(3) != b"\xff\xd8\xff":
                    return _pil("not a JPEG (no SOI marker)"), None
                size = os.fstat(handle.fileno()).st_size
                if size > MAX_ENCODED_BYTES:
                    return _pil("file too big to read at once"), None
                data = bytearray(size)
                handle.seek(0)
                if handle.readinto(data) != size:
                    return _pil("file changed while read"), None
        except OSError as error:
            return _pil(f"unreadable ({error.strerror})"), None  # PIL says it its own way
        decision = route_jpeg(
            data, self.max_pixels, progressive_on_device=self.progressive_on_device
        )
        return decision, data if decision.route == "device" else None

    def __getitem__(self, index: int) -> DecodedImage:
        path = self.paths[index]
        decision, data = self.route(path)
        if data is None:
            return decode_item(index, path, self.size, self.max_pixels)
        encoded = np.frombuffer(data, dtype=np.uint8)
        return DecodedImage(index, path, decision.width, decision.height, None, encoded=encoded)


# --- the main process: decode on the device, resize, merge ---------------------------------


_probed: dict[str, str | None] = {}
_warned: set[str] = set()


def _probe(device: torch.device) -> str | None:
    """None if this process's JPEG codec decodes a JPEG on ``device`` here, else why not, naming
    the codec (cached)."""
    key = str(device)
    if key not in _probed:
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (16, 8), (200, 30, 10)).save(buffer, "JPEG")
        data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
        codec = ""
        try:
            codec = jpeg_codec()  # a SetupError if CAM_CLI_JPEG_CODEC asks for what is not here
            decoded = _decode_all([data], device)[0]  # as every decode: the stream drained
            if isinstance(decoded, Exception):
                raise decoded
            _probed[key] = None
        except Exception as error:  # noqa: BLE001 - any failure means: not here
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if codec == "torchcodec":
                reason += "; CAM_CLI_JPEG_CODEC=torchvision uses torchvision's decoder"
            _probed[key] = f"{codec}: {reason}" if codec else reason
    return _probed[key]


def resolve_decode(decode: str, device: torch.device) -> str:
    """`decode` -> "device" or "pil". ``auto``: the device on CUDA when the JPEG codec can
    decode JPEGs there (else PIL, with a warning), PIL on the CPU; ``device`` where it cannot
    is a `SetupError`."""
    if decode not in DECODE_CHOICES:
        raise ArgumentError("decode", f"{decode!r}: use one of {', '.join(DECODE_CHOICES)}")
    if decode == "pil" or (decode == "auto" and device.type != "cuda"):
        return "pil"
    problem = _probe(device)
    if problem is None:
        return "device"
    if decode == "device":
        raise SetupError(f"`decode` device: cannot decode JPEGs on {device} ({problem})")
    if str(device) not in _warned:
        _warned.add(str(device))
        logger.warning("JPEG decoding on %s is not available (%s); using PIL", device, problem)
    return "pil"


def _decode_all(files: list[torch.Tensor], device: torch.device) -> list:
    """`jpeg_codecs.decode_jpegs`: a ``[3, H, W]`` uint8 tensor on ``device`` or the exception,
    per file, after this thread's stream is drained.

    On CUDA, torchvision's nvJPEG decode writes its outputs on a private stream without
    waiting for the current one, into blocks the caching allocator may have recycled from
    tensors that kernels queued on it still read (pytorch/vision PR #9606; TorchCodec waits
    itself, torchcodec PR #1634): this thread's stream is drained first, the decode thread's own
    (`runtime.streams.drain_current`; nothing on the CPU), which waits for its last resize
    alone. Drained for either codec: one place, and TorchCodec's own wait then finds it idle."""
    drain_current(device)
    return decode_jpegs(files, device)


def _round8(x: torch.Tensor) -> torch.Tensor:
    """Round half up and clip to 0..255, as Pillow stores each pass in 8 bits (in place)."""
    return x.add_(0.5).floor_().clamp_(0, 255)


def draft_scale(width: int, height: int, size: int) -> int:
    """The DCT scaling Pillow's ``draft`` picks for a ``size`` x ``size`` target: 8, 4, 2 or 1."""
    scale = min(width // size, height // size)
    return next((s for s in (8, 4, 2) if scale >= s), 1)


def resize_like_pil(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` (one JPEG size) -> uint8 ``[N, 3, size, size]``, as `load_resized`
    makes them: draft's DCT scaling (as a block average), then Pillow's BILINEAR, horizontal
    pass first, each pass rounded to 8 bits."""
    import torch.nn.functional as F

    height, width = images.shape[-2:]
    x = images.float()
    scale = draft_scale(width, height, size)
    if scale > 1:
        x = _round8(F.avg_pool2d(x, scale, ceil_mode=True))
        height, width = x.shape[-2:]
    if width != size:
        x = _round8(F.interpolate(x, size=(height, size), mode="bilinear", antialias=True))
    if height != size:
        x = _round8(F.interpolate(x, size=(size, size), mode="bilinear", antialias=True))
    return x.to(torch.uint8)


# Pixels resized together at most (float32 working copies: 4 bytes x 3 channels each).
_RESIZE_PIXELS = 32_000_000


def decode_pending(
    batch: ImageBatch, device: torch.device, size: int, max_pixels: int
) -> ImageBatch:
    """A batch with its pending JPEGs decoded on ``device`` and resized to ``size``: every good
    image in ``pixels`` (on ``device``) in input order, failures in ``failed`` with the PIL
    path's error. A batch without pending files is returned as it is."""
    return _decode_pending(batch, device, size, max_pixels)[0]


def _decode_pending(
    batch: ImageBatch, device: torch.device, size: int, max_pixels: int
) -> tuple[ImageBatch, int]:
    """`decode_pending`, and how many images the device decoded."""
    pending = batch.pending
    if pending is None:
        return batch, 0
    decoded = _decode_all(pending.files(), device)
    to_pil: list[tuple[DecodedImage, object]] = []  # with the reason, for the debug log
    groups: dict[tuple[int, int], list[int]] = {}  # decoded size -> positions in pending
    for k, (item, image) in enumerate(zip(pending.items, decoded, strict=True)):
        if isinstance(image, torch.Tensor) and tuple(image.shape) == (3, item.height, item.width):
            groups.setdefault((item.height, item.width), []).append(k)
        else:
            to_pil.append((item, image if isinstance(image, Exception) else tuple(image.shape)))
    # Images of one size are resized together, in chunks of bounded memory.
    resized: dict[int, torch.Tensor] = {}
    for (height, width), positions in groups.items():
        step = max(1, _RESIZE_PIXELS // (height * width))
        for start in range(0, len(positions), step):
            chunk = positions[start : start + step]
            try:
                out = resize_like_pil(torch.stack([decoded[k] for k in chunk]), size)
            except RuntimeError as error:  # e.g. CUDA's antialiasing refuses extreme ratios
                to_pil.extend((pending.items[k], error) for k in chunk)
                continue
            resized.update(zip(chunk, out, strict=True))
    del decoded
    by_pil = []
    for item, reason in to_pil:
        logger.debug("%s: not decoded on %s (%s); using PIL", item.path, device, reason)
        by_pil.append(decode_item(item.index, item.path, size, max_pixels))
    failed = sorted(batch.failed + [s for s in by_pil if s.error], key=lambda s: s.index)
    pil_good = [s for s in by_pil if s.error is None]
    on_device = sorted(resized)
    items = batch.items + pil_good + [pending.items[k] for k in on_device]
    pixels = torch.empty((len(items), 3, size, size), dtype=torch.uint8, device=device)
    if batch.items:  # pinned (the DataLoader's, or here): copied without a host wait
        pixels[: len(batch.items)] = to_device(batch.pixels, device)
    if pil_good:
        rows = slice(len(batch.items), len(batch.items) + len(pil_good))
        pixels[rows] = to_device(torch.from_numpy(stack_pixels(pil_good)), device)
        for s in pil_good:
            s.pixels = None
    if on_device:
        pixels[len(items) - len(on_device) :] = torch.stack([resized[k] for k in on_device])
    order = sorted(range(len(items)), key=lambda i: items[i].index)
    if order != list(range(len(items))):
        # a tensor index, pinned: a list would be copied to the device with a host wait
        pixels = pixels[to_device(torch.tensor(order), device)]
        items = [items[i] for i in order]
    return ImageBatch(pixels, items, failed), len(on_device)


def decode_batches(
    batches: Iterable[ImageBatch], device: torch.device, size: int, max_pixels: int
) -> Iterator[ImageBatch]:
    """`decode_pending` over a stream of batches; says at the end how many were decoded where."""
    counts = {"device": 0, "pil": 0}
    for batch in batches:
        done, on_device = _decode_pending(batch, device, size, max_pixels)
        counts["device"] += on_device
        counts["pil"] += len(done.items) + len(done.failed) - on_device
        yield done
    if counts["device"]:
        logger.info(
            "decoded %d JPEGs on %s and %d files with PIL", counts["device"], device, counts["pil"]
        )
