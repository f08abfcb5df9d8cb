"""Pictures for people: CAM heat-map overlays and boxes drawn on the original image."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cam_cli.data.images import open_rgb
from cam_cli.errors import SetupError
from cam_cli.files.checks import printable_path

BOX_COLOURS = [(255, 40, 40), (40, 220, 40), (40, 120, 255), (255, 200, 0), (220, 40, 220)]


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


def draw_boxes(image: Image.Image, predictions: list[dict]) -> Image.Image:
    """Each prediction's box and ``rank. name score`` label, top-1 drawn last (on top)."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(min(image.size) / 150))
    for p in sorted(predictions, key=lambda p: -p["rank"]):
        colour = BOX_COLOURS[(p["rank"] - 1) % len(BOX_COLOURS)]
        x0, y0, x1, y1 = p["box"]
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        label = f"{p['rank']}. {p['name'] or p['wnid'] or p['class_index']} {p['score']:.2f}"
        text_box = draw.textbbox((x0, y0), label)
        draw.rectangle(text_box, fill=colour)
        draw.text((x0, y0), label, fill=(0, 0, 0))
    return out


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
    """`bbox --draw DIR` names its PNGs as `output_stem` does, in input order: refuse, before
    any work, a folder where one of them would be an input image."""
    inputs = {Path(p).resolve() for p in paths}
    taken: set[str] = set()
    for path in paths:
        target = Path(draw_dir) / f"{output_stem(path, taken)}_boxes.png"
        if target.resolve() in inputs:
            raise SetupError(
                f"--draw {printable_path(draw_dir)}: its {printable_path(target.name)} would "
                "overwrite that input image; give another folder"
            )


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def boxes_png(image_path: str | Path, predictions: list[dict]) -> bytes:
    """`bbox --draw`'s picture of one image, PNG-encoded (thread-safe: runs in the lanes)."""
    return png_bytes(draw_boxes(open_rgb(image_path)[0], predictions))
