"""Marks drawn on pictures for people, shared by `bbox`'s `draw` (`outputs.draw`) and the HTML
report (`report.pictures`): the colours, the crisp enlargement of small images, box outlines on
exactly the box's pixels, and numbered rank tags that never overlap one another.

Colours come from the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"): distinct
for every colour-vision deficiency, and each dark enough that black text on it reads. A box is
a band of its colour between two 1 px black lines, so it shows on any background; a dashed box
(ground truth) differs from a solid one without colour too.

Tags carry only the rank number, so five of them on one object cover little of it; the names
and scores go in a key below the image (`outputs.draw`) or beside it (the report's page).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from PIL import ImageDraw, ImageFont

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
# ranks 1..5: the predicted colour first, then the others (black text reads on every one)
RANK_COLOURS = [PREDICTED_COLOUR, OKABE_ITO["reddish purple"], OKABE_ITO["bluish green"],
                OKABE_ITO["yellow"], OKABE_ITO["vermillion"]]  # fmt: skip
CASING = (0, 0, 0)
DASH_GAP = (32, 32, 32)

Rect = tuple[int, int, int, int]  # inclusive picture pixels: left, top, right, bottom


def rank_colour(rank: int) -> str:
    """The colour of a rank (1 first), the same in every picture and page."""
    return RANK_COLOURS[(rank - 1) % len(RANK_COLOURS)]


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def whole_factor(side: int, target: int) -> int:
    """The smallest whole enlargement that brings ``side`` to ``target`` (1 when it is there):
    a whole factor keeps every image pixel a crisp square, and boxes land on pixel edges."""
    return math.ceil(target / side) if 0 < side < target else 1


def box_rect(box: Sequence[int], grid: tuple[int, int], out: tuple[int, int]) -> Rect:
    """An inclusive box in a ``grid`` (width, height) -> the picture pixels (``out``) it covers:
    pixels x0..x1 of the grid span x0 * sx .. (x1 + 1) * sx - 1, clipped to the picture."""
    sx, sy = out[0] / grid[0], out[1] / grid[1]
    x0, y0, x1, y1 = box
    rect = (x0 * sx, y0 * sy, (x1 + 1) * sx - 1, (y1 + 1) * sy - 1)
    x0p, y0p, x1p, y1p = (
        min(max(round(v), 0), lim - 1) for v, lim in zip(rect, out * 2, strict=True)
    )
    return x0p, y0p, x1p, y1p


def _dashes(start: float, end: float, dash: float) -> Iterable[tuple[float, float]]:
    position = start
    while position < end:
        yield position, min(position + dash, end)
        position += 2 * dash


def draw_outline(
    draw: ImageDraw.ImageDraw, rect: Sequence[int], colour: str, line: int, dashed: bool = False
) -> None:
    """A band ``line`` px wide in ``colour`` just inside ``rect``, between two 1 px black lines
    (visible on any background); a dashed box fills the band with dashes of its colour and
    leaves the gaps dark, so the black lines still run all round."""
    x0, y0, x1, y1 = rect
    rgb = hex_rgb(colour)
    draw.rectangle([x0 - 1, y0 - 1, x1 + 1, y1 + 1], outline=CASING, width=1)
    if x1 - x0 >= 2 * line and y1 - y0 >= 2 * line:
        draw.rectangle([x0 + line, y0 + line, x1 - line, y1 - line], outline=CASING, width=1)
    if not dashed:
        draw.rectangle([x0, y0, x1, y1], outline=rgb, width=line)
        return
    dash = 3 * line + 2
    draw.rectangle([x0, y0, x1, y1], outline=DASH_GAP, width=line)
    for a, b in _dashes(x0, x1, dash):
        draw.rectangle([a, y0, b, y0 + line - 1], fill=rgb)
        draw.rectangle([a, y1 - line + 1, b, y1], fill=rgb)
    for a, b in _dashes(y0, y1, dash):
        draw.rectangle([x0, a, x0 + line - 1, b], fill=rgb)
        draw.rectangle([x1 - line + 1, a, x1, b], fill=rgb)


def label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own font at ``size`` px (scalable since Pillow 10.1; nothing to download)."""
    return ImageFont.load_default(size=size)


def tag_size(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> tuple[int, int]:
    """The (width, height) of a tag holding ``text``: its glyphs, a margin, a 1 px casing."""
    left, top, right, bottom = font.getbbox(text)
    pad = 2 + max(1, round(getattr(font, "size", 10) / 8))
    height = math.ceil(bottom - top) + 2 * pad
    return max(math.ceil(right - left) + 2 * pad, height), height


def draw_tag(
    draw: ImageDraw.ImageDraw,
    rect: Rect,
    text: str,
    colour: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """``text`` in black, centred on a ``colour`` tag that fills ``rect``, outlined in black."""
    draw.rectangle(rect, fill=hex_rgb(colour), outline=CASING, width=1)
    cx, cy = (rect[0] + rect[2] + 1) / 2, (rect[1] + rect[3] + 1) / 2
    draw.text((cx, cy), text, fill=CASING, font=font, anchor="mm")


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _candidates(box: Rect, size: tuple[int, int], tag: tuple[int, int]) -> list[Rect]:
    """Where a tag may go, best first: at the box's top-left corner (above it, else inside),
    then side by side along its top edge (tags of boxes that share a corner form a row
    there), then along its bottom edge, then left of the corner."""
    x0, y0, x1, y1 = box
    w, h = tag
    step = w + 1
    tops = (y0 - h, y0)  # above the box, inside it
    bottoms = (y1 + 1, y1 - h + 1)  # below, inside
    along = [*range(x0, x1 - w + 2, step), max(x0, x1 - w + 1)]
    spots = [(x, y) for x in along for y in tops]
    spots += [(x, y) for x in along for y in bottoms]
    spots += [(x, y) for x in range(x0 - step, x0 - 5 * step, -step) for y in (*tops, *bottoms)]
    width, height = size
    out = []
    for x, y in spots:
        x = min(max(x, 0), width - w)
        y = min(max(y, 0), height - h)
        out.append((x, y, x + w - 1, y + h - 1))
    return out


def place_tags(
    boxes: Sequence[Rect], size: tuple[int, int], tags: Sequence[tuple[int, int]]
) -> list[Rect]:
    """A rectangle for each box's tag (``tags``: their sizes), in order, none overlapping another:
    the first free spot of `_candidates`, else the free spot of the picture nearest to the box's
    corner. A picture too small to hold them all apart (smaller than every tag side by side) gets
    the box's corner."""
    placed: list[Rect] = []
    width, height = size
    for box, tag in zip(boxes, tags, strict=True):
        free = [c for c in _candidates(box, size, tag) if not any(_overlaps(c, p) for p in placed)]
        if not free:
            w, h = tag
            grid = [(x, y, x + w - 1, y + h - 1)
                    for y in range(0, max(1, height - h + 1), max(1, h // 2))
                    for x in range(0, max(1, width - w + 1), max(1, w // 2))]  # fmt: skip
            free = sorted((c for c in grid if not any(_overlaps(c, p) for p in placed)),
                          key=lambda c: abs(c[0] - box[0]) + abs(c[1] - box[1]))  # fmt: skip
        placed.append(free[0] if free else _candidates(box, size, tag)[0])
    return placed
