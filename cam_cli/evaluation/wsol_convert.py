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
from cam_cli.data.images import SWAPPING_ORIENTATIONS
from cam_cli.data.matching import check_missing, pair_images
from cam_cli.data.wsol_metadata import WsolMetadata, write_wsol_metadata
from cam_cli.errors import EvaluationError
from cam_cli.eval_options import TruthOptions

logger = logging.getLogger(__name__)


def upright_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the header alone, turned as EXIF says (no pixels decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112) in SWAPPING_ORIENTATIONS:
                width, height = height, width
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"{path}: cannot read the image size ({error})") from None
    return width, height


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
    for path, annotation in sorted(matched, key=lambda pair: str(pair[0])):
        try:
            image_id = Path(path).resolve().relative_to(root).as_posix()
        except ValueError:
            raise EvaluationError(f"{path} is not under the data root {root}") from None
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
        matched, missing = pair_images(image_source, annotated)
        check_missing(missing, allow_missing)
        if not matched:
            raise EvaluationError("no annotated image to convert")
        metadata = metadata_from_annotations(matched, root, classes)
    except (ValueError, OSError) as error:
        raise EvaluationError(str(error)) from None
    write_wsol_metadata(metadata, out_dir)
    return metadata
