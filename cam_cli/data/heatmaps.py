"""Saved heatmaps as `cam-cli boxes` reads them: ``.npy`` arrays and grey image files.

A ``.npy`` file holds one map ``[H, W]`` or a stack ``[k, H, W]`` (what `cam-cli cam`'s `npy`
writes, or any tool's maps: torchcam, pytorch-grad-cam, your own), of any real number type.
An image file is read as an 8-bit grey map the way the released ``dt_box`` read its heatmaps
(`load_heatmap`), so a released heatmap JPEG gives the released boxes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cam_cli.data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, open_image, regular_file

HEATMAP_EXTENSIONS = frozenset(IMAGE_EXTENSIONS | {".npy"})
CHANNELS = (1, 3, 4)  # the last axis of an [H, W, C] image: grey, RGB, RGBA


def read_maps(path: str | Path) -> tuple[np.ndarray, bool]:
    """``(maps [k, H, W], stacked)``: the maps of one file, and whether the file held a stack
    (its records then say which map). Raises ValueError with a short reason for a file that is
    not a usable map: unreadable, not an array, wrong shape, empty, not finite, not a regular
    file (a FIFO is never opened: reading it would wait for a writer)."""
    path = Path(path)
    try:
        info = regular_file(path)
    except OSError as error:
        raise ValueError(error.strerror or str(error)) from None
    if path.suffix.lower() == ".npy":
        return _read_npy(path)
    try:
        if info.st_size == 0:
            raise ValueError("empty file (0 bytes)")
        return load_heatmap(path)[None], False
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - PIL's many errors: one line, never a crash
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"not a readable grey image ({reason})") from None


def load_heatmap(path: str | Path) -> np.ndarray:
    """Read a heatmap file as ``uint8 [H, W]`` the way dt_box did: ``cvLoadImage(path, 0)``.

    OpenCV's grey load of a colour JPEG asks libjpeg for ``JCS_GRAYSCALE``, i.e. the decoded Y
    (luma) plane, with no round trip through RGB; ``Image.draft("L")`` makes Pillow's libjpeg do
    the same. Other formats are converted with Pillow's ``"L"`` (ITU-R 601 luma), which equals
    OpenCV's grey conversion exactly whenever R == G == B, as in the released heatmaps. For
    the released heatmap_6.jpg the result equals ``cv2.imread(path, 0)`` pixel for pixel.
    """
    with open_image(path) as image:  # the tool's one pixel limit, checked before decoding
        if image.format == "JPEG":
            image.draft("L", None)
        return np.asarray(image.convert("L"), dtype=np.uint8)


def _read_npy(path: Path) -> tuple[np.ndarray, bool]:
    from cam_cli.data.npy import read_npy

    array = read_npy(path, check=_check_map_header)
    if not np.isfinite(array).all():
        raise ValueError("the map holds NaN or infinite values")
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)  # integer maps: compared exactly, never wrapped
    return (array, True) if array.ndim == 3 else (array[None], False)


def _check_map_header(shape: tuple[int, ...], dtype: np.dtype) -> None:
    """What the header tells of a map, checked before its data is read: a real number type,
    a map [H, W] or a stack [k, H, W] (not an image [H, W, channels]), not empty."""
    if dtype.kind == "b" or not np.issubdtype(dtype, np.number):
        raise ValueError(f"not a numeric map (dtype {dtype})")
    if np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"not a real-valued map (dtype {dtype})")
    if len(shape) not in (2, 3):
        raise ValueError(f"expected a map [H, W] or a stack [k, H, W], got shape {shape}")
    if len(shape) == 3 and shape[2] in CHANNELS and shape[2] < min(shape[:2]):
        raise ValueError(
            f"shape {list(shape)} looks like an image [H, W, channels], not a stack of "
            "maps [k, H, W]; save the map as [H, W] (or its channels first as [k, H, W])"
        )
    if 0 in shape:
        raise ValueError(f"empty map (shape {shape})")


_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``"WxH"`` -> ``(width, height)``; ValueError for anything else, and for an image larger
    than any image the tool decodes (``max_pixels``, `data.images`): such a size would give
    boxes beyond int64, or maps of many GB."""
    match = _SIZE.match(text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValueError(f"`size` must be WIDTHxHEIGHT in pixels, e.g. 500x375, not {text!r}")
    width, height = int(match[1]), int(match[2])
    if width * height > max_pixels:
        raise ValueError(
            f"`size` {text.strip()}: {width * height} pixels exceeds the limit of {max_pixels} "
            "(the largest image cam-cli decodes)"
        )
    return width, height


def reference_size(path: str | Path) -> tuple[int, int]:
    """The upright ``(width, height)`` of an image, as `bbox` reports it (EXIF rotation
    applied), read from its header. ValueError when it cannot be read."""
    from cam_cli.data.images import SWAPPING_ORIENTATIONS, open_image

    try:
        regular_file(path)  # a FIFO would block the open
        with open_image(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112) in SWAPPING_ORIENTATIONS:
                width, height = height, width
            return width, height
    except Exception as error:  # noqa: BLE001 - any unreadable image: one line
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: cannot read the image's size ({reason})") from None
