"""Any labelled data as ground truth: Pascal VOC XML, YOLO label folders, COCO instances
files and a plain CSV, besides ILSVRC's own formats (`data.annotations`), all read by one
call, `read_ground_truth`, into the `GroundTruth` the evaluation takes.

Every reader gives boxes as the evaluation keeps them: inclusive, 0-based pixels
``(xmin, ymin, xmax, ymax)`` keyed by image file stem, labels as the class NAMES the file
gives (matched to a model's classes by `data.class_match`, here when ``classes`` is given,
else by the evaluation once the model is loaded). The conversions:

- VOC ``<bndbox>`` is 1-based inclusive pixels: each coordinate minus 1 (a 0, which some
  tools write, is read as 0);
- YOLO ``class cx cy w h`` is normalised to the image size, read from the image's header;
  COCO ``bbox`` is ``x, y, w, h`` in continuous pixels: both cover ``[x, x + w)``, so
  ``xmin = round(x)``, ``xmax = round(x + w) - 1``, clamped into the image;
- the CSV ``path,class,xmin,ymin,xmax,ymax`` is already inclusive 0-based pixels.

Sizes and names are checked where they enter, each problem one ValueError (or
`errors.InputFileError`) naming the file and the reason: files are read bounded
(`files.reading`), coordinates must be finite numbers inside any image, a YOLO line must be
five numbers in range, a class list is at most `MAX_CLASSES` names.
"""

from __future__ import annotations

import csv
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cam_cli.data.annotations import annotation_files, read_annotations
from cam_cli.data.class_match import match_labels
from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import (
    MAX_COORDINATE,
    Box,
    GroundTruth,
    ImageAnnotation,
    check_box,
    unique,
)
from cam_cli.files.reading import read_bytes, read_json, text_lines
from cam_cli.settings import AnnotationsFormat, choices

# The formats `read_ground_truth` takes; "ilsvrc" is ILSVRC XML, the Kaggle CSV, the devkit's
# labels and Tiny ImageNet's tables, told apart as `data.annotations.read_annotations` does.
FORMATS = choices(AnnotationsFormat)
CSV_HEADER = ["path", "class", "xmin", "ymin", "xmax", "ymax"]
MAX_CLASSES = 100_000  # a class list longer than this is a broken file, not a data set
MAX_NAME = 1000  # characters of one class name
MAX_XML_BYTES = 1 << 24  # one image's XML
MAX_COCO_BYTES = 1 << 30  # COCO's train2017 instances file is under half of this
MAX_YAML_BYTES = 1 << 20  # a data.yaml of MAX_CLASSES names fits
YOLO_SPLITS = ("val", "test", "train")


def read_ground_truth(
    path: str | Path,
    *,
    fmt: str | None = None,
    classes: Sequence[ClassInfo] | None = None,
    images: str | Path | None = None,
    meta: str | Path | None = None,
) -> GroundTruth:
    """The ground truth in ``path``, in format ``fmt`` (`FORMATS`; None: told from the path,
    `detect_format`). ``classes``: the model's, to match class names to now (a name none of
    them has is a ValueError naming it); None leaves the names for the evaluation to match.
    ``images``: where the images are (matched by file stem; a YOLO folder's sizes are read
    from them, by default from the ``images`` folder beside ``labels``). ``meta``: the
    devkit's meta.mat (ILSVRC only)."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown annotation format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if meta is not None and fmt != "ilsvrc":
        raise ValueError(f"`meta` goes with the devkit's labels, not with {fmt} annotations")
    named = fmt != "ilsvrc"
    if fmt == "ilsvrc":
        annotations = read_annotations(path, meta)
        files = {"annotations": annotation_files(path)}
        if meta is not None:
            files["meta"] = [Path(meta)]
    else:
        reader = {"voc": read_voc, "yolo": read_yolo, "coco": read_coco, "csv": read_csv}[fmt]
        read = reader(path, images)
        annotations, files = read.annotations, {"annotations": list(read.files)}
    if classes is not None:
        annotations = match_labels(annotations, classes, str(path), strict=named)
    return GroundTruth(annotations, images, files=files, class_names=named and classes is None)


def detect_format(path: Path) -> str:
    """The format of ``path`` from its layout: a VOC root (``Annotations`` beside
    ``ImageSets``), a YOLO folder (``labels``, ``data.yaml`` or ``classes.txt``) or its
    ``data.yaml``, a ``.json`` (COCO), a ``.csv`` starting with the `CSV_HEADER`; anything
    else is ILSVRC's (an XML folder keeps its 0-based ILSVRC reading)."""
    if path.is_dir():
        if (path / "Annotations").is_dir() and (path / "ImageSets").is_dir():
            return "voc"
        if path.name == "Annotations" and (path.parent / "ImageSets").is_dir():
            return "voc"
        if _yolo_labels_dir(path) is not None:
            return "yolo"
        return "ilsvrc"
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yolo"
    if suffix == ".json":
        return "coco"
    if suffix == ".csv" and path.is_file():
        for _, line in text_lines(path):
            return "csv" if _header(line) == CSV_HEADER else "ilsvrc"
    return "ilsvrc"


