"""The ground truth of an evaluation, whatever its format, loaded in one place (`load_truth`):
ILSVRC XML, the Kaggle CSV, the devkit's labels, CUB, wsolevaluation's metadata with boxes or
masks. Each gives one `GroundTruth`: annotations by image id (file stem), where the images
are, and every file it read.

A new format is one reader (in `data`, returning ``{image id: ImageAnnotation}``) and one
branch of `load_truth`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cam_cli.data.annotations import CUB_FILES, annotation_files, read_annotations, read_cub
from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import ImageAnnotation
from cam_cli.errors import EvaluationError
from cam_cli.eval_options import TruthOptions

# {image id: (instance mask paths, ignore mask path or None)}: PxAP's ground truth
MaskPaths = tuple[Sequence[Path], Path | None]


@dataclass(frozen=True)
class GroundTruth:
    """What the evaluators score against. ``annotations``: by image id (the file stem, as
    every reader keys them). ``images``: a folder matched to them by file stem, or
    ``{image id: path}`` (CUB, wsolevaluation ids under a root); None where no image is read.
    ``classes``: the class list the labels index (CUB's), checked against the model's.
    ``masks``: PxAP's masks by image id (wsolevaluation mask metadata). ``image_ids``: a
    metadata split's ids, so score maps are read as ``<id>.npy``. ``scoremap_base``: the folder
    wsolevaluation's ids start from (None: the folder above ``images``). ``files``: every file
    read for it, by the option that named it (outputs are checked against them)."""

    annotations: Mapping[str, ImageAnnotation]
    images: str | Path | Mapping[str, str | Path] | None = None
    classes: Sequence[ClassInfo] | None = None
    masks: Mapping[str, MaskPaths] | None = None
    image_ids: Sequence[str] | None = None
    scoremap_base: Path | None = None
    files: Mapping[str, Sequence[Path]] = field(default_factory=dict)

    @property
    def has_boxes(self) -> bool:
        return any(annotation.boxes for annotation in self.annotations.values())

    def base(self) -> Path | None:
        """The folder wsolevaluation's image ids start from: given, or the folder above an
        ``images`` folder (``val/ILSVRC2012_val_...JPEG``); None for images given by id."""
        if self.scoremap_base is not None:
            return self.scoremap_base
        if self.images is None or isinstance(self.images, Mapping):
            return None
        return Path(os.path.abspath(self.images)).parent


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
        annotations = read_annotations(options.annotations, options.meta)
        read = {"annotations": annotation_files(options.annotations)}
        if options.meta is not None:
            read["meta"] = [Path(options.meta)]
        return GroundTruth(annotations, options.images, files=read)
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
