"""A small synthetic localization dataset in exactly the ILSVRC 2012 layout and file formats.

It exists so the whole pipeline (train a GAP CNN on image labels -> CAM boxes -> ILSVRC
localization error) can be run end to end in minutes on a laptop CPU, with ground truth that is
exact. What it writes under ``OUT_DIR``::

    train/<wnid>/<wnid>_<n>.JPEG               n = 1 .. train_per_class (image labels only)
    val/ILSVRC2012_val_%08d.JPEG               flat, numbered from 1
    annotations/ILSVRC2012_val_%08d.xml        one per val image, same structure as the
                                               ILSVRC2012_bbox_val_v3 XML files
    LOC_val_solution.csv                       Kaggle format, header ``ImageId,PredictionString``
    LOC_synset_mapping.txt                     ``wnid name`` lines, sorted by wnid (= class index)
    synthetic.json                             the generation parameters (provenance)

The images. A class is a (shape, colour, texture) combination, e.g. "red striped disc": shape and
colour alone already separate the default classes, texture is an extra cue. Each image holds one
object of its class (two, well apart, in about 10% of images; every one gets a box), drawn at
a random position and scale such that the object's box covers 6-45% of the image (always within
5-50%), never cut by the border, on a cluttered background: a smooth random colour field, random
lines, and 2-4 smaller distractor shapes that share shapes and colours with the classes but are
never a class's (shape, colour) pair. The object is drawn last, so it is never occluded, and its
ground-truth box is the tight inclusive box of its pixels (``xmax = max x`` of the object pixels).

Determinism: every image is rendered from its own ``numpy.random.Generator`` seeded with
``(seed, split, class/index)``, so the same seed gives byte-identical files whatever the order of
generation, a larger dataset extends a smaller one with the same seed (train image n of a class and
val image n, label included, do not depend on the counts), and a different seed gives a different
dataset. JPEGs are written by Pillow (quality 90, no chroma subsampling, so the small colour
textures survive); byte-identity assumes the same Pillow/libjpeg build.

Atomicity: everything is written into a hidden temporary directory next to ``OUT_DIR`` and
renamed to ``OUT_DIR`` only when complete, so an interrupted run never leaves a half-written
dataset under the requested name.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "ClassSpec",
    "Sample",
    "SyntheticSummary",
    "class_specs",
    "generate_dataset",
    "main",
    "render_sample",
    "val_labels",
]

JPEG_QUALITY = 90
MARKER_FILE = "synthetic.json"
MIN_AREA_FRACTION = 0.05  # promised bounds on an object's box area / image area
MAX_AREA_FRACTION = 0.50
_OBJECT_AREA_RANGE = (0.06, 0.45)  # sampled range (log-uniform), inside the promise
_SECOND_OBJECT_AREA_RANGE = (0.06, 0.16)
_SECOND_OBJECT_PROBABILITY = 0.10
_SECOND_OBJECT_GAP = 0.15  # min gap between two instances, fraction of the image side
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


@dataclass
class SyntheticSummary:
    out_dir: Path
    num_classes: int
    image_size: int
    seed: int
    train_images: int
    val_images: int
    val_boxes: int
    classes: list[tuple[str, str]]  # (wnid, name), index order
    seconds: float
    train_dir: Path = field(init=False)
    val_dir: Path = field(init=False)
    annotations_dir: Path = field(init=False)
    solution_csv: Path = field(init=False)
    synset_mapping: Path = field(init=False)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.train_dir = self.out_dir / "train"
        self.val_dir = self.out_dir / "val"
        self.annotations_dir = self.out_dir / "annotations"
        self.solution_csv = self.out_dir / "LOC_val_solution.csv"
        self.synset_mapping = self.out_dir / "LOC_synset_mapping.txt"


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


def _overlaps(a, b, margin: float) -> bool:
    return not (
        a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1]
    )


def _jitter(colour, rng: np.random.Generator, amount: float) -> np.ndarray:
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


def _sample_object(rng: np.random.Generator, shape: str, size: int, area_range, avoid=None):
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


def val_image_id(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}"


def annotation_xml(image_id: str, width: int, height: int, objects) -> str:
    """The ILSVRC2012_bbox_val_v3 XML text (tabs, no declaration) for ``(wnid, box)`` objects."""
    lines = [
        "<annotation>",
        "\t<folder>val</folder>",
        f"\t<filename>{image_id}</filename>",
        "\t<source>",
        "\t\t<database>ILSVRC_2012</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for wnid, (x0, y0, x1, y1) in objects:
        lines += [
            "\t<object>",
            f"\t\t<name>{wnid}</name>",
            "\t\t<pose>Unspecified</pose>",
            "\t\t<truncated>0</truncated>",
            "\t\t<difficult>0</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{x0}</xmin>",
            f"\t\t\t<ymin>{y0}</ymin>",
            f"\t\t\t<xmax>{x1}</xmax>",
            f"\t\t\t<ymax>{y1}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _save_jpeg(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image, "RGB").save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0)


def _is_replaceable(path: Path) -> bool:
    """An existing output we may replace: empty, or a dataset this module wrote."""
    if not path.is_dir():
        return False
    return (path / MARKER_FILE).is_file() or not any(path.iterdir())


def generate_dataset(
    out_dir: str | os.PathLike,
    *,
    num_classes: int = 6,
    train_per_class: int = 200,
    val_images: int = 300,
    image_size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
) -> SyntheticSummary:
    """Write the synthetic dataset to ``out_dir`` (see the module docstring) and summarise it.

    ``out_dir`` must not exist, or be empty, or (with ``overwrite=True``) be an earlier output of
    this function; anything else is refused rather than deleted.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if train_per_class < 1 or val_images < 1:
        raise ValueError("train_per_class and val_images must be at least 1")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} exists and is not empty (--overwrite replaces a dataset this "
                "generator made)"
            )
        if not _is_replaceable(out_dir):
            raise FileExistsError(f"{out_dir} is not a synthetic dataset; refusing to replace it")
    classes = class_specs(num_classes)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        for spec in classes:
            class_dir = tmp / "train" / spec.wnid
            class_dir.mkdir(parents=True)
            for n in range(1, train_per_class + 1):
                sample = render_sample(spec, classes, train_rng(seed, spec.index, n), image_size)
                _save_jpeg(sample.image, class_dir / f"{spec.wnid}_{n}.JPEG")

        (tmp / "val").mkdir()
        (tmp / "annotations").mkdir()
        labels = val_labels(val_images, num_classes, seed)
        rows = []
        val_boxes = 0
        for number in range(1, val_images + 1):
            spec = classes[int(labels[number - 1])]
            sample = render_sample(spec, classes, val_rng(seed, number), image_size)
            image_id = val_image_id(number)
            _save_jpeg(sample.image, tmp / "val" / f"{image_id}.JPEG")
            objects = [(spec.wnid, box) for box in sample.boxes]
            xml = annotation_xml(image_id, image_size, image_size, objects)
            (tmp / "annotations" / f"{image_id}.xml").write_text(xml)
            rows.append(
                (image_id, " ".join(f"{w} {b[0]} {b[1]} {b[2]} {b[3]}" for w, b in objects))
            )
            val_boxes += len(objects)

        with open(tmp / "LOC_val_solution.csv", "w", newline="") as f:
            writer = csv.writer(f)  # CRLF line ends, as in Kaggle's file
            writer.writerow(("ImageId", "PredictionString"))
            writer.writerows(rows)
        mapping = "".join(f"{spec.wnid} {spec.name}\n" for spec in classes)
        (tmp / "LOC_synset_mapping.txt").write_text(mapping)
        meta = {
            "generator": "cam_cli.synthetic",
            "num_classes": num_classes,
            "train_per_class": train_per_class,
            "val_images": val_images,
            "image_size": image_size,
            "seed": seed,
            "jpeg_quality": JPEG_QUALITY,
            "classes": [
                {"wnid": c.wnid, "name": c.name, "shape": c.shape, "colour": c.colour}
                | {"texture": c.texture}
                for c in classes
            ],
        }
        (tmp / MARKER_FILE).write_text(json.dumps(meta, indent=2) + "\n")

        if out_dir.exists():  # empty, or an earlier synthetic dataset (checked above)
            trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, trash / "old")
            os.replace(tmp, out_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    return SyntheticSummary(
        out_dir=out_dir,
        num_classes=num_classes,
        image_size=image_size,
        seed=seed,
        train_images=num_classes * train_per_class,
        val_images=val_images,
        val_boxes=val_boxes,
        classes=[(c.wnid, c.name) for c in classes],
        seconds=time.perf_counter() - start,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cam_cli.synthetic",
        description="Write a small synthetic dataset in the ILSVRC 2012 layout and formats.",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--num-classes", type=int, default=6)
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--val-images", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = generate_dataset(
            args.out_dir,
            num_classes=args.num_classes,
            train_per_class=args.train_per_class,
            val_images=args.val_images,
            image_size=args.image_size,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {summary.train_images} train images ({summary.num_classes} classes), "
        f"{summary.val_images} val images with {summary.val_boxes} boxes to {summary.out_dir} "
        f"in {summary.seconds:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
