"""Drawing the synthetic images: classes as (shape, colour, texture), objects at random places
and scales on cluttered backgrounds, each image from its own seeded generator.

See `cam_cli.synthetic.dataset` for what is written where, and why the generators are seeded
per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "ClassSpec",
    "Sample",
    "class_specs",
    "render_sample",
    "train_rng",
    "val_labels",
    "val_rng",
]

MIN_AREA_FRACTION = 0.05  # promised bounds on an object's box area / image area
MAX_AREA_FRACTION = 0.50
_OBJECT_AREA_RANGE = (0.06, 0.45)  # sampled range (log-uniform), inside the promise
_SECOND_OBJECT_AREA_RANGE = (0.06, 0.16)
_SECOND_OBJECT_PROBABILITY = 0.10
_SECOND_OBJECT_GAP = 0.15  # min gap between two instances, fraction of the image side
Box = tuple[float, float, float, float]  # continuous (x0, y0, x1, y1)
_DISTRACTOR_AREA_RANGE = (0.008, 0.035)
_ASPECT_RANGE = (0.75, 1.33)  # box width / height
_ROTATION_JITTER_DEG = 12.0  # small, so that square and diamond stay distinct

_TRAIN, _VAL, _VAL_LABELS = 1, 2, 3  # seed-sequence tags

SHAPES = ("disc", "square", "triangle", "star", "cross", "ring", "hexagon", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 175, 55),
    "blue": (40, 75, 225),
    "yellow": (235, 210, 35),
    "magenta": (205, 45, 200),
    "cyan": (35, 200, 210),
    "orange": (245, 135, 25),
    "white": (240, 240, 240),
}
# Colours only distractors and lines use (muted, so the background stays a background).
_EXTRA_COLOURS = (
    (120, 120, 120),
    (130, 90, 55),
    (220, 150, 170),
    (120, 125, 45),
    (95, 50, 125),
    (35, 45, 95),
)
TEXTURES = ("striped", "checkered", "dotted", "solid")
MAX_CLASSES = len(SHAPES) * len(COLOURS)


@dataclass(frozen=True)
class ClassSpec:
    index: int
    wnid: str
    shape: str
    colour: str
    texture: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.texture} {self.shape}"


@dataclass
class Sample:
    """One rendered image before JPEG encoding, with its exact ground truth."""

    image: np.ndarray  # [H, W, 3] uint8
    label: int
    boxes: list[tuple[int, int, int, int]]  # inclusive (xmin, ymin, xmax, ymax), one per object
    masks: list[np.ndarray]  # [H, W] bool, one per object, same order as boxes


def class_specs(num_classes: int = 6) -> list[ClassSpec]:
    """The classes, in index (= sorted wnid) order.

    Class k has shape ``k % 8`` and a colour offset by a different amount in every block of 8, so
    the first 8 classes all differ in both shape and colour and all 64 (shape, colour) pairs are
    reachable without repeats.
    """
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in 1..{MAX_CLASSES}, got {num_classes}")
    colour_names = list(COLOURS)
    specs = []
    for k in range(num_classes):
        block = k // len(SHAPES)
        specs.append(
            ClassSpec(
                index=k,
                wnid=f"n{90000000 + k:08d}",
                shape=SHAPES[k % len(SHAPES)],
                colour=colour_names[(k + 3 * block) % len(colour_names)],
                texture=TEXTURES[(k + block) % len(TEXTURES)],
            )
        )
    return specs


def val_labels(num_images: int, num_classes: int, seed: int) -> np.ndarray:
    """Balanced val labels: every block of ``num_classes`` images is a seeded permutation of the
    classes, so counts differ by at most one and the first N labels do not depend on the total."""
    blocks = -(-num_images // num_classes)
    perms = [
        np.random.default_rng([seed, _VAL_LABELS, b]).permutation(num_classes)
        for b in range(blocks)
    ]
    return np.concatenate(perms)[:num_images].astype(np.int64)


# --------------------------------------------------------------------------------------------
# Rendering


def _circle(n: int, radius: float = 1.0) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    t = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _cross(arm: float = 0.34) -> np.ndarray:
    a = arm
    return np.array(
        [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a)]
        + [(-1, -a), (-a, -a)],
        dtype=float,
    )


_OUTLINES: dict[str, np.ndarray] = {
    "disc": _circle(40),
    "square": np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=float),
    "triangle": np.array([(0, -1), (1, 0.8), (-1, 0.8)], dtype=float),
    "star": _star(),
    "cross": _cross(),
    "ring": _circle(40),
    "hexagon": _circle(6),
    "diamond": np.array([(0, -1), (1, 0), (0, 1), (-1, 0)], dtype=float),
}
_HOLES: dict[str, np.ndarray] = {"ring": _circle(40, 0.55)}


def _shape_mask(
    shape: str, box: tuple[float, float, float, float], angle_deg: float, size: int
) -> np.ndarray:
    """Rasterise ``shape``, rotated by ``angle_deg``, stretched to fill the continuous ``box``."""
    theta = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    outline = _OUTLINES[shape] @ rot.T
    lo, hi = outline.min(axis=0), outline.max(axis=0)
    x0, y0, x1, y1 = box
    scale = np.array([x1 - x0, y1 - y0]) / (hi - lo)
    offset = np.array([x0, y0])

    def to_pixels(points: np.ndarray) -> list[tuple[float, float]]:
        return [tuple(p) for p in ((points @ rot.T) - lo) * scale + offset]

    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon(to_pixels(_OUTLINES[shape]), fill=1)
    if shape in _HOLES:
        draw.polygon(to_pixels(_HOLES[shape]), fill=0)
    return np.asarray(canvas, dtype=bool)


def _texture_mask(
    texture: str,
    box: tuple[float, float, float, float],
    angle_deg: float,
    rng: np.random.Generator,
    size: int,
) -> np.ndarray:
    """Where the texture's dark colour goes (scaled to the object, so it is scale invariant)."""
    x0, y0, x1, y1 = box
    period = max(3.0, min(x1 - x0, y1 - y0) / rng.uniform(3.5, 4.5))
    ys, xs = np.mgrid[0:size, 0:size].astype(float)
    u, v = xs - x0, ys - y0
    if texture == "solid":
        return np.zeros((size, size), dtype=bool)
    if texture == "striped":
        theta = np.deg2rad(45.0 + angle_deg)
        return ((u * np.cos(theta) + v * np.sin(theta)) / period) % 1.0 < 0.5
    if texture == "checkered":
        cell = period / 1.5
        return (np.floor(u / cell) + np.floor(v / cell)) % 2 == 1
    if texture == "dotted":
        du = (u / period) % 1.0 - 0.5
        dv = (v / period) % 1.0 - 0.5
        return du * du + dv * dv < 0.3**2
    raise ValueError(f"unknown texture {texture!r}")


