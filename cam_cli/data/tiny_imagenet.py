"""Tiny ImageNet (Stanford CS231n) ground truth, in the layout of the download.

``ROOT/wnids.txt`` lists the classes, ``ROOT/words.txt`` names them (``wnid<TAB>names``),
``ROOT/val/val_annotations.txt`` holds one ``file wnid xmin ymin xmax ymax`` line per val image
and ``ROOT/train/<wnid>/<wnid>_boxes.txt`` one ``file xmin ymin xmax ymax`` line per training
image; fields are tab-separated, boxes inclusive 0-based pixels (the ILSVRC convention, so they
are used as they are). Readers return `ImageAnnotation`s keyed by file stem, as every other
ground-truth reader does; lines may end in CRLF. Every table is read by `files.reading`
(UTF-8, bounded lines, a FIFO refused), each problem named with its file and line.
"""

from __future__ import annotations

from pathlib import Path

from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import Box, ImageAnnotation, check_box
from cam_cli.files.reading import excerpt, text_lines

VAL_ANNOTATIONS = "val_annotations.txt"
BOXES_SUFFIX = "_boxes.txt"


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, tab-separated fields)`` of every non-empty line (CRLF or LF)."""
    rows = []
    for number, line in text_lines(path):
        if line.strip():
            rows.append((number, [field.strip() for field in line.split("\t")]))
    return rows


def _box(fields: list[str], where: str) -> Box:
    try:
        box = tuple(int(v) for v in fields)
    except ValueError:
        raise ValueError(f"{where}: non-integer coordinate in {fields}") from None
    return check_box(box, where)


def read_wnids(path: str | Path) -> list[str]:
    """``wnids.txt``: one wnid a line (the download's order; classes are the sorted wnids)."""
    path = Path(path)
    wnids = [fields[0] for _, fields in _lines(path)]
    if not wnids:
        raise ValueError(f"{path}: no wnids")
    if len(set(wnids)) != len(wnids):
        raise ValueError(f"{path}: duplicate wnids")
    return wnids


def read_words(path: str | Path, wnids: list[str]) -> dict[str, str]:
    """``words.txt`` (``wnid<TAB>name, synonyms``, 82,115 synsets) -> first name of each wnid.

    The first comma-separated synonym, as `read_synset_mapping` names ILSVRC classes. Read
    line by line, only the wanted wnids kept.
    """
    wanted = set(wnids)
    names = {}
    for _, line in text_lines(Path(path)):
        fields = [field.strip() for field in line.split("\t")]
        if fields[0] in wanted and len(fields) > 1:
            names[fields[0]] = fields[1].split(",")[0].strip() or fields[0]
    return names


def tiny_root_of(path: Path) -> Path | None:
    """The Tiny ImageNet root above a val_annotations.txt or a train/ folder, if it is one."""
    for candidate in (path.parent, path.parent.parent):
        if (candidate / "wnids.txt").is_file():
            return candidate
    return None


def _check_wnids(annotations: dict[str, ImageAnnotation], where: dict[str, str],
                 root: Path | None) -> None:  # fmt: skip
    """Every label must be a class of ``ROOT/wnids.txt`` (when the root has one)."""
    if root is None:
        return
    known = set(read_wnids(root / "wnids.txt"))
    for image_id, annotation in annotations.items():
        for label in annotation.labels:
            if label not in known:
                raise ValueError(f"{where[image_id]}: wnid {label} is not in {root / 'wnids.txt'}")


def read_val_annotations(path: str | Path) -> dict[str, ImageAnnotation]:
    """``val/val_annotations.txt``: ``file wnid xmin ymin xmax ymax`` (one box per image)."""
    path = Path(path)
    annotations: dict[str, ImageAnnotation] = {}
    where: dict[str, str] = {}
    for number, fields in _lines(path):
        here = f"{path}:{number}"
        if len(fields) != 6:
            raise ValueError(f"{here}: expected 6 tab-separated fields "
                             f"(file wnid xmin ymin xmax ymax), got {len(fields)}")  # fmt: skip
        name, wnid = fields[0], fields[1]
        image_id = Path(name).stem
        if image_id in annotations:
            raise ValueError(f"{here}: duplicate image {name}")
        box = _box(fields[2:], here)
        annotations[image_id] = ImageAnnotation(image_id, (wnid,), ((wnid, box),))
        where[image_id] = here
    if not annotations:
        raise ValueError(f"{path}: no rows")
    _check_wnids(annotations, where, tiny_root_of(path))
    return annotations


def read_train_boxes(train_dir: str | Path) -> dict[str, ImageAnnotation]:
    """Every ``train/<wnid>/<wnid>_boxes.txt``: ``file xmin ymin xmax ymax``, labelled <wnid>."""
    train_dir = Path(train_dir)
    files = sorted(train_dir.glob(f"*/*{BOXES_SUFFIX}"))
    if not files:
        raise ValueError(f"{train_dir}: no <wnid>/<wnid>{BOXES_SUFFIX} files")
    annotations: dict[str, ImageAnnotation] = {}
    where: dict[str, str] = {}
    classes = {f.parent.name for f in files}
    for boxes_file in files:
        wnid = boxes_file.parent.name
        if boxes_file.name != f"{wnid}{BOXES_SUFFIX}":
            raise ValueError(f"{boxes_file}: expected {wnid}{BOXES_SUFFIX} in folder {wnid}")
        for number, fields in _lines(boxes_file):
            here = f"{boxes_file}:{number}"
            if len(fields) != 5:
                raise ValueError(f"{here}: expected 5 tab-separated fields "
                                 f"(file xmin ymin xmax ymax), got {len(fields)}")  # fmt: skip
            image_id = Path(fields[0]).stem
            owner = image_id.split("_", 1)[0]
            if owner != wnid and owner in classes:  # would relabel the image as this class
                raise ValueError(
                    f"{here}: {excerpt(fields[0])} is an image of class {owner}, not {wnid}; "
                    f"a row belongs in its own class's {BOXES_SUFFIX}"
                )
            if image_id in annotations:
                raise ValueError(f"{here}: duplicate image {fields[0]} (also {where[image_id]})")
            box = _box(fields[1:], here)
            annotations[image_id] = ImageAnnotation(image_id, (wnid,), ((wnid, box),))
            where[image_id] = here
    _check_wnids(annotations, where, tiny_root_of(train_dir))
    return annotations


def is_val_annotations(path: Path) -> bool:
    """``val_annotations.txt`` by its name, or a .txt whose first line has tab-separated
    fields (the devkit's has one number a line): read as Tiny ImageNet's, so a malformed first
    row is named as such, not taken for the devkit's file."""
    if path.name == VAL_ANNOTATIONS:
        return True
    try:
        first = next((line for _, line in text_lines(path) if line.strip()), "")
    except (OSError, ValueError):
        return False
    return "\t" in first


def is_train_dir(path: Path) -> bool:
    return path.is_dir() and next(path.glob(f"*/*{BOXES_SUFFIX}"), None) is not None


def tiny_classes(root: str | Path, wnids: list[str]) -> list[ClassInfo]:
    """Classes in sorted-wnid order (ILSVRC's rule), named from ``ROOT/words.txt`` if there."""
    words = Path(root) / "words.txt"
    names = read_words(words, wnids) if words.is_file() else {}
    return [ClassInfo(i, w, names.get(w, w)) for i, w in enumerate(sorted(wnids))]