@dataclass(frozen=True)
class Read:
    """What one reader gives: annotations by image id, and every file it read."""

    annotations: dict[str, ImageAnnotation]
    files: tuple[Path, ...]


def _add(annotations: dict[str, ImageAnnotation], where: dict[str, str], item: ImageAnnotation,
         source: str) -> None:  # fmt: skip
    if item.image_id in annotations:
        raise ValueError(
            f"two annotations for image {item.image_id}: {where[item.image_id]}, {source}"
        )
    annotations[item.image_id] = item
    where[item.image_id] = source


def _number(text: str | None, what: str, where: str) -> float:
    """A finite number within any image (`MAX_COORDINATE`), or ValueError naming ``where``."""
    if text is None or not text.strip():
        raise ValueError(f"{where}: missing {what}")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {what} is not a number: {text.strip()[:40]!r}") from None
    if not math.isfinite(value) or abs(value) > MAX_COORDINATE:
        raise ValueError(f"{where}: {what} {text.strip()[:40]} is outside any image")
    return value


def _half_up(value: float) -> int:
    return math.floor(value + 0.5)


def span(start: float, length: float, size: int | None) -> tuple[int, int]:
    """A continuous ``[start, start + length)`` as inclusive pixels ``(first, last)``,
    clamped into ``0 .. size - 1`` (a zero-length span keeps one pixel)."""
    first = max(0, _half_up(start))
    last = max(first, _half_up(start + length) - 1)
    if size is not None:
        first, last = min(first, size - 1), min(last, size - 1)
    return first, last


def _name(text: str, where: str) -> str:
    name = text.strip()
    if not name:
        raise ValueError(f"{where}: empty class name")
    if len(name) > MAX_NAME:
        raise ValueError(f"{where}: a class name of {len(name)} characters (at most {MAX_NAME})")
    return name


# --- Pascal VOC XML ---------------------------------------------------------------------------


def voc_files(path: Path) -> list[Path]:
    """The XML files of a VOC root (``Annotations/``) or of a folder of them, sorted."""
    folder = path / "Annotations" if (path / "Annotations").is_dir() else path
    if not folder.is_dir():
        raise ValueError(f"{path}: not a folder of VOC XML (nor a VOC root with Annotations/)")
    found = [p for p in sorted(folder.rglob("*")) if p.suffix.lower() == ".xml" and p.is_file()]
    if not found:
        raise ValueError(f"{folder}: no .xml annotation files found")
    return found


def read_voc(path: str | Path, images: str | Path | None = None) -> Read:
    """A folder of Pascal VOC XML (or a VOC root): one image per file, keyed by file stem."""
    annotations: dict[str, ImageAnnotation] = {}
    where: dict[str, str] = {}
    files = voc_files(Path(path))
    for file in files:
        _add(annotations, where, read_voc_file(file), str(file))
    return Read(annotations, tuple(files))


