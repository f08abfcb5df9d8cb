"""Ground truth readers: ILSVRC XML, Kaggle CSV, devkit labels, CUB-200-2011.

Every reader returns ``{image_id: ImageAnnotation}`` keyed by the image's file stem
(``ILSVRC2012_val_00000001``), so images found on disk are matched to their ground truth by
stem whatever the folder layout (flat ``val/`` or ``val/<wnid>/``).

Conventions, relied on by `metrics`:
- Boxes are ``(xmin, ymin, xmax, ymax)`` in *inclusive* pixel coordinates, as the ILSVRC XML
  and the Kaggle CSV store them (the devkit computes width as ``xmax - xmin + 1``).
- Labels are strings. ILSVRC labels are wnids (``n01751748``). CUB labels are the 0-based class
  index as a string (``"0"`` .. ``"199"``, class id minus one), the same index a model trained
  on CUB predicts, so a prediction matches by wnid when the label is a wnid and by class index
  when the label is all digits.
- The devkit's ILSVRC2012_IDs are translated to wnids through ``meta.mat`` only. They are *not*
  the sorted-wnid indices models use (image 1 has ID 490 = n01751748 = sorted index 65);
  mixing the two silently destroys every figure, so no reader ever guesses that mapping.
"""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from cam_cli.data import tiny_imagenet
from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import MAX_COORDINATE, Box, ImageAnnotation, check_box, unique
from cam_cli.files.reading import decode_line, open_regular, raw_lines
from cam_cli.settings import CubSplit, choices

KAGGLE_HEADER = ["ImageId", "PredictionString"]


# --- ILSVRC per-image XML --------------------------------------------------------------------


def _xml_int(element: ET.Element, tag: str, path: Path) -> int:
    text = element.findtext(tag)
    if text is None or not text.strip():
        raise ValueError(f"{path}: missing <{tag}>")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}: <{tag}> is not a number: {text.strip()!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}: <{tag}> is not finite: {text.strip()!r}")
    if abs(value) > MAX_COORDINATE:
        raise ValueError(f"{path}: <{tag}> {text.strip()} is outside any image")
    return round(value)


def read_xml_file(path: str | Path) -> ImageAnnotation:
    """One ILSVRC box XML (``annotation/size``, ``annotation/object/{name,bndbox}``)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise ValueError(f"{path}: malformed XML ({error})") from None
    if root.tag != "annotation":
        raise ValueError(f"{path}: expected an <annotation> root element, got <{root.tag}>")
    size = root.find("size")
    width = _xml_int(size, "width", path) if size is not None else None
    height = _xml_int(size, "height", path) if size is not None else None
    boxes = []
    for number, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise ValueError(f"{path}: object {number} has no <name>")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{path}: object {number} ({name}) has no <bndbox>")
        box = tuple(_xml_int(bndbox, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((name, check_box(box, f"{path}: object {number}")))
    return ImageAnnotation(
        image_id=path.stem,
        labels=unique(label for label, _ in boxes),
        boxes=tuple(boxes),
        width=width,
        height=height,
    )


def xml_files(directory: str | Path) -> list[Path]:
    """The ``*.xml`` files under ``directory`` (recursively, sorted): what `read_xml_dir` reads."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a directory")
    return [p for p in sorted(directory.rglob("*")) if p.suffix.lower() == ".xml" and p.is_file()]


def read_xml_dir(directory: str | Path) -> dict[str, ImageAnnotation]:
    """All ``*.xml`` under ``directory`` (recursively), keyed by file stem."""
    annotations: dict[str, ImageAnnotation] = {}
    where: dict[str, Path] = {}
    for path in xml_files(directory):
        if path.stem in annotations:
            raise ValueError(
                f"two annotation files for image {path.stem}: {where[path.stem]}, {path}"
            )
        annotations[path.stem] = read_xml_file(path)
        where[path.stem] = path
    if not annotations:
        raise ValueError(f"{directory}: no .xml annotation files found")
    return annotations


# --- Kaggle LOC_val_solution.csv -------------------------------------------------------------


