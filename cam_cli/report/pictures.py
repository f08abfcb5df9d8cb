"""The pictures of a report: an image with its CAM laid over it and boxes drawn, as a JPEG data
URI. Text never goes into a picture (the page writes it beside), so no label covers the object.

Tiny images (Tiny ImageNet's 64 px) are first enlarged by a whole factor with nearest
neighbour, so every pixel stays a crisp square and a box line is thin against the object; large
ones are decoded at a reduced scale (`open_rgb`'s draft) and shrunk. Colours: the CAM in
viridis (perceptually uniform, readable with every colour-vision deficiency), boxes from the
Okabe-Ito palette, each outlined in black so they show on any background; ground truth dashed,
predictions solid, so they differ without colour too.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from cam_cli.data.images import open_rgb
from cam_cli.outputs.draw import normalise_for_display
from cam_cli.report.inputs import Box, ReportOptions

# Okabe & Ito (2008), "Color Universal Design": distinct for every colour-vision deficiency.
OKABE_ITO = {
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
GT_COLOUR = OKABE_ITO["sky blue"]
PREDICTED_COLOUR = OKABE_ITO["orange"]
# ranks 1..5 of a `bbox` run: the predicted colour first, then the others
RANK_COLOURS = [PREDICTED_COLOUR, OKABE_ITO["reddish purple"], OKABE_ITO["bluish green"],
                OKABE_ITO["yellow"], OKABE_ITO["vermillion"]]  # fmt: skip
CAM_ALPHA_LOW, CAM_ALPHA_HIGH = 0.25, 0.65  # opacity of the CAM at its low and its peak
CASING = (0, 0, 0)


@dataclass(frozen=True)
class DrawnBox:
    box: Box
    colour: str  # "#RRGGBB"
    dashed: bool = False


@dataclass(frozen=True)
class PictureRequest:
    """One picture to make: the image, the grid its boxes are in (``size``: the record's
    width and height; None: the image's own), the CAM to lay over it (None: none)."""

    path: str
    size: tuple[int, int] | None
    cam: np.ndarray | None
    boxes: tuple[DrawnBox, ...]


@dataclass(frozen=True)
class Picture:
    data_uri: str
    width: int
    height: int
    upscaled: bool  # enlarged by nearest neighbour: shown with crisp pixels


def _viridis_lut() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["viridis"](np.linspace(0.0, 1.0, 256))[:, :3] * 255 + 0.5).astype(np.uint8)


_LUT: list[np.ndarray] = []