def read_voc_file(path: Path) -> ImageAnnotation:
    """One VOC XML: ``<size>`` and each ``<object>``'s ``<name>`` and 1-based ``<bndbox>``."""
    data = read_bytes(path, MAX_XML_BYTES)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ValueError(f"{path}: XML with a DOCTYPE or entities is not a VOC annotation")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as error:
        raise ValueError(f"{path}: malformed XML ({error})") from None
    if root.tag != "annotation":
        raise ValueError(f"{path}: expected an <annotation> root element, got <{root.tag}>")
    size = root.find("size")
    width = height = None
    if size is not None:
        width = round(_number(size.findtext("width"), "<width>", str(path)))
        height = round(_number(size.findtext("height"), "<height>", str(path)))
        if width <= 0 or height <= 0:
            width = height = None  # VOC files of unknown size carry 0 x 0
    boxes = []
    for number, obj in enumerate(root.iter("object"), start=1):
        where = f"{path}: object {number}"
        name = _name(obj.findtext("name") or "", where)
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{where} ({name}) has no <bndbox>")
        values = [
            _number(bndbox.findtext(tag), f"<{tag}>", where)
            for tag in ("xmin", "ymin", "xmax", "ymax")
        ]
        if min(values) < 0:
            raise ValueError(f"{where}: invalid box {values} (negative; VOC pixels start at 1)")
        xmin, ymin, xmax, ymax = (max(0, _half_up(v) - 1) for v in values)
        if width is not None and height is not None and (xmin >= width or ymin >= height):
            raise ValueError(f"{where}: box {values} starts outside the {width}x{height} image")
        boxes.append((name, check_box((xmin, ymin, xmax, ymax), where)))
    return ImageAnnotation(path.stem, unique(n for n, _ in boxes), tuple(boxes), width, height)


# --- CSV path,class,xmin,ymin,xmax,ymax -------------------------------------------------------


def _header(line: str) -> list[str]:
    return [field.strip().lower() for field in line.split(",")]


def read_csv(path: str | Path, images: str | Path | None = None) -> Read:
    """``path,class,xmin,ymin,xmax,ymax`` with that header: one box a row, inclusive 0-based
    pixels; an image's rows may be anywhere; the image id is the stem of ``path``."""
    path = Path(path)
    boxes: dict[str, list[tuple[str, Box]]] = {}
    first_path: dict[str, str] = {}
    lines = ((number, line) for number, line in text_lines(path))
    header = next(lines, None)
    if header is None or _header(header[1]) != CSV_HEADER:
        raise ValueError(f"{path}:1: expected the header '{','.join(CSV_HEADER)}'")
    for number, line in lines:
        where = f"{path}:{number}"
        if not line.strip():
            continue
        try:
            row = next(csv.reader([line]))
        except csv.Error as error:
            raise ValueError(f"{where}: not a readable CSV row ({error})") from None
        if len(row) != 6:
            raise ValueError(f"{where}: expected 6 fields ({','.join(CSV_HEADER)}), got {len(row)}")
        image, label = row[0].strip(), _name(row[1], where)
        if not image:
            raise ValueError(f"{where}: empty path")
        fields = zip(row[2:], CSV_HEADER[2:], strict=True)
        values = [_number(text, name, where) for text, name in fields]
        if any(v != int(v) for v in values):
            raise ValueError(f"{where}: coordinates must be whole pixels, got {row[2:]}")
        box = check_box(tuple(int(v) for v in values), where)
        stem = Path(image).stem
        if first_path.setdefault(stem, image) != image:
            raise ValueError(f"{where}: {image} and {first_path[stem]} have one file stem {stem}")
        boxes.setdefault(stem, []).append((label, box))
    if not boxes:
        raise ValueError(f"{path}: no rows")
    annotations = {
        stem: ImageAnnotation(stem, unique(label for label, _ in items), tuple(items))
        for stem, items in boxes.items()
    }
    return Read(annotations, (path,))


# --- COCO instances JSON ----------------------------------------------------------------------


