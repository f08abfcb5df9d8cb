"""Classes from another classifier (`eval`'s `class_predictions` FILE): its top-k classes per
image, combined with cam-cli's boxes for top-1/top-5 localization error, as TS-CAM and GenPromp
report it (wsolevaluation #14, #50).

The file, one image per line, best class first:

- JSON Lines: ``{"image": "ILSVRC2012_val_00000001.JPEG", "classes": ["n01751748", ...]}``;
  ``"path"`` may stand for ``"image"``, and a `cam-cli bbox` record (its ``predictions``) is
  read too. Classes are wnids or class indices.
- CSV: ``image,class1,class2,...``, or the classes space-separated in the second cell; a
  first row whose first cell is ``image``, ``image_id``, ``ImageId`` or ``path`` is a header.

Images are matched by file stem, as everywhere in `eval`. The file is read line by line
(`files.reading`: UTF-8, a line at most 1 MiB, a FIFO refused at once, deep JSON refused) and
only the first `USED_CLASSES` classes of each image are kept, the most any figure reads
(top-5), with a note when there were more: memory is a few classes per image, however many
the file lists.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from cam_cli.data.classes import ClassInfo
from cam_cli.errors import EvaluationError
from cam_cli.files.checks import printable_path, record_name
from cam_cli.files.reading import excerpt, loads, open_regular, text_lines

HEADER_CELLS = {"image", "image_id", "imageid", "path"}
USED_CLASSES = 5  # `metrics.TOP_K`: top-5 is the most any figure reads of an image's classes
logger = logging.getLogger(__name__)
Row = tuple[int, str, list[str]]


def read_class_predictions(path: str | Path) -> dict[str, list[str]]:
    """``{image stem: [class, ...]}`` (classes as written: wnids or digits), best first, at
    most `USED_CLASSES` of them. `EvaluationError` naming the file and line otherwise."""
    path = Path(path)
    found: dict[str, list[str]] = {}
    cut = 0
    try:
        for number, image, classes in _rows(path):
            stem = record_name(Path(image).stem)  # as written (printed), like bbox records
            if not classes:
                raise EvaluationError(f"{path}:{number}: no classes for image {excerpt(image)}")
            if stem in found:
                raise EvaluationError(f"{path}:{number}: image {excerpt(stem)} is listed twice")
            cut += len(classes) > USED_CLASSES
            found[stem] = classes[:USED_CLASSES]
    except ValueError as error:  # the readers' own (`files.reading`), already naming the file
        raise EvaluationError(str(error)) from None
    if not found:
        raise EvaluationError(f"{path}: no class predictions in it")
    if cut:
        logger.info(
            "note: %s: %d image(s) list more than %d classes; the first %d of each are used "
            "(top-5 is the most any figure reads)",
            printable_path(path), cut, USED_CLASSES, USED_CLASSES,
        )  # fmt: skip
    return found


def _rows(path: Path) -> Iterator[Row]:
    """The file's rows, JSON Lines or CSV as its first non-blank line says."""
    lines = ((n, text.rstrip("\r")) for n, text in text_lines(path))
    for number, first in lines:
        if not first.strip():
            continue
        rest = _chain((number, first), lines)
        if first.lstrip().startswith("{"):
            yield from _json_rows(rest, path)
        else:
            yield from _csv_rows(rest, path)
        return


def _chain(first: tuple[int, str], rest: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield first
    yield from rest


def _json_rows(lines: Iterable[tuple[int, str]], path: Path) -> Iterator[Row]:
    for number, line in lines:
        if not line.strip():
            continue
        row = loads(line, f"{path}:{number}")
        image = row.get("image", row.get("path")) if isinstance(row, dict) else None
        if not isinstance(image, str):
            raise EvaluationError(f'{path}:{number}: no "image" (or "path") string')
        classes = row.get("classes")
        if classes is None and isinstance(row.get("predictions"), list):  # a `bbox` record
            classes = [_bbox_class(p) for p in row["predictions"][:USED_CLASSES]]
        if not isinstance(classes, list) or not all(_is_class(c) for c in classes):
            raise EvaluationError(f'{path}:{number}: no "classes" list of class names or indices')
        yield number, image, [str(c) for c in classes[: USED_CLASSES + 1]]


def _is_class(value: object) -> bool:
    """A class as a line may give it: a wnid, an index (as a number or as text)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _bbox_class(prediction: object) -> str:
    if isinstance(prediction, dict):
        return str(prediction.get("wnid") or prediction.get("class_index"))
    return str(prediction)


def _csv_rows(lines: Iterable[tuple[int, str]], path: Path) -> Iterator[Row]:
    numbers: list[int] = []

    def texts() -> Iterator[str]:
        for number, text in lines:
            numbers.append(number)
            yield text

    reader = csv.reader(texts())
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # a field over csv's limit (131,072 characters), a NUL
            where = f"{path}:{numbers[-1] if numbers else 1}"
            raise EvaluationError(f"{where}: not a readable CSV row ({error})") from None
        number = numbers[-1]
        cells = [cell.strip() for cell in cells]
        if not any(cells):
            continue
        if number == 1 and cells[0].lower() in HEADER_CELLS:
            continue
        classes = [c for cell in cells[1:] for c in cell.split()]
        yield number, cells[0], classes[: USED_CLASSES + 1]


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
    """The file's content hash: a resumed run must use the same class predictions. Read in
    blocks (`files.reading.open_regular`: a FIFO is refused, never waited on)."""
    digest = hashlib.sha256()
    try:
        with open_regular(path) as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except ValueError as error:
        raise EvaluationError(str(error)) from None
    return digest.hexdigest()[:16]
