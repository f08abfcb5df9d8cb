"""Classes from another classifier (``eval --class-predictions FILE``): its top-k classes per
image, combined with cam-cli's boxes for top-1/top-5 localization error, as TS-CAM and GenPromp
report it (wsolevaluation #14, #50).

The file, one image per line, best class first:

- JSON Lines: ``{"image": "ILSVRC2012_val_00000001.JPEG", "classes": ["n01751748", ...]}``;
  ``"path"`` may stand for ``"image"``, and a `cam-cli bbox` record (its ``predictions``) is
  read too. Classes are wnids or class indices.
- CSV: ``image,class1,class2,...``, or the classes space-separated in the second cell; a
  first row whose first cell is ``image``, ``image_id``, ``ImageId`` or ``path`` is a header.

Images are matched by file stem, as everywhere in `eval`.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from cam_cli.data.classes import ClassInfo
from cam_cli.errors import EvaluationError
from cam_cli.files.checks import record_name

HEADER_CELLS = {"image", "image_id", "imageid", "path"}


def read_class_predictions(path: str | Path) -> dict[str, list[str]]:
    """``{image stem: [class, ...]}`` (classes as written: wnids or digits), best first."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise EvaluationError(f"{path}: cannot read ({error.strerror or error})") from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    rows = _json_rows(text, path) if first.lstrip().startswith("{") else _csv_rows(text, path)
    found: dict[str, list[str]] = {}
    for number, image, classes in rows:
        stem = record_name(Path(image).stem)  # as written (printed), like bbox records
        if not classes:
            raise EvaluationError(f"{path}:{number}: no classes for image {image}")
        if stem in found:
            raise EvaluationError(f"{path}:{number}: image {stem} is listed twice")
        found[stem] = classes
    if not found:
        raise EvaluationError(f"{path}: no class predictions in it")
    return found


def _json_rows(text: str, path: Path):
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise EvaluationError(f"{path}:{number}: not JSON") from None
        image = row.get("image", row.get("path")) if isinstance(row, dict) else None
        if not isinstance(image, str):
            raise EvaluationError(f'{path}:{number}: no "image" (or "path") string')
        classes = row.get("classes")
        if classes is None and isinstance(row.get("predictions"), list):  # a `bbox` record
            classes = [_bbox_class(p) for p in row["predictions"]]
        if not isinstance(classes, list):
            raise EvaluationError(f'{path}:{number}: no "classes" list')
        yield number, image, [str(c) for c in classes]


def _bbox_class(prediction) -> str:
    if isinstance(prediction, dict):
        return str(prediction.get("wnid") or prediction.get("class_index"))
    return str(prediction)


def _csv_rows(text: str, path: Path):
    for number, cells in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in cells]
        if not any(cells):
            continue
        if number == 1 and cells[0].lower() in HEADER_CELLS:
            continue
        yield number, cells[0], [c for cell in cells[1:] for c in cell.split()]


def class_indices(
    predictions: dict[str, list[str]], stems: Sequence[str], classes: list[ClassInfo], source: str
) -> dict[str, list[int]]:
    """The model's class index of every listed class of each of ``stems`` (all must be in the
    file; other images in it are ignored). Unknown classes are refused, naming the image."""
    from cam_cli.data.matching import label_indices

    to_index: Callable[[str], int] = label_indices(classes)
    absent = [stem for stem in stems if stem not in predictions]
    if absent:
        raise EvaluationError(
            f"{source}: no class predictions for {len(absent)} evaluated images "
            f"(e.g. {', '.join(absent[:3])})"
        )
    out: dict[str, list[int]] = {}
    for stem in stems:
        indices = []
        for label in predictions[stem]:
            try:
                index = int(label) if label.isdigit() else to_index(label)
            except (KeyError, ValueError):
                index = -1
            if not 0 <= index < len(classes):
                raise EvaluationError(
                    f"{source}: image {stem}: class {label} is not one of the model's classes"
                )
            indices.append(index)
        out[stem] = indices
    return out


def file_digest(path: str | Path) -> str:
    """The file's content hash: a resumed run must use the same class predictions."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