def read_coco(path: str | Path, images: str | Path | None = None) -> Read:
    """A COCO instances file: ``images`` (``file_name``, ``width``, ``height``), ``categories``
    (``id``, ``name``) and ``annotations`` (``image_id``, ``category_id``, ``bbox`` x, y, w, h).
    Every image listed is ground truth, one without annotations an image of no class."""
    path = Path(path)
    data = read_json(path, "a COCO instances file", MAX_COCO_BYTES)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a COCO instances file (expected a JSON object)")
    lists = {}
    for key in ("images", "annotations", "categories"):
        value = data.get(key)
        if not isinstance(value, list):
            raise ValueError(f"{path}: no '{key}' list; not a COCO instances file")
        lists[key] = value
    if len(lists["categories"]) > MAX_CLASSES:
        raise ValueError(
            f"{path}: {len(lists['categories'])} categories; more than the {MAX_CLASSES} "
            "a class list may have"
        )
    names: dict[object, str] = {}
    for number, category in enumerate(lists["categories"], start=1):
        where = f"{path}: category {number}"
        if not isinstance(category, dict) or not _is_id(category.get("id")):
            raise ValueError(f"{where}: needs an integer 'id' and a 'name'")
        if not isinstance(category.get("name"), str):
            raise ValueError(f"{where}: needs a 'name' (a string)")
        names[category["id"]] = _name(category["name"], where)
    sizes: dict[object, tuple[str, int, int]] = {}
    seen: dict[str, str] = {}
    for number, image in enumerate(lists["images"], start=1):
        where = f"{path}: image {number}"
        if not isinstance(image, dict) or not _is_id(image.get("id")):
            raise ValueError(f"{where}: needs an 'id', 'file_name', 'width' and 'height'")
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            raise ValueError(f"{where}: needs a 'file_name' (a string)")
        width, height = (_size(image.get(key), key, where) for key in ("width", "height"))
        stem = Path(file_name).stem
        if stem in seen:
            raise ValueError(f"{where}: {file_name} and {seen[stem]} have one file stem {stem}")
        seen[stem] = file_name
        if image["id"] in sizes:
            raise ValueError(f"{where}: duplicate image id {image['id']}")
        sizes[image["id"]] = (stem, width, height)
    boxes: dict[object, list[tuple[str, Box]]] = {key: [] for key in sizes}
    for number, item in enumerate(lists["annotations"], start=1):
        where = f"{path}: annotation {number}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: not an object")
        image_id, category = item.get("image_id"), item.get("category_id")
        if not _is_id(image_id) or image_id not in sizes:
            raise ValueError(f"{where}: image_id {str(image_id)[:40]} is not one of the images")
        if not _is_id(category) or category not in names:
            raise ValueError(f"{where}: category_id {str(category)[:40]} is not a category")
        bbox = item.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise ValueError(f"{where}: 'bbox' must be [x, y, width, height]")
        x, y, w, h = (_number(_text(v), "bbox", where) for v in bbox)
        if min(x, y, w, h) < 0:
            raise ValueError(f"{where}: invalid bbox {bbox} (negative)")
        _, width, height = sizes[image_id]
        if x >= width or y >= height:
            raise ValueError(f"{where}: bbox {bbox} starts outside the {width}x{height} image")
        (xmin, xmax), (ymin, ymax) = span(x, w, width), span(y, h, height)
        boxes[image_id].append((names[category], (xmin, ymin, xmax, ymax)))
    annotations = {}
    for image_key, (stem, width, height) in sizes.items():
        items = boxes[image_key]
        labels = unique(label for label, _ in items)
        annotations[stem] = ImageAnnotation(stem, labels, tuple(items), width, height)
    if not annotations:
        raise ValueError(f"{path}: no images")
    return Read(annotations, (path,))


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None if value is None else "not a number"
    return repr(value)