def _parse_prediction_string(text: str, where: str) -> list[tuple[str, Box]]:
    tokens = text.split()
    if len(tokens) % 5:
        raise ValueError(
            f"{where}: PredictionString must repeat 'wnid xmin ymin xmax ymax', "
            f"got {len(tokens)} tokens"
        )
    boxes = []
    for start in range(0, len(tokens), 5):
        label, *coordinates = tokens[start : start + 5]
        try:
            box = tuple(int(c) for c in coordinates)
        except ValueError:
            raise ValueError(
                f"{where}: non-integer coordinate in {tokens[start : start + 5]}"
            ) from None
        boxes.append((label, check_box(box, where)))
    return boxes


class _CsvRows:
    """`csv.reader` whose own errors (a field over its limit of 131,072 characters, a NUL)
    are a ValueError naming the file and line, as every other problem of the file is."""

    def __init__(self, handle: Iterable[str], path: Path) -> None:
        self._reader, self._path = csv.reader(handle), path

    @property
    def line_num(self) -> int:
        return self._reader.line_num

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> list[str]:
        try:
            return next(self._reader)
        except csv.Error as error:
            where = f"{self._path}:{self._reader.line_num}"
            raise ValueError(f"{where}: not a readable CSV row ({error})") from None


@contextmanager
def text_file(path: Path) -> Iterator[Iterator[str]]:
    """The lines of a UTF-8 text file (each with its line end, a leading byte order mark
    dropped), read by `files.reading`: bounded lines, a FIFO refused at once, bytes that are
    not UTF-8 (a latin-1 export) a ValueError naming the file and line."""
    name = str(path)
    with open_regular(path) as handle:
        yield (
            decode_line(raw, f"{name}:{number}", bom=number == 1) + "\n"
            for number, raw in raw_lines(handle, name)
        )


