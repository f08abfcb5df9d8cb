"""Score maps someone else made, scored without any model: MaxBoxAccV2 against boxes
(`evaluate_scoremaps`), PxAP against masks (`evaluate_mask_scoremaps`), each map as
wsolevaluation's evaluators take it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cam_cli.data.annotations import ImageAnnotation
from cam_cli.data.matching import Missing, check_missing, pair_images
from cam_cli.errors import EvaluationError
from cam_cli.evaluation.metrics import MaxBoxAccV2
from cam_cli.evaluation.scoring import maxboxacc_settings, maxboxacc_setup
from cam_cli.files.checks import printable_path

logger = logging.getLogger(__name__)


def evaluate_scoremaps(
    root: str | Path,
    annotations: Mapping[str, ImageAnnotation],
    *,
    images: str | Path | Mapping[str, str | Path] | None = None,
    allow_missing: bool = False,
    protocol: str = "wsol",
    cam_threshold_from: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
    image_ids: Sequence[str] | None = None,
) -> dict:
    """MaxBoxAccV2 of score maps someone else made (no model), in wsolevaluation's layout
    (`scoremaps`): each map is scored as their ``BoxEvaluator`` scores it, as it is (not
    resized or normalised again). Maps are matched to annotations by the image's file stem;
    with ``image_ids`` (a metadata split's) only ``root/<id>.npy`` of those ids are read, as
    their evaluator reads them, so a folder holding other splits' maps too can be scored.

    The ground truth goes into the 224x224 grid from the annotated image size; annotations
    without sizes (LOC_val_solution.csv) need ``images`` to read the sizes from. A map that
    cannot be used (unreadable, not 2-D 224x224 float in [0, 1], NaN) is a failed image: a
    miss at every threshold, named in the report.
    """
    from cam_cli.evaluation.scoremaps import load_scoremap

    chosen, carried = maxboxacc_setup(True, protocol, cam_threshold_from)
    maps = _scoremap_files(root, image_ids)
    image_of: dict[str, Path] = {}
    if images is not None:
        paired, _ = pair_images(images, annotations)
        image_of = {printable_path(a.image_id): path for path, a in paired}
    by_id = {printable_path(image_id): a for image_id, a in annotations.items()}
    metric = MaxBoxAccV2(protocol=chosen)
    missing = Missing()
    failed: list[dict] = []
    for stem, path in maps.items():
        annotation = by_id.get(stem)
        if annotation is None:
            missing.without_annotation.append(str(path))
            continue
        width, height = _image_size(annotation, image_of.get(stem), path)
        try:
            scoremap = load_scoremap(path)
        except ValueError as error:
            _map_failed(path, error, failed)
            metric.add_best_ious(np.zeros(len(metric.thresholds)))
            continue
        metric.add_best_ious(metric.scoremap_image_ious(scoremap, annotation, width, height))
    missing.without_image.extend(sorted(s for s in by_id if s not in maps))
    check_missing(missing, allow_missing, "score maps")
    if metric.images == 0:
        raise EvaluationError("no score map matches an annotation: nothing to score")
    report = {
        "images": metric.images,
        "failed_images": len(failed),
        "failed": failed,
        "maxboxacc_v2": metric.summary(),
        "missing": missing.as_dict(),
        "settings": {
            "mode": "scoremaps",
            **(settings or {}),
            **maxboxacc_settings(True, chosen.name, None, carried),
        },
    }
    if carried is not None:
        report["maxboxacc_v2_carried"] = metric.summary_at(carried)
    return report


def evaluate_mask_scoremaps(
    root: str | Path,
    masks: Mapping[str, tuple[Sequence[Path], Path | None]],
    *,
    allow_missing: bool = False,
    settings: Mapping[str, Any] | None = None,
    image_ids: Sequence[str] | None = None,
) -> dict:
    """PxAP of score maps someone else made (no model) against mask ground truth
    (``{image stem: (instance mask paths, ignore path or None)}``, from wsolevaluation mask
    metadata), each map taken as it is, as their ``MaskEvaluator`` takes it. A map that cannot
    be used is a failed image, named in the report, and left out of the curve. ``image_ids``:
    read only those ids' maps (`evaluate_scoremaps`)."""
    from cam_cli.evaluation.pxap import PxAP, ground_truth_mask
    from cam_cli.evaluation.scoremaps import load_scoremap

    maps = _scoremap_files(root, image_ids)
    metric = PxAP()
    missing = Missing()
    failed: list[dict] = []
    for stem, path in maps.items():
        if stem not in masks:
            missing.without_annotation.append(str(path))
            continue
        try:
            scoremap = load_scoremap(path)
        except ValueError as error:
            _map_failed(path, error, failed)
            continue
        try:
            foreground, ignored = ground_truth_mask(*masks[stem], scoremap.shape)
        except ValueError as error:  # a damaged mask file (named): the ground truth is wrong
            raise EvaluationError(str(error)) from None
        metric.add(scoremap, foreground, ignored)
    missing.without_image.extend(sorted(s for s in masks if s not in maps))
    check_missing(missing, allow_missing, "score maps")
    if metric.images == 0 and not failed:
        raise EvaluationError("no score map matches a mask: nothing to score")
    return {
        "images": metric.images + len(failed),
        "failed_images": len(failed),
        "failed": failed,
        "pxap": metric.summary(),
        "missing": missing.as_dict(),
        "settings": {"mode": "scoremaps", **(settings or {})},
    }


def _scoremap_files(root: str | Path, image_ids: Sequence[str] | None) -> dict[str, Path]:
    """The score maps to read, by image stem: every ``.npy`` below ``root``, or with a
    metadata split's ``image_ids`` only ``root/<id>.npy`` of those."""
    from cam_cli.evaluation.scoremaps import find_scoremaps, scoremaps_of_ids

    try:
        return find_scoremaps(root) if image_ids is None else scoremaps_of_ids(root, image_ids)
    except ValueError as error:
        raise EvaluationError(str(error)) from None


def _map_failed(path: Path, error: ValueError, failed: list[dict]) -> None:
    """A map that cannot be used: named on stderr and in the report's ``failed`` list."""
    logger.error("%s: %s", printable_path(str(path)), error)
    failed.append({"path": printable_path(str(path)), "error": str(error)})


def _image_size(annotation: ImageAnnotation, image: Path | None, scoremap: Path) -> tuple[int, int]:
    """The annotated image's size, from the annotation or else the image file's header."""
    if annotation.width is not None and annotation.height is not None:
        return annotation.width, annotation.height
    if image is None:
        raise EvaluationError(
            f"{scoremap}: the size of image {annotation.image_id} is unknown (these annotations "
            "state none); give --images to read it from the image files"
        )
    from cam_cli.data.heatmaps import reference_size

    try:  # from the header, upright, over the pixel limit refused (`data.images.open_image`)
        return reference_size(image)
    except ValueError as error:
        raise EvaluationError(str(error)) from None