def _size(value: object, key: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_COORDINATE:
        raise ValueError(f"{where}: '{key}' must be a positive whole number of pixels")
    return value


# --- YOLO label folders -----------------------------------------------------------------------


def _yolo_labels_dir(path: Path) -> Path | None:
    """The folder of label files a YOLO path means: ``path/labels``, or ``path`` itself when
    it has a class list (``data.yaml``/``classes.txt``) or is named ``labels``."""
    if (path / "labels").is_dir() and _class_list_file(path) is not None:
        return path / "labels"
    if path.name == "labels" and _class_list_file(path) is not None:
        return path
    if (path / "classes.txt").is_file() or (path / "data.yaml").is_file():
        return path
    return None


def _class_list_file(folder: Path) -> Path | None:
    """``data.yaml`` (or ``.yml``) or ``classes.txt`` in ``folder``, its ``labels`` folder or
    the folder above, first found."""
    for base in (folder, folder / "labels", folder.parent):
        for name in ("data.yaml", "data.yml", "classes.txt"):
            if (base / name).is_file():
                return base / name
    return None


def read_yolo(path: str | Path, images: str | Path | None = None) -> Read:
    """A YOLO label folder (or its dataset folder, or its ``data.yaml``): ``<stem>.txt`` of
    ``class cx cy w h`` lines (normalised), class names from ``data.yaml`` (``names``) or
    ``classes.txt`` (one a line). Each label file's image gives its size: found by stem in
    ``images``, else in the ``images`` folder beside ``labels``."""
    path = Path(path)
    class_file: Path | None
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        class_file, labels = path, path.parent / "labels"
    else:
        found = _yolo_labels_dir(path) if path.is_dir() else None
        if found is None:
            raise ValueError(
                f"{path}: not a YOLO label folder (need labels/ with data.yaml or classes.txt)"
            )
        labels, class_file = found, _class_list_file(path)
    if class_file is None:
        raise ValueError(f"{path}: no data.yaml or classes.txt naming the YOLO classes")
    text_list = class_file.suffix == ".txt"
    names = read_class_txt(class_file) if text_list else read_yaml_names(class_file)
    if not labels.is_dir():
        raise ValueError(f"{labels}: no such label folder")
    label_files = [
        p for p in sorted(labels.rglob("*.txt"))
        if p.is_file() and p.name != "classes.txt"
    ]  # fmt: skip
    if not label_files:
        raise ValueError(f"{labels}: no label files (<stem>.txt)")
    image_root = Path(images) if images is not None else labels.parent / "images"
    by_stem = _images_by_stem(image_root, {p.stem for p in label_files})
    annotations: dict[str, ImageAnnotation] = {}
    where: dict[str, str] = {}
    for file in label_files:
        image = by_stem.get(file.stem)
        if image is None:
            raise ValueError(f"{file}: no image {file.stem}.* in {image_root} to give its size")
        width, height = _image_size(image)
        _add(annotations, where, read_yolo_file(file, names, width, height), str(file))
    return Read(annotations, (class_file, *label_files))


def read_yolo_file(path: Path, names: Sequence[str], width: int, height: int) -> ImageAnnotation:
    """One label file of a ``width x height`` image: ``class cx cy w h`` a line, the class an
    index into ``names``, the four numbers in ``0 .. 1``."""
    boxes = []
    for number, line in text_lines(path):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            raise ValueError(
                f"{where}: expected 5 numbers 'class cx cy w h', got {len(fields)} "
                "(segments and keypoints are not boxes)"
            )
        if not fields[0].isdigit() or int(fields[0]) >= len(names):
            raise ValueError(
                f"{where}: class {fields[0][:20]!r} is not an index of the {len(names)} names"
            )
        cx, cy, w, h = (_number(text, "a coordinate", where) for text in fields[1:])
        if not all(0 <= v <= 1 for v in (cx, cy, w, h)):
            raise ValueError(f"{where}: {' '.join(fields[1:])[:80]} not all in 0 .. 1 (normalised)")
        (xmin, xmax) = span((cx - w / 2) * width, w * width, width)
        (ymin, ymax) = span((cy - h / 2) * height, h * height, height)
        boxes.append((names[int(fields[0])], (xmin, ymin, xmax, ymax)))
    return ImageAnnotation(
        path.stem, unique(name for name, _ in boxes), tuple(boxes), width, height
    )


def _images_by_stem(root: Path, stems: set[str]) -> dict[str, Path]:
    from cam_cli.data.images import list_images

    if not root.is_dir():
        raise ValueError(f"{root}: no image folder to read the YOLO images' sizes from (`images`)")
    found: dict[str, Path] = {}
    for image in list_images(root):
        if image.stem in stems and found.setdefault(image.stem, image) != image:
            raise ValueError(f"{root}: two images with the file stem {image.stem}: "
                             f"{found[image.stem]}, {image}")  # fmt: skip
    return found


def _image_size(path: Path) -> tuple[int, int]:
    """An image's size from its header (nothing decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: cannot read the image's size ({error})") from None


def read_class_txt(path: Path) -> list[str]:
    """``classes.txt``: one class name a line, line i = class i."""
    names = [line.strip() for _, line in text_lines(path, max_bytes=MAX_YAML_BYTES)]
    while names and not names[-1]:
        names.pop()
    return _check_names([_name(n, f"{path}:{i}") for i, n in enumerate(names, 1)], path)


def _check_names(names: list[str], path: Path) -> list[str]:
    if not names:
        raise ValueError(f"{path}: no class names")
    if len(names) > MAX_CLASSES:
        raise ValueError(f"{path}: {len(names)} class names; more than {MAX_CLASSES}")
    return names


_FLOW_ITEM = re.compile(r"""\s*(?:'((?:[^']|'')*)'|"((?:[^"\\]|\\.)*)"|([^,'"]*?))\s*(?:,|$)""")


