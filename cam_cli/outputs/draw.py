"""Pictures for people: CAM heat-map overlays and boxes drawn on the original image."""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cam_cli.data.images import open_rgb
from cam_cli.errors import SetupError
from cam_cli.files.checks import printable_path
from cam_cli.outputs.marks import (
    Rect,
    box_rect,
    draw_outline,
    draw_tag,
    label_font,
    place_tags,
    rank_colour,
    tag_size,
    whole_factor,
)


def jet(values: np.ndarray) -> np.ndarray:
    """The jet colour map (blue -> cyan -> yellow -> red) for values in [0, 1] -> uint8 RGB."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4.0 * v - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return (rgb * 255 + 0.5).astype(np.uint8)


def normalise_for_display(cam: np.ndarray) -> np.ndarray:
    """Negative evidence shown as 0, the peak as 1 (the same scale the 20% threshold uses)."""
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    return cam / peak if peak > 0 else cam


def heatmap_overlay(image: Image.Image, cam: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Blend the jet-coloured CAM, bilinearly resized to the image, over the image."""
    resized = Image.fromarray(normalise_for_display(cam).astype(np.float32), mode="F").resize(
        image.size, Image.Resampling.BILINEAR
    )
    heat = jet(np.asarray(resized))
    blended = (1 - alpha) * np.asarray(image, dtype=np.float32) + alpha * heat
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


# `bbox`'s `draw` enlarges an image whose short side is under SHORT_SIDE by the smallest whole
# factor that reaches it (nearest neighbour: crisp pixels, boxes on pixel edges), with the long
# side kept within LONG_SIDE_CAP; larger images are drawn at their own size.
SHORT_SIDE = 320
LONG_SIDE_CAP = 4096