def read_loc_solution_csv(path: str | Path) -> dict[str, ImageAnnotation]:
    """Kaggle ``LOC_val_solution.csv``: ``ImageId,PredictionString`` (no image sizes)."""
    path = Path(path)
    annotations: dict[str, ImageAnnotation] = {}
    with text_file(path) as handle:
        reader = _CsvRows(handle, path)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != KAGGLE_HEADER:
            raise ValueError(f"{path}:1: expected header 'ImageId,PredictionString', got {header}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise ValueError(f"{where}: expected 2 fields, got {len(row)}")
            image_id = row[0].strip()
            if not image_id:
                raise ValueError(f"{where}: empty ImageId")
            if image_id in annotations:
                raise ValueError(f"{where}: duplicate ImageId {image_id}")
            boxes = _parse_prediction_string(row[1], where)
            annotations[image_id] = ImageAnnotation(
                image_id=image_id,
                labels=unique(label for label, _ in boxes),
                boxes=tuple(boxes),
            )
    if not annotations:
        raise ValueError(f"{path}: no rows")
    return annotations


# --- ILSVRC devkit: validation_ground_truth.txt + meta.mat -----------------------------------


def read_devkit_meta(meta_mat: str | Path) -> dict[int, str]:
    """``meta.mat``'s ``synsets``: ILSVRC2012_ID -> wnid, for the leaf (``num_children == 0``)
    synsets only, since only leaves are image classes."""
    from scipy.io import loadmat  # scipy is heavy; only this reader needs it

    meta_mat = Path(meta_mat)
    try:
        contents = loadmat(str(meta_mat), squeeze_me=True, struct_as_record=False)
    except Exception as error:  # noqa: BLE001 - scipy raises several types for a non-.mat file
        raise ValueError(f"{meta_mat}: cannot read as a MATLAB .mat file ({error})") from None
    if "synsets" not in contents:
        raise ValueError(f"{meta_mat}: no 'synsets' variable (is this the devkit's meta.mat?)")
    mapping: dict[int, str] = {}
    for synset in _as_list(contents["synsets"]):
        try:
            ilsvrc_id = int(synset.ILSVRC2012_ID)
            wnid = str(synset.WNID)
            num_children = int(getattr(synset, "num_children", 0))
        except AttributeError as error:
            raise ValueError(f"{meta_mat}: synsets lack a field ({error})") from None
        if num_children == 0:
            mapping[ilsvrc_id] = wnid
    if not mapping:
        raise ValueError(f"{meta_mat}: no leaf synsets")
    return mapping


def _as_list(value: object) -> list:
    """``squeeze_me`` turns a one-element struct array into the bare struct; undo that."""
    if hasattr(value, "ravel"):
        return list(value.ravel())
    return [value]


def read_devkit_labels(
    ground_truth_txt: str | Path, meta_mat: str | Path
) -> dict[str, ImageAnnotation]:
    """``ILSVRC2012_validation_ground_truth.txt`` (line i: the ILSVRC2012_ID of image
    ``ILSVRC2012_val_%08d`` % i) translated to wnids through ``meta.mat``. Labels only."""
    ground_truth_txt = Path(ground_truth_txt)
    id_to_wnid = read_devkit_meta(meta_mat)
    annotations: dict[str, ImageAnnotation] = {}
    with text_file(ground_truth_txt) as handle:
        for line_number, line in enumerate(handle, start=1):
            text = line.strip()
            where = f"{ground_truth_txt}:{line_number}"
            if not text:
                raise ValueError(f"{where}: empty line (line i is the label of image i)")
            try:
                ilsvrc_id = int(text)
            except ValueError:
                raise ValueError(f"{where}: expected an ILSVRC2012_ID, got {text!r}") from None
            if ilsvrc_id not in id_to_wnid:
                raise ValueError(f"{where}: ILSVRC2012_ID {ilsvrc_id} is not a class in {meta_mat}")
            image_id = f"ILSVRC2012_val_{line_number:08d}"
            annotations[image_id] = ImageAnnotation(image_id, (id_to_wnid[ilsvrc_id],))
    if not annotations:
        raise ValueError(f"{ground_truth_txt}: no labels")
    return annotations


# --- dispatch ---------------------------------------------------------------------------------


def annotation_files(path: str | Path) -> list[Path]:
    """The files `read_annotations` reads for ``path`` (a folder: its XML files), so that no
    output is ever written over one of them."""
    path = Path(path)
    return xml_files(path) if path.is_dir() else [path]


def read_annotations(
    path: str | Path, meta_mat: str | Path | None = None
) -> dict[str, ImageAnnotation]:
    """Read ground truth from whatever ``path`` is: a folder of XML, a Kaggle CSV, the
    devkit's ground-truth ``.txt`` (which needs ``meta_mat``), or Tiny ImageNet's
    ``val/val_annotations.txt`` or ``train/`` folder of ``<wnid>_boxes.txt`` (`tiny_imagenet`)."""

    path = Path(path)
    if tiny_imagenet.is_train_dir(path):
        return tiny_imagenet.read_train_boxes(path)
    if path.is_dir():
        return read_xml_dir(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_loc_solution_csv(path)
    if suffix == ".xml":
        annotation = read_xml_file(path)
        return {annotation.image_id: annotation}
    if suffix == ".txt" and meta_mat is None and tiny_imagenet.is_val_annotations(path):
        return tiny_imagenet.read_val_annotations(path)
    if suffix == ".txt":
        if meta_mat is None:
            raise ValueError(
                f"{path}: devkit ground-truth IDs need the devkit's meta.mat to become wnids "
                "(they are not sorted-wnid class indices); pass meta_mat"
            )
        return read_devkit_labels(path, meta_mat)
    raise ValueError(
        f"{path}: unknown annotation format (expected a folder of .xml, a Kaggle .csv, "
        "or a devkit ground-truth .txt with meta.mat)"
    )


# --- CUB-200-2011 -----------------------------------------------------------------------------


def _read_id_table(path: Path, fields: int) -> dict[str, list[str]]:
    """``id value...`` lines -> {id: [values]}, with file:line errors."""
    table: dict[str, list[str]] = {}
    with text_file(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != fields + 1:
                raise ValueError(
                    f"{path}:{line_number}: expected {fields + 1} fields, got {len(parts)}"
                )
            if parts[0] in table:
                raise ValueError(f"{path}:{line_number}: duplicate id {parts[0]}")
            table[parts[0]] = parts[1:]
    return table


def cub_box(x: float, y: float, w: float, h: float) -> Box:
    """CUB ``x y width height`` (floats; x, y = top-left pixel, 0-based) -> inclusive box.

    ``xmin = round(x)``, ``xmax = round(x + w) - 1`` (a box w pixels wide covers pixels
    ``x .. x + w - 1``), likewise for y; clamped so that ``0 <= min <= max``. The image size is
    not in the CUB files, so the upper clamp is left to whoever knows the image.
    """
    if not all(math.isfinite(v) and abs(v) <= MAX_COORDINATE for v in (x, y, w, h)):
        raise ValueError(f"invalid box {[x, y, w, h]} (not finite, or outside any image)")
    xmin, ymin = max(0, round(x)), max(0, round(y))
    xmax = max(xmin, round(x + w) - 1)
    ymax = max(ymin, round(y + h) - 1)
    return (xmin, ymin, xmax, ymax)


CUB_FILES = (
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "classes.txt",
)


def read_cub(
    root: str | Path, split: str = "test"
) -> tuple[dict[str, ImageAnnotation], list[ClassInfo], dict[str, Path]]:
    """CUB-200-2011: annotations (label = 0-based class index as a string), the 200 classes
    (``ClassInfo(index=class_id - 1, wnid=None, name='Black_footed_Albatross')``) and the image
    paths (``root/images/<relpath>``), all keyed by image file stem. ``split``: test/train/all."""
    if split not in choices(CubSplit):
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}")
    root = Path(root)
    for name in CUB_FILES:
        if not (root / name).is_file():
            raise ValueError(f"{root}: missing {name} (is this the CUB_200_2011 folder?)")
    classes_table = _read_id_table(root / "classes.txt", 1)
    classes = []
    for index, class_id in enumerate(sorted(classes_table, key=int)):
        if int(class_id) != index + 1:
            raise ValueError(f"{root / 'classes.txt'}: class ids must be 1..N, missing {index + 1}")
        raw_name = classes_table[class_id][0]
        classes.append(ClassInfo(index, None, raw_name.split(".", 1)[-1]))

    images = _read_id_table(root / "images.txt", 1)
    labels = _read_id_table(root / "image_class_labels.txt", 1)
    is_train = _read_id_table(root / "train_test_split.txt", 1)
    boxes = _read_id_table(root / "bounding_boxes.txt", 4)

    annotations: dict[str, ImageAnnotation] = {}
    paths: dict[str, Path] = {}
    for image_id, (relpath,) in images.items():
        for table, name in (
            (labels, "image_class_labels"),
            (is_train, "train_test_split"),
            (boxes, "bounding_boxes"),
        ):
            if image_id not in table:
                raise ValueError(f"{root / (name + '.txt')}: no entry for image id {image_id}")
        train = is_train[image_id][0] == "1"
        if (split == "test" and train) or (split == "train" and not train):
            continue
        class_index = int(labels[image_id][0]) - 1
        if not 0 <= class_index < len(classes):
            raise ValueError(f"image id {image_id}: class {class_index + 1} not in classes.txt")
        stem = Path(relpath).stem
        if stem in annotations:
            raise ValueError(f"{root / 'images.txt'}: two images with the file stem {stem}")
        label = str(class_index)
        try:
            box = cub_box(*(float(v) for v in boxes[image_id]))
        except ValueError as error:  # "inf", "nan", "1e30", or not a number at all
            where = f"{root / 'bounding_boxes.txt'}: image id {image_id}"
            raise ValueError(f"{where}: {error}") from None
        annotations[stem] = ImageAnnotation(stem, (label,), ((label, box),))
        paths[stem] = root / "images" / relpath
    return annotations, classes, paths