def read_yaml_names(path: Path) -> list[str]:
    """The ``names`` of a YOLO ``data.yaml``, read by a small bounded parser of the forms
    ultralytics and YOLOv5 write: a flow list ``names: [a, 'b c']``, a block list of
    ``- name`` lines, or a block mapping of ``index: name`` lines (indices 0 .. n-1)."""
    lines = [line for _, line in text_lines(path, max_bytes=MAX_YAML_BYTES)]
    for number, line in enumerate(lines, start=1):
        if not line.startswith("names:"):
            continue
        rest = _uncomment(line[len("names:") :]).strip()
        if rest.startswith("["):
            if not rest.endswith("]"):
                raise ValueError(f"{path}:{number}: a names list must be on one line [a, b, ...]")
            return _check_names(_flow_items(rest[1:-1], f"{path}:{number}"), path)
        if rest:
            raise ValueError(f"{path}:{number}: names must be a list or an index: name mapping")
        return _check_names(_block_names(lines[number:], path, number), path)
    raise ValueError(f"{path}: no 'names:' class list")


def _uncomment(text: str) -> str:
    return re.sub(r"\s+#.*$", "", text)


def _scalar(text: str, where: str) -> str:
    text = _uncomment(text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].replace("''", "'") if text[0] == "'" else text[1:-1]
    return _name(text, where)


def _flow_items(text: str, where: str) -> list[str]:
    items: list[str] = []
    position = 0
    while position < len(text):
        match = _FLOW_ITEM.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"{where}: cannot read the names list near {text[position:][:30]!r}")
        single, double, plain = match.groups()
        if single is not None:
            value = single.replace("''", "'")
        else:
            value = double if double is not None else plain
        items.append(_name(value, where))
        position = match.end()
    return items


def _block_names(lines: Iterable[str], path: Path, start: int) -> list[str]:
    listed: list[str] = []
    mapped: dict[int, str] = {}
    for number, line in enumerate(lines, start=start + 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("- "):
            break  # the next key (a list may start at the key's own indentation)
        item, where = line.strip(), f"{path}:{number}"
        if item.startswith("- "):
            listed.append(_scalar(item[2:], where))
            continue
        index, colon, name = item.partition(":")
        if not colon or not index.strip().isdigit():
            raise ValueError(f"{where}: expected '- name' or 'index: name'")
        mapped[int(index)] = _scalar(name, where)
        if len(mapped) > MAX_CLASSES:
            break
    if listed and mapped:
        raise ValueError(f"{path}: names mixes a list and a mapping")
    if mapped:
        if sorted(mapped) != list(range(len(mapped))):
            raise ValueError(f"{path}: names' indices must be 0 .. {len(mapped) - 1}")
        return [mapped[i] for i in range(len(mapped))]
    return listed