def drawing_scale(width: int, height: int) -> int:
    """The whole enlargement `draw_boxes` gives an image of this size (1: none)."""
    factor = whole_factor(min(width, height), SHORT_SIDE)
    return max(1, min(factor, LONG_SIDE_CAP // max(width, height, 1)))


@dataclass(frozen=True)
class Layout:
    """Where `draw_boxes` puts its marks on the enlarged image (``size``): each prediction's
    boxes and its rank tag (``tags``, in the order of ``ranks``), none overlapping another;
    the key of names and scores goes in a strip ``key_height`` px tall below the image."""

    scale: int
    size: tuple[int, int]
    line: int
    font_size: int
    ranks: tuple[int, ...]
    boxes: tuple[tuple[Rect, ...], ...]
    tags: tuple[Rect, ...]
    key_columns: int
    key_rows: int
    row_height: int

    @property
    def key_height(self) -> int:
        return self.key_rows * self.row_height + (2 * KEY_PAD if self.key_rows else 0)


KEY_PAD = 6
KEY_COLUMN = 240  # the narrowest column of the key, in px


def drawing_layout(size: tuple[int, int], predictions: list[dict]) -> Layout:
    """The layout of `draw_boxes` for an image of ``size`` (width, height): line and font sized
    to the enlarged picture, rank 1's tag placed first (at its box's top-left corner)."""
    scale = drawing_scale(*size)
    out = (size[0] * scale, size[1] * scale)
    short = min(out)
    line = max(2, round(short / 160))
    font_size = max(13, round(short / 20))
    font = label_font(font_size)
    ordered = sorted(predictions, key=lambda p: p["rank"])
    boxes = tuple(
        tuple(box_rect(b, size, out) for b in (p.get("boxes") or [p["box"]])) for p in ordered
    )
    sizes = [tag_size(font, str(p["rank"])) for p in ordered]
    tags = place_tags([b[0] for b in boxes], out, sizes)
    columns = max(1, min(len(ordered), out[0] // KEY_COLUMN))
    rows = math.ceil(len(ordered) / columns)
    row_height = max((h for _, h in sizes), default=0) + 4
    return Layout(scale, out, line, font_size, tuple(p["rank"] for p in ordered), boxes,
                  tuple(tags), columns, rows, row_height)  # fmt: skip


def label_text(prediction: dict) -> str:
    """What the key says of a prediction: its name (else wnid, else class index) and score
    (two decimals, as the record's to a person; ``<0.01`` rather than a misleading 0.00)."""
    name = prediction["name"] or prediction["wnid"] or prediction["class_index"]
    score = prediction["score"]
    return f"{name}  {score:.2f}" if score >= 0.005 else f"{name}  <0.01"


def _fitted(
    draw: ImageDraw.ImageDraw,
    text: str,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    width: int,
) -> str:
    """``text``, cut with an ellipsis to fit ``width`` px."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def draw_boxes(image: Image.Image, predictions: list[dict]) -> Image.Image:
    """The image, enlarged when small (`drawing_scale`), with each prediction's box outlined in
    its rank's colour (rank 1 drawn last, on top) and tagged with its rank number; below it, a
    key: each rank's tag, name and score. Numbers on the image keep five labels from covering
    the object or each other at any size; the names, in the key, never run off the picture
    (one too long for its column ends in an ellipsis)."""
    layout = drawing_layout(image.size, predictions)
    font = label_font(layout.font_size)
    width, height = layout.size
    picture = Image.new("RGB", (width, height + layout.key_height), (255, 255, 255))
    enlarged = image if layout.scale == 1 else image.resize(layout.size, Image.Resampling.NEAREST)
    picture.paste(enlarged, (0, 0))
    draw = ImageDraw.Draw(picture)
    for rank, rects in reversed(list(zip(layout.ranks, layout.boxes, strict=True))):
        for rect in rects:
            draw_outline(draw, rect, rank_colour(rank), layout.line)
    for rank, tag in zip(layout.ranks, layout.tags, strict=True):
        draw_tag(draw, tag, str(rank), rank_colour(rank), font)
    ordered = sorted(predictions, key=lambda p: p["rank"])
    column_width = width // layout.key_columns
    for i, (p, tag) in enumerate(zip(ordered, layout.tags, strict=True)):
        column, row = divmod(i, layout.key_rows)
        x = column * column_width + KEY_PAD
        y = height + KEY_PAD + row * layout.row_height
        tag_w, tag_h = tag[2] - tag[0] + 1, tag[3] - tag[1] + 1
        draw_tag(draw, (x, y, x + tag_w - 1, y + tag_h - 1), str(p["rank"]),
                 rank_colour(p["rank"]), font)  # fmt: skip
        text_x = x + tag_w + KEY_PAD
        text = _fitted(
            draw, label_text(p), font, column_width - (text_x - column * column_width) - KEY_PAD
        )
        draw.text((text_x, y + tag_h / 2), text, fill=(0, 0, 0), font=font, anchor="lm")
    return picture


def safe_name(text: str) -> str:
    """A file-name-safe slug of a class name or wnid."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "class"


def output_stem(image_path: str | Path, taken: set[str]) -> str:
    """The image's stem, made unique within one run (two folders may hold ``img.jpg``)."""
    stem = safe_name(Path(image_path).stem)
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}"
    taken.add(candidate)
    return candidate


def check_drawings_spare_inputs(paths: list[str], draw_dir: str | Path) -> None:
    """`bbox`'s `draw` DIR names its PNGs as `output_stem` does, in input order: refuse, before
    any work, a folder where one of them would be an input image."""
    inputs = {Path(p).resolve() for p in paths}
    taken: set[str] = set()
    for path in paths:
        target = Path(draw_dir) / f"{output_stem(path, taken)}_boxes.png"
        if target.resolve() in inputs:
            raise SetupError(
                f"`draw` {printable_path(draw_dir)}: its {printable_path(target.name)} would "
                "overwrite that input image; give another folder"
            )


def png_bytes(image: Image.Image, compress_level: int = 6) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def boxes_png(image_path: str | Path, predictions: list[dict]) -> bytes:
    """`bbox`'s `draw`'s picture of one image, PNG-encoded (thread-safe: runs in the lanes).
    zlib's fastest level: the enlarged pictures would otherwise spend most of their time in
    the encoder, for files only a tenth smaller."""
    return png_bytes(draw_boxes(open_rgb(image_path)[0], predictions), compress_level=1)
