"""Any ground truth cam-cli reads -> wsolevaluation's metadata (`wsol_metadata`), so a user's
own data set can be scored by their code, and by every method built on their format.

The image ids are the images' paths under a data root (``val/ILSVRC2012_val_00000001.JPEG``
when the root is the folder above ``val/``), so the ids name real files; image sizes are read
from the files' headers (upright, as cam-cli scores them), since the Kaggle CSV and CUB do not
state them. Labels become the 0-based index of the class list (sorted wnids for ILSVRC),
boxes are written as they are (inclusive, as their IoU reads them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from cam_cli.data.annotations import ImageAnnotation, read_annotations, read_cub
from cam_cli.data.classes import ClassInfo, read_synset_mapping
from cam_cli.data.matching import check_missing, pair_images
from cam_cli.data.wsol_metadata import WsolMetadata, write_wsol_metadata
from cam_cli.errors import EvaluationError
from cam_cli.eval_options import TruthOptions
from cam_cli.files.checks import printable_line, printable_path

logger = logging.getLogger(__name__)


def upright_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the header alone, turned as EXIF says (no pixels decoded), as
    every image is opened (`data.heatmaps.reference_size`: over the pixel limit refused)."""
    from cam_cli.data.heatmaps import reference_size

    return reference_size(path)


def _image_id(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        raise EvaluationError(f"{path} is not under the data root {root}") from None


# What a metadata row cannot carry: its fields are split on commas, its rows on newlines
# (a carriage return before one is dropped), and the files are UTF-8.
_UNCARRIED = {",": "a comma", "\n": "a newline", "\r": "a carriage return"}


def check_carried_names(image_ids: list[str]) -> None:
    """Refuse, naming them, image ids the metadata format cannot carry: a comma, a newline or
    a carriage return (their loaders would split the row), bytes that are not UTF-8 (the
    files are UTF-8). Checked for every id before anything is read or written."""
    bad = []
    for image_id in image_ids:
        reasons = [what for mark, what in _UNCARRIED.items() if mark in image_id]
        try:
            image_id.encode("utf-8")
        except UnicodeEncodeError:
            reasons.append("bytes that are not UTF-8")
        if reasons:
            bad.append(f"{printable_line(printable_path(image_id))} ({', '.join(reasons)})")
    if bad:
        raise EvaluationError(
            f"{len(bad)} image name(s) that wsolevaluation's metadata cannot carry: "
            f"{'; '.join(bad[:3])}{'; ...' if len(bad) > 3 else ''}; rename them"
        )


def _class_index(label: str, wnid_index: Mapping[str, int] | None, image_id: str) -> int:
    if label.isdigit():
        return int(label)
    if wnid_index is None:
        raise EvaluationError(
            f"{image_id}: the label {label} is a wnid; pass the class list "
            "(`classes_file` LOC_synset_mapping.txt) to turn it into the class index"
        )
    if label not in wnid_index:
        raise EvaluationError(f"{image_id}: the label {label} is not in the class list")
    return wnid_index[label]


def _note_unsorted(classes: list[ClassInfo], source: str | Path) -> None:
    """A class list that is not in sorted-wnid order gives labels that are its own line
    numbers, not the indices ILSVRC's models (and wsolevaluation's metadata) use: a note."""
    wnids = [c.wnid for c in classes if c.wnid]
    if wnids != sorted(wnids):
        logger.info(
            "note: %s: its wnids are not in sorted order; the labels written are its own line "
            "numbers (0-based), not the sorted-wnid indices of ILSVRC's models",
            printable_path(source),
        )


def metadata_from_annotations(
    matched: list[tuple[Path, ImageAnnotation]],
    root: str | Path,
    classes: list[ClassInfo] | None = None,
) -> WsolMetadata:
    """The metadata of ``(image path, annotation)`` pairs, ids relative to ``root``.

    An image with boxes of several classes gets its first class as its label (their format
    has one per image) and keeps every box; a note says so."""
    root = Path(root).resolve()
    wnid_index = None if classes is None else {c.wnid: c.index for c in classes if c.wnid}
    ids, labels, sizes, boxes = [], {}, {}, {}
    pairs = sorted(matched, key=lambda pair: str(pair[0]))
    named = [(_image_id(path, root), path, annotation) for path, annotation in pairs]
    check_carried_names([image_id for image_id, _, _ in named])  # before any image is opened
    for image_id, path, annotation in named:
        if not annotation.labels:
            raise EvaluationError(f"{path}: no class label in the ground truth")
        if len(annotation.labels) > 1:
            logger.warning(
                "%s: labels %s; wsolevaluation keeps one, the first",
                image_id,
                ", ".join(annotation.labels),
            )
        ids.append(image_id)
        labels[image_id] = _class_index(annotation.labels[0], wnid_index, image_id)
        size = upright_size(path)
        stated = (annotation.width, annotation.height)
        if None not in stated and stated != size:
            logger.warning(
                "%s: the annotation says %dx%d, the image is %dx%d; writing the image's size",
                image_id,
                *stated,
                *size,
            )
        sizes[image_id] = size
        if annotation.boxes:
            boxes[image_id] = tuple(box for _, box in annotation.boxes)
    return WsolMetadata(tuple(ids), labels, sizes, boxes)


def convert_to_wsol(
    out_dir: str | Path,
    truth: TruthOptions,
    *,
    root: str | Path | None = None,
    classes_file: str | Path | None = None,
    allow_missing: bool = False,
) -> WsolMetadata:
    """What `cam-cli convert` does: read the ground truth (``truth``: ``annotations`` with the
    ``images`` they describe, or a ``cub`` root and its ``split``), write the metadata into
    ``out_dir``, return it.

    ``root``: the data root the ids are relative to (default: the folder above ``images``, so
    ids start with ``val/``; for CUB, ``CUB_200_2011/images`` as wsolevaluation's CUB ids)."""
    annotations, meta, images, cub = truth.annotations, truth.meta, truth.images, truth.cub
    if (annotations is None) == (cub is None):
        raise EvaluationError("give the ground truth: annotations or a CUB root (one of them)")
    try:
        label_classes: list[ClassInfo] | None = None
        image_source: str | Path | Mapping[str, Path]
        if cub is not None:
            annotated, label_classes, image_source = read_cub(cub, truth.split or "test")
            root = Path(cub) / "images" if root is None else root
        else:
            if images is None or annotations is None:
                raise EvaluationError("give the images the annotations describe (`images` DIR)")
            annotated, image_source = read_annotations(annotations, meta), images
            root = Path(images).resolve().parent if root is None else root
        classes = read_synset_mapping(classes_file) if classes_file is not None else label_classes
        if classes_file is not None and classes is not None:
            _note_unsorted(classes, classes_file)
        matched, missing = pair_images(image_source, annotated)
        check_missing(missing, allow_missing)
        if not matched:
            raise EvaluationError("no annotated image to convert")
        metadata = metadata_from_annotations(matched, root, classes)
    except (ValueError, OSError) as error:
        raise EvaluationError(str(error)) from None
    write_wsol_metadata(metadata, out_dir)
    return metadata