def _sample_box(
    rng: np.random.Generator, size: int, area_range: tuple[float, float]
) -> tuple[float, float, float, float]:
    """A continuous box of log-uniform area fraction and bounded aspect, fully inside the image."""
    area = math.exp(rng.uniform(math.log(area_range[0]), math.log(area_range[1])))
    aspect = math.exp(rng.uniform(math.log(_ASPECT_RANGE[0]), math.log(_ASPECT_RANGE[1])))
    w = min(size - 1.0, size * math.sqrt(area * aspect))
    h = min(size - 1.0, size * math.sqrt(area / aspect))
    x0 = rng.uniform(0.0, size - 1.0 - w)
    y0 = rng.uniform(0.0, size - 1.0 - h)
    return (x0, y0, x0 + w, y0 + h)


def _overlaps(a: Box, b: Box, margin: float) -> bool:
    return not (
        a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1]
    )


def _jitter(colour: Sequence[float], rng: np.random.Generator, amount: float) -> np.ndarray:
    return np.clip(np.asarray(colour, dtype=float) + rng.uniform(-amount, amount, 3), 0, 255)


def _paint(
    canvas: np.ndarray,
    mask: np.ndarray,
    dark: np.ndarray,
    colour: np.ndarray,
    dark_factor: float,
) -> None:
    canvas[mask & ~dark] = colour
    canvas[mask & dark] = colour * dark_factor


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    grid = int(rng.integers(3, 7))
    coarse = rng.uniform(45, 205, (grid, grid, 3))
    grey = coarse.mean(axis=2, keepdims=True)
    coarse = grey + rng.uniform(0.35, 0.7) * (coarse - grey)  # muted colours
    field_img = Image.fromarray(coarse.astype(np.uint8), "RGB").resize(
        (size, size), Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(field_img)
    palette = list(COLOURS.values()) + list(_EXTRA_COLOURS)
    for _ in range(int(rng.integers(2, 6))):  # clutter lines, some in class colours
        points = [tuple(float(c) for c in rng.uniform(0, size, 2)) for _ in range(2)]
        colour = tuple(int(c) for c in _jitter(palette[rng.integers(len(palette))], rng, 20))
        draw.line(points, fill=colour, width=int(rng.integers(1, 3)))
    return np.asarray(field_img, dtype=float).copy()


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


def _box_area_fraction(box: tuple[int, int, int, int], size: int) -> float:
    return (box[2] - box[0] + 1) * (box[3] - box[1] + 1) / (size * size)


@overload
def _sample_object(
    rng: np.random.Generator,
    shape: str,
    size: int,
    area_range: tuple[float, float],
    avoid: None = None,
) -> tuple[Box, float, np.ndarray]: ...
@overload
def _sample_object(
    rng: np.random.Generator,
    shape: str,
    size: int,
    area_range: tuple[float, float],
    avoid: Box,
) -> tuple[Box, float, np.ndarray] | None: ...
def _sample_object(
    rng: np.random.Generator,
    shape: str,
    size: int,
    area_range: tuple[float, float],
    avoid: Box | None = None,
) -> tuple[Box, float, np.ndarray] | None:
    """Geometry and mask of one object whose *pixel* box keeps the promised area bounds.

    Rasterisation can shave a pixel off thin tips, so the drawn box is checked, not assumed.
    Returns ``(continuous box, angle, mask)``, or None if no placement clear of ``avoid`` (a
    continuous box kept ``_SECOND_OBJECT_GAP`` away) was found.
    """
    for _ in range(50):
        box = _sample_box(rng, size, area_range)
        angle = float(rng.uniform(-1, 1) * _ROTATION_JITTER_DEG)
        if avoid is not None and _overlaps(box, avoid, margin=_SECOND_OBJECT_GAP * size):
            continue
        mask = _shape_mask(shape, box, angle, size)
        if mask.any():
            fraction = _box_area_fraction(_tight_box(mask), size)
            if MIN_AREA_FRACTION <= fraction <= MAX_AREA_FRACTION:
                return box, angle, mask
    if avoid is not None:
        return None
    raise RuntimeError(f"could not place a {shape} in a {size}px image")  # not reached for >=32


def render_sample(
    spec: ClassSpec, classes: list[ClassSpec], rng: np.random.Generator, size: int
) -> Sample:
    """Render one image of class ``spec``; ``classes`` tells which (shape, colour) pairs to avoid
    in distractors. Consumes ``rng`` in a fixed order, so the result depends only on its seed."""
    # 1. Object geometry first, so distractors can keep clear of it.
    if rng.random() < _SECOND_OBJECT_PROBABILITY:
        # Two instances, like ILSVRC's multi-object images: both smaller, well apart (the second
        # is dropped if it does not fit).
        objects = [_sample_object(rng, spec.shape, size, _SECOND_OBJECT_AREA_RANGE)]
        second = _sample_object(rng, spec.shape, size, _SECOND_OBJECT_AREA_RANGE, objects[0][0])
        if second is not None:
            objects.append(second)
    else:
        objects = [_sample_object(rng, spec.shape, size, _OBJECT_AREA_RANGE)]
    object_boxes = [box for box, _, _ in objects]

    # 2. Background: smooth muted colour field plus clutter lines.
    canvas = _background(rng, size)

    # 3. Distractors: smaller shapes, never a class's (shape, colour) pair, clear of the objects.
    class_pairs = {(c.shape, c.colour) for c in classes}
    free_pairs = [(s, c) for s in SHAPES for c in COLOURS if (s, c) not in class_pairs]
    for _ in range(int(rng.integers(2, 5))):
        box = _sample_box(rng, size, _DISTRACTOR_AREA_RANGE)
        shape_i = int(rng.integers(len(SHAPES)))
        use_extra = rng.random() < 0.4 or not free_pairs
        extra_i = int(rng.integers(len(_EXTRA_COLOURS)))
        pair_i = int(rng.integers(len(free_pairs))) if free_pairs else 0
        texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
        angle = float(rng.uniform(-1, 1) * _ROTATION_JITTER_DEG)
        colour = _jitter(
            _EXTRA_COLOURS[extra_i] if use_extra else COLOURS[free_pairs[pair_i][1]], rng, 15
        )
        shape = SHAPES[shape_i] if use_extra else free_pairs[pair_i][0]
        dark = _texture_mask(texture, box, angle, rng, size)
        if any(_overlaps(box, ob, margin=1.0) for ob in object_boxes):
            continue
        _paint(canvas, _shape_mask(shape, box, angle, size), dark, colour, 0.45)

    # 4. The object(s), on top, never occluded: the box is the tight box of the mask.
    colour = _jitter(COLOURS[spec.colour], rng, 18)
    for box, angle, mask in objects:
        _paint(canvas, mask, _texture_mask(spec.texture, box, angle, rng, size), colour, 0.4)
    masks = [mask for _, _, mask in objects]
    boxes = [_tight_box(mask) for mask in masks]

    # 5. Sensor noise over everything.
    canvas += rng.normal(0.0, 5.0, canvas.shape)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Sample(image=image, label=spec.index, boxes=boxes, masks=masks)


def train_rng(seed: int, class_index: int, n: int) -> np.random.Generator:
    return np.random.default_rng([seed, _TRAIN, class_index, n])


def val_rng(seed: int, image_number: int) -> np.random.Generator:
    return np.random.default_rng([seed, _VAL, image_number])


# --------------------------------------------------------------------------------------------
# Files
