"""The ground truth of an evaluation, whatever its format, loaded in one place (`load_truth`):
ILSVRC XML, the Kaggle CSV, the devkit's labels, Pascal VOC, YOLO, COCO and the plain CSV
(`data.interchange`), CUB, wsolevaluation's metadata with boxes or masks. Each gives one
`data.ground_truth.GroundTruth`: annotations by image id (file stem), where the images are,
and every file it read.

A new format is one reader (in `data`, returning ``{image id: ImageAnnotation}``) and one
branch of `load_truth`.
"""

from __future__ import annotations

from pathlib import Path

from cam_cli.data.annotations import CUB_FILES, read_cub
from cam_cli.data.ground_truth import GroundTruth, MaskPaths
from cam_cli.data.interchange import read_ground_truth
from cam_cli.errors import EvaluationError
from cam_cli.eval_options import TruthOptions


def load_truth(options: TruthOptions | GroundTruth) -> GroundTruth:
    """The ground truth the options name (a `GroundTruth` given as it is); an unreadable or
    malformed file is an `EvaluationError` naming it."""
    if isinstance(options, GroundTruth):
        return options
    try:
        if options.wsol_metadata is not None:
            return _wsol_truth(options.wsol_metadata, options.images, options.mask_root)
        if options.cub is not None:
            annotations, classes, images = read_cub(options.cub, options.split or "test")
            root = Path(options.cub)
            files = {"cub": [root / name for name in CUB_FILES]}
            return GroundTruth(annotations, images, classes, None, None, root / "images", files)
        if options.annotations is None:
            raise EvaluationError("give the ground truth: `annotations`, `cub` or `wsol_metadata`")
        return read_ground_truth(
            options.annotations,
            fmt=options.annotations_format,
            images=options.images,
            meta=options.meta,
        )
    except (ValueError, OSError) as error:  # unreadable or malformed ground truth
        raise EvaluationError(str(error)) from None


def _wsol_truth(
    metadata_dir: str | Path, images: str | Path | None, mask_root: str | Path | None
) -> GroundTruth:
    """wsolevaluation metadata: annotations, ``{stem: images/<id>}`` when ``images`` is given,
    and with mask metadata the PxAP masks, each checked to exist before the first image."""
    from cam_cli.data.wsol_metadata import (
        FILES,
        annotations_from_metadata,
        image_paths,
        read_wsol_metadata,
    )

    metadata = read_wsol_metadata(metadata_dir)
    annotations = annotations_from_metadata(metadata)
    source = image_paths(metadata, images) if images is not None else None
    files: dict[str, list[Path]] = {"wsol_metadata": [Path(metadata_dir, name) for name in FILES]}
    base = Path(images) if images is not None else None
    if metadata.kind != "masks":
        return GroundTruth(annotations, source, None, None, metadata.image_ids, base, files)
    unmasked = [image_id for image_id in metadata.image_ids if image_id not in metadata.masks]
    if unmasked:
        raise EvaluationError(
            f"{metadata_dir}: localization.txt has no mask for {len(unmasked)} image(s), "
            f"e.g. {unmasked[0]}"
        )
    root = Path(mask_root if mask_root is not None else images if images is not None else ".")
    masks: dict[str, MaskPaths] = {}
    for image_id, paths in metadata.masks.items():
        ignore = metadata.ignore.get(image_id)
        masks[Path(image_id).stem] = ([root / p for p in paths], root / ignore if ignore else None)
    read = [path for paths, ignore in masks.values() for path in [*paths, ignore] if path]
    for path in read:  # before the first image, not in the middle of a run
        if not path.is_file():
            raise EvaluationError(f"{path}: no such mask file (`mask_root` {root})")
    files.setdefault("mask_root" if mask_root is not None else "wsol_metadata", []).extend(read)
    return GroundTruth(annotations, source, None, masks, metadata.image_ids, base, files)
