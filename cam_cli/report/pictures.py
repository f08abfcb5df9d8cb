"""The pictures of a report: an image with its CAM laid over it and boxes drawn, as a JPEG data
URI. Text never goes into a picture (the page writes it beside), so no label covers the object.

The marks (colours, box outlines) are `outputs.marks`, shared with `bbox`'s `draw`.
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from cam_cli.data.images import open_rgb
from cam_cli.outputs.draw import normalise_for_display
from cam_cli.outputs.marks import GT_COLOUR as GT_COLOUR  # re-exported: the pages' colours
from cam_cli.outputs.marks import OKABE_ITO as OKABE_ITO
from cam_cli.outputs.marks import PREDICTED_COLOUR as PREDICTED_COLOUR
from cam_cli.outputs.marks import RANK_COLOURS as RANK_COLOURS
from cam_cli.outputs.marks import (
    box_rect,
    draw_outline,
    whole_factor,
)
from cam_cli.report.inputs import Box, ReportOptions

CAM_ALPHA_LOW, CAM_ALPHA_HIGH = 0.25, 0.65  # opacity of the CAM at its low and its peak


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
        return float(whole_factor(longest, options.min_picture_side)), True
    return min(1.0, options.picture_side / longest), False


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
    line = max(3, round(min(out_w, out_h) / 70))
    draw = ImageDraw.Draw(image)
    for drawn in request.boxes:
        rect = box_rect(drawn.box, (grid_w, grid_h), (out_w, out_h))
        draw_outline(draw, rect, drawn.colour, line, dashed=drawn.dashed)
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
