"""The CAM threshold's images from a few boxes a user drew: a CSV of ``path,class,xmin,ymin,
xmax,ymax``, read and checked against the classes and the disk before the first epoch.

Own data comes without ``<wnid>_boxes.txt``; a user who draws boxes on a dozen images (any
tool that exports a CSV) gives them here, and the threshold is chosen on them exactly as on
Tiny ImageNet's training boxes (`training.threshold`). Classes are matched by the class
folder's name (or, for ILSVRC-style folders, the synset's name); a relative path is relative
to the CSV's own folder, so the file and its images move together. A row whose image is not
there, or whose class the run does not train, is left out with one note each (the count and
the first example): a few hand-drawn boxes are worth using even when some name a class dropped
since. A malformed row stops the run at once (before any training), naming file and line.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import Box, ImageAnnotation, check_box
from cam_cli.files.reading import excerpt, text_lines

HEADER = ["path", "class", "xmin", "ymin", "xmax", "ymax"]

BoxedImage = tuple[str, int, ImageAnnotation]  # (image path, class index, its boxes)


def read_box_rows(path: str | Path) -> list[tuple[str, str, Box]]:
    """``(image path as written, class, box)`` of every row; ValueError naming file:line."""
    rows: list[tuple[str, str, Box]] = []
    lines = [(number, text.rstrip("\r")) for number, text in text_lines(path)]
    lines = [(number, text) for number, text in lines if text.strip()]
    if not lines:
        raise ValueError(f"{path}: empty; expected a header {','.join(HEADER)} and rows")
    header = [cell.strip().lower() for cell in next(csv.reader([lines[0][1]]))]
    if header != HEADER:
        raise ValueError(f"{path}:{lines[0][0]}: expected the header {','.join(HEADER)}, got "
                         f"{excerpt(lines[0][1])}")  # fmt: skip
    for number, text in lines[1:]:
        where = f"{path}:{number}"
        cells = [cell.strip() for cell in next(csv.reader([text]))]
        if len(cells) != len(HEADER):
            raise ValueError(f"{where}: expected {len(HEADER)} fields ({','.join(HEADER)}), "
                             f"got {len(cells)}")  # fmt: skip
        try:
            numbers = [round(float(cell)) for cell in cells[2:]]
        except (ValueError, OverflowError):
            raise ValueError(f"{where}: box coordinates must be numbers, got "
                             f"{excerpt(','.join(cells[2:]))}") from None  # fmt: skip
        if not cells[0] or not cells[1]:
            raise ValueError(f"{where}: an empty path or class")
        box = check_box((numbers[0], numbers[1], numbers[2], numbers[3]), where)
        rows.append((cells[0], cells[1], box))
    return rows


def class_index(classes: Sequence[ClassInfo]) -> dict[str, int]:
    """Class folder names first, then synset names (first name before a comma) not taken."""
    index: dict[str, int] = {}
    for info in classes:
        if info.wnid:
            index.setdefault(info.wnid, info.index)
    for info in classes:
        for name in (info.name, (info.name or "").split(",")[0].strip()):
            if name:
                index.setdefault(name, info.index)
    return index


def boxed_images(
    path: str | Path, classes: Sequence[ClassInfo], notes: list[str]
) -> list[BoxedImage]:
    """The images of the box file that exist and are of a class of ``classes``, each with its
    boxes of that class; what is left out is said in ``notes``. ValueError: a malformed file,
    or no usable row at all."""
    path = Path(path)
    rows = read_box_rows(path)
    index = class_index(classes)
    wnid_of = {info.index: info.wnid or str(info.index) for info in classes}
    boxes: dict[str, list[Box]] = {}
    label: dict[str, int] = {}
    missing: list[str] = []
    unknown: list[str] = []
    for written, name, box in rows:
        image = Path(written) if os.path.isabs(written) else path.parent / written
        if name not in index:
            unknown.append(name)
            continue
        if not image.is_file():
            missing.append(written)
            continue
        key = str(image)
        if label.setdefault(key, index[name]) != index[name]:
            raise ValueError(f"{path}: {excerpt(written)} has boxes of two classes; the "
                             "threshold needs one class per image")  # fmt: skip
        boxes.setdefault(key, []).append(box)
    if unknown:
        notes.append(f"{len(unknown)} boxes of {path} are of classes this run does not train "
                     f"(e.g. {excerpt(unknown[0])}); left out")  # fmt: skip
    if missing:
        example = excerpt(missing[0])
        notes.append(f"{len(missing)} boxes of {path} name images that are not there "
                     f"(e.g. {example}, relative to {path.parent}); left out")  # fmt: skip
    if not boxes:
        raise ValueError(f"{path}: no box of an image that is there and of a class trained")
    return [
        (
            image,
            label[image],
            ImageAnnotation(
                Path(image).stem,
                (wnid_of[label[image]],),
                tuple((wnid_of[label[image]], box) for box in image_boxes),
            ),
        )
        for image, image_boxes in boxes.items()
    ]