def viridis(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB through viridis' 256 colours."""
    if not _LUT:
        _LUT.append(_viridis_lut())
    index = np.clip(np.rint(np.asarray(values) * 255), 0, 255).astype(np.intp)
    return _LUT[0][index]


def viridis_stops(count: int = 9) -> list[str]:
    """Hex colours along viridis, for the legend's colour bar."""
    return ["#" + "".join(f"{v:02x}" for v in c) for c in viridis(np.linspace(0, 1, count))]


def display_scale(width: int, height: int, options: ReportOptions) -> tuple[float, bool]:
    """Picture pixels per image pixel, and whether that is a whole-factor enlargement."""
    longest = max(width, height)
    if longest < options.min_picture_side:
        return float(math.ceil(options.min_picture_side / longest)), True
    return min(1.0, options.picture_side / longest), False


def _hex(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _dashes(start: float, end: float, dash: float) -> Iterable[tuple[float, float]]:
    position = start
    while position < end:
        yield position, min(position + dash, end)
        position += 2 * dash


def _draw_box(draw: ImageDraw.ImageDraw, rect: Sequence[float], drawn: DrawnBox, line: int) -> None:
    """A band ``line`` px wide in the box's colour between two 1 px black lines (visible on any
    background); a dashed box fills the band with dashes of its colour and leaves the gaps
    dark, so the black lines still run all round."""
    x0, y0, x1, y1 = rect
    colour = _hex(drawn.colour)
    draw.rectangle([x0 - 1, y0 - 1, x1 + 1, y1 + 1], outline=CASING, width=1)
    if x1 - x0 > 2 * line and y1 - y0 > 2 * line:  # a box thinner than its band has no inside
        draw.rectangle([x0 + line, y0 + line, x1 - line, y1 - line], outline=CASING, width=1)
    if not drawn.dashed:
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=line)
        return
    dash = 3 * line + 2
    gap = (32, 32, 32)
    draw.rectangle([x0, y0, x1, y1], outline=gap, width=line)
    for a, b in _dashes(x0, x1, dash):
        draw.rectangle([a, y0, b, y0 + line - 1], fill=colour)
        draw.rectangle([a, y1 - line + 1, b, y1], fill=colour)
    for a, b in _dashes(y0, y1, dash):
        draw.rectangle([x0, a, x0 + line - 1, b], fill=colour)
        draw.rectangle([x1 - line + 1, a, x1, b], fill=colour)


def draw_picture(request: PictureRequest, options: ReportOptions) -> tuple[Image.Image, bool]:
    """The picture of one request and whether it was enlarged (raises ValueError or OSError
    when the image cannot be read)."""
    image, (full_w, full_h) = open_rgb(request.path, draft_size=options.picture_side)
    scale, upscaled = display_scale(full_w, full_h, options)
    out_w, out_h = max(1, round(full_w * scale)), max(1, round(full_h * scale))
    resample = Image.Resampling.NEAREST if upscaled else Image.Resampling.LANCZOS
    if image.size != (out_w, out_h):
        image = image.resize((out_w, out_h), resample)
    if request.cam is not None and np.size(request.cam):
        cam = normalise_for_display(np.asarray(request.cam, dtype=np.float32))
        heat = Image.fromarray(cam.astype(np.float32), mode="F").resize(
            (out_w, out_h), Image.Resampling.BILINEAR
        )
        values = np.asarray(heat)
        # the photo shows through where the map is low, the colour dominates where it peaks
        alpha = (CAM_ALPHA_LOW + (CAM_ALPHA_HIGH - CAM_ALPHA_LOW) * values)[..., None]
        blended = (1 - alpha) * np.asarray(image, np.float32) + alpha * viridis(values)
        image = Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))
    grid_w, grid_h = request.size or (full_w, full_h)
    sx, sy = out_w / grid_w, out_h / grid_h
    line = max(3, round(min(out_w, out_h) / 70))
    draw = ImageDraw.Draw(image)
    for drawn in request.boxes:
        x0, y0, x1, y1 = drawn.box
        # an inclusive box covers pixels x0..x1: its outer edge is x1 + 1 in the grid
        rect = [x0 * sx, y0 * sy, (x1 + 1) * sx - 1, (y1 + 1) * sy - 1]
        rect = [
            min(max(round(v), 0), lim - 1) for v, lim in zip(rect, (out_w, out_h) * 2, strict=True)
        ]
        _draw_box(draw, rect, drawn, line)
    return image, upscaled


def render_picture(request: PictureRequest, options: ReportOptions) -> Picture:
    """`draw_picture`, JPEG-encoded as a data URI."""
    image, upscaled = draw_picture(request, options)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=options.jpeg_quality, optimize=True)
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return Picture(uri, image.width, image.height, upscaled)


def render_pictures(
    requests: Sequence[PictureRequest], options: ReportOptions
) -> list[Picture | str]:
    """Every picture, in order, a few at a time (decoding and encoding release the GIL); an
    image that cannot be read gives its reason instead of a picture."""
    one: Callable[[PictureRequest], Picture | str] = lambda r: _picture_or_reason(r, options)  # noqa: E731
    if options.workers == 1 or len(requests) < 2:
        return [one(r) for r in requests]
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        return list(pool.map(one, requests))


def _picture_or_reason(request: PictureRequest, options: ReportOptions) -> Picture | str:
    try:
        return render_picture(request, options)
    except (ValueError, OSError) as error:  # `open_rgb`'s one line: the file and why
        return str(error) or type(error).__name__
