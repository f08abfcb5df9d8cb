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

With ``masks=True`` (`synth`'s `masks`) it also writes each val object's pixel mask in
OpenImages30k's layout, with wsolevaluation metadata for PxAP (`evaluation.pxap`)::

    masks/val/<wnid>/<id>_m<wnid>_<hash>.png   one per object, 0/255 grey (its exact pixels)
    masks/val/<wnid>/<id>_ignore.png           the 1-pixel ring just outside the objects,
                                               where the JPEG blends object and background
    wsol/val/{image_ids,class_labels,image_sizes,localization}.txt
                                               ids ``val/<id>.JPEG``; mask paths relative to
                                               ``OUT_DIR`` (`eval` with `wsol_metadata`
                                               ``OUT_DIR/wsol/val``, `images` ``OUT_DIR``)

The default output (no masks) is unchanged, byte for byte.

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

import csv
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cam_cli.files.descriptors import NOFOLLOW, NONBLOCK, try_lock
from cam_cli.files.lock import LOCK_NAME, FolderLock
from cam_cli.synthetic.render import (
    ClassSpec,
    Sample,
    class_specs,
    render_sample,
    train_rng,
    val_labels,
    val_rng,
)

__all__ = [
    "ClassSpec",
    "Sample",
    "SyntheticSummary",
    "class_specs",
    "generate_dataset",
    "render_sample",
    "val_labels",
]

JPEG_QUALITY = 90
MARKER_FILE = "synthetic.json"


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


def val_image_id(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}"


def annotation_xml(
    image_id: str, width: int, height: int, objects: Iterable[tuple[str, Sequence[int]]]
) -> str:
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


_PARTIAL_CONTENT = {"train", "val", "annotations", "masks", "wsol", "LOC_val_solution.csv",
                    "LOC_synset_mapping.txt", MARKER_FILE, LOCK_NAME}  # fmt: skip


def remove_abandoned_partials(out_dir: Path) -> list[Path]:
    """Delete the ``.NAME.partial-*`` folders that killed runs for ``out_dir`` left; returns
    them. A run holds a lock (`files.lock`, ``flock``) on its partial folder while it writes,
    and the kernel drops it however the run ends. So a partial is deleted only when its lock
    file is there and can be taken now (no live run holds it, in any PID namespace of this
    machine), and it holds nothing this generator does not write. Anything else is left."""
    removed = []
    for candidate in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        lock = candidate / LOCK_NAME
        if candidate.is_symlink() or not lock.is_file():
            continue
        if not {p.name for p in candidate.iterdir()} <= _PARTIAL_CONTENT:
            continue
        try:
            fd = os.open(lock, os.O_RDWR | NOFOLLOW | NONBLOCK)
        except OSError:  # a link, no permission: not ours to judge
            continue
        try:
            free = try_lock(fd)
        except OSError:  # no locks here: nothing is proven
            free = False
        if not free:  # a live run is writing it
            os.close(fd)
            continue
        try:
            shutil.rmtree(candidate)
            removed.append(candidate)
        finally:
            os.close(fd)
    return removed


def generate_dataset(
    out_dir: str | os.PathLike,
    *,
    num_classes: int = 6,
    train_per_class: int = 200,
    val_images: int = 300,
    image_size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
    masks: bool = False,
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
                f"{out_dir} exists and is not empty (`overwrite` replaces a dataset this "
                "generator made)"
            )
        if not _is_replaceable(out_dir):
            raise FileExistsError(f"{out_dir} is not a synthetic dataset; refusing to replace it")
    classes = class_specs(num_classes)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_partials(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    lock = FolderLock(tmp, "synth")
    try:
        lock.acquire()
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
        mask_rows: list[tuple[str, str, str, str]] = []  # (id, label, mask, ignore)
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
            if masks:
                mask_rows += _write_masks(tmp, image_id, spec, sample.masks)

        with open(tmp / "LOC_val_solution.csv", "w", newline="") as f:
            writer = csv.writer(f)  # CRLF line ends, as in Kaggle's file
            writer.writerow(("ImageId", "PredictionString"))
            writer.writerows(rows)
        if masks:
            _write_mask_metadata(tmp, mask_rows, image_size)
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
        if masks:  # only then: the default synthetic.json stays as it was
            meta["masks"] = True
        (tmp / MARKER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / LOCK_NAME).unlink()  # not part of the dataset; the flock is held until the end

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
    finally:
        lock.release()

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


def _ignore_ring(masks: list[np.ndarray]) -> np.ndarray:
    """The pixels 8-adjacent to an object but outside every object."""
    union = np.logical_or.reduce(masks)
    padded = np.pad(union, 1)
    grown = np.zeros_like(union)
    height, width = union.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            grown |= padded[dy : dy + height, dx : dx + width]
    return grown & ~union


def _save_mask(mask: np.ndarray, path: Path) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(path, format="PNG")


def _write_masks(
    tmp: Path, image_id: str, spec: ClassSpec, masks: list[np.ndarray]
) -> list[tuple[str, str, str, str]]:
    """Each object's mask and the image's ignore mask, OpenImages30k names; the metadata rows."""
    folder = Path("masks") / "val" / spec.wnid
    (tmp / folder).mkdir(parents=True, exist_ok=True)
    rows = []
    ignore = (folder / f"{image_id}_ignore.png").as_posix()
    _save_mask(_ignore_ring(masks), tmp / ignore)
    for k, mask in enumerate(masks):
        digest = hashlib.sha256(f"{image_id}/{k}".encode()).hexdigest()[:8]
        name = (folder / f"{image_id}_m{spec.wnid}_{digest}.png").as_posix()
        _save_mask(mask, tmp / name)
        rows.append((f"val/{image_id}.JPEG", str(spec.index), name, ignore if k == 0 else ""))
    return rows


def _write_mask_metadata(tmp: Path, rows: list[tuple[str, str, str, str]], image_size: int) -> None:
    """wsolevaluation's four files for the val masks (`data.wsol_metadata`)."""
    from cam_cli.data.wsol_metadata import WsolMetadata, metadata_texts

    ids = tuple(dict.fromkeys(row[0] for row in rows))
    masks: dict[str, list[str]] = {}
    for image_id, _, mask, _ in rows:
        masks.setdefault(image_id, []).append(mask)
    metadata = WsolMetadata(
        image_ids=ids,
        class_labels={row[0]: int(row[1]) for row in rows},
        image_sizes={image_id: (image_size, image_size) for image_id in ids},
        masks={k: tuple(v) for k, v in masks.items()},
        ignore={row[0]: row[3] for row in rows if row[3]},
    )
    folder = tmp / "wsol" / "val"
    folder.mkdir(parents=True)
    for name, text in metadata_texts(metadata).items():
        (folder / name).write_text(text)
