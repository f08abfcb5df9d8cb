"""Localization evaluation, what `cam-cli eval` runs: `evaluate` reads the ground truth from
files, loads the model if one is asked for, and takes one of the doors, each in its module:

- a model over annotated images (`model_run.evaluate_model`): classification, localization
  and GT-known error, MaxBoxAccV2 and PxAP on request;
- the records of a `cam-cli bbox` run (`predictions.evaluate_predictions`), no model needed;
- score maps someone else made (`given_maps.evaluate_scoremaps`, `evaluate_mask_scoremaps`).

Every door gives one report (a JSON-serialisable dict; `report.format_report` makes the table);
the scoring they share is `scoring`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cam_cli.data.annotations import CUB_FILES, annotation_files, read_annotations, read_cub
from cam_cli.data.classes import read_synset_mapping
from cam_cli.data.images import list_images
from cam_cli.errors import EvaluationError
from cam_cli.evaluation.given_maps import evaluate_mask_scoremaps, evaluate_scoremaps
from cam_cli.evaluation.predictions import evaluate_predictions, read_prediction_records
from cam_cli.evaluation.resume import check_per_image_file
from cam_cli.evaluation.scoring import absolute
from cam_cli.files.checks import check_output_file, check_outputs_spare_inputs
from cam_cli.settings import ModelOptions, RunOptions

if TYPE_CHECKING:  # torch is imported only when a model runs: scoring records needs none
    from cam_cli.models.loading import LoadedModel

__all__ = [
    "evaluate",
    "evaluate_mask_scoremaps",
    "evaluate_predictions",
    "evaluate_scoremaps",
    "read_prediction_records",
]

logger = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    """`model_run.evaluate_model` as ``evaluate.evaluate_model``, imported at first use: it
    needs torch, which scoring records or score maps does not."""
    if name == "evaluate_model":
        from cam_cli.evaluation.model_run import evaluate_model

        return evaluate_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _input_files(paths: Mapping[str, Any], image_source: Any, model_run: bool) -> dict[str, Any]:
    """Every file `evaluate` reads, by option (`check_outputs_spare_inputs`'s inputs)."""
    files: dict[str, Any] = {
        f"--{key}": value for key, value in paths.items() if key not in ("annotations", "cub")
    }
    files["--weights"] = None if paths["weights"] == "imagenet" else paths["weights"]
    if paths["annotations"] is not None:
        files["--annotations"] = annotation_files(paths["annotations"])
    if paths["cub"] is not None:
        files["--cub"] = [Path(paths["cub"], name) for name in CUB_FILES]
    if isinstance(image_source, Mapping):  # CUB's images
        files["--images"] = list(image_source.values())
    elif model_run and image_source is not None and Path(image_source).is_dir():
        files["--images"] = list_images(image_source)
    return files


def evaluate(
    *,
    annotations: str | Path | None = None,
    cub: str | Path | None = None,
    split: str = "test",
    meta: str | Path | None = None,
    images: str | Path | None = None,
    predictions: str | Path | IO[str] | None = None,
    model: LoadedModel | ModelOptions | None = None,
    classes_file: str | Path | None = None,
    allow_missing: bool = False,
    threshold: float | None = None,
    maxboxacc: bool = False,
    per_image: str | Path | None = None,
    run: RunOptions | None = None,
    box_rule: str = "paper",
    ten_crop: bool = False,
    boxes: int = 1,
    outputs: Mapping[str, str | Path | None] | None = None,
    maxboxacc_protocol: str = "wsol",
    save_scoremaps: str | Path | None = None,
    scoremaps: str | Path | None = None,
    cam_threshold_from: str | Path | None = None,
    class_predictions: str | Path | None = None,
    wsol_metadata: str | Path | None = None,
    mask_root: str | Path | None = None,
) -> dict:
    """What `cam-cli eval` does: ground truth from files (``annotations``, or a CUB root,
    or a split of wsolevaluation metadata: ``wsol_metadata``, images at ``images``/<id>, mask
    paths under ``mask_root``, default ``images``; masks add PxAP to a model run), then
    either the ``predictions`` of a `cam-cli bbox` run (FILE, ``-`` or a stream), the
    ``scoremaps`` folder of anyone's score maps (`evaluate_scoremaps`), or a ``model`` over
    ``images`` (CUB brings its own images and classes). ``classes_file`` checks the
    predictions' classes; for a model it belongs in its `ModelOptions`. ``outputs``:
    ``{option: FILE}`` the caller will write from the report (the CLI's --json); like
    ``per_image`` they are refused, before any image is scored, when they are one of the files
    read (an XML of the folder, the CSV, CUB's files or images, the model's files...)."""
    from cam_cli.evaluation.model_run import evaluate_model
    from cam_cli.inference.shards import processes
    from cam_cli.models.loading import LoadedModel, load_model
    from cam_cli.runtime.distributed import process_device

    if sum(source is not None for source in (annotations, cub, wsol_metadata)) != 1:
        raise EvaluationError(
            "give the ground truth: annotations, a CUB root or wsolevaluation metadata (one)"
        )
    options = model if isinstance(model, ModelOptions) else None
    paths = {
        "predictions": predictions if isinstance(predictions, str | Path) else None,
        "images": images,
        "annotations": annotations,
        "meta": meta,
        "cub": cub,
        "wsol_metadata": wsol_metadata,
        "mask_root": mask_root,
        "classes": classes_file or (options.classes_file if options else None),
        "weights": options.weights if options else None,
        "checkpoint": options.checkpoint if options else None,
        "scoremaps": scoremaps,
    }
    settings: dict[str, Any] = {k: absolute(v) for k, v in paths.items() if v is not None}
    pxap_masks = wsol_ids = None
    try:
        if wsol_metadata is not None:
            truth, image_source, pxap_masks, wsol_ids = _wsol_ground_truth(
                wsol_metadata, images, mask_root
            )
            label_classes = None
        elif cub is not None:
            settings["split"] = split
            truth, label_classes, image_source = read_cub(cub, split)
        else:
            truth, label_classes, image_source = read_annotations(annotations, meta), None, images
        if predictions is not None and label_classes is None and classes_file is not None:
            label_classes = read_synset_mapping(classes_file)
    except (ValueError, OSError) as error:  # unreadable or malformed ground truth
        raise EvaluationError(str(error)) from None
    written = {k: v for k, v in {"--per-image": per_image, **(outputs or {})}.items() if v}
    for option, path in written.items():
        check_output_file(path, option)
    if any(str(path) != "-" for path in written.values()):  # else no need to list the inputs
        check_outputs_spare_inputs(written, _input_files(paths, image_source, predictions is None))
    if per_image is not None:
        check_per_image_file(per_image)  # never cut, append to or replace a file not ours

    if scoremaps is not None and pxap_masks is not None:
        return evaluate_mask_scoremaps(
            scoremaps,
            pxap_masks,
            allow_missing=allow_missing,
            settings=settings,
            image_ids=wsol_ids,
        )
    if scoremaps is not None:
        return evaluate_scoremaps(
            scoremaps,
            truth,
            images=image_source,
            allow_missing=allow_missing,
            protocol=maxboxacc_protocol,
            cam_threshold_from=cam_threshold_from,
            settings=settings,
            image_ids=wsol_ids,
        )
    if predictions is not None:
        if pxap_masks is not None:
            logger.info("PxAP needs the maps: a model run, or pxap.pxap_from_scoremap_dir")
        return evaluate_predictions(
            read_prediction_records(predictions),
            truth,
            allow_missing=allow_missing,
            classes=label_classes,
            per_image=per_image,
            settings=settings,
            boxes=boxes,
        )
    if model is None:
        raise EvaluationError("give a model, or the predictions of `cam-cli bbox`")
    if image_source is None:
        raise EvaluationError("give the images to run the model over")
    run = run or RunOptions()
    with processes(run.device) as job:  # under torchrun: the group
        if isinstance(model, ModelOptions):
            loaded = load_model(model, device=str(process_device(run.device)))
        else:
            loaded = model
        return evaluate_model(
            loaded,
            image_source,
            truth,
            classes=label_classes,
            allow_missing=allow_missing,
            threshold=threshold,
            maxboxacc=maxboxacc,
            per_image=per_image,
            run=run,
            settings=settings,
            copy_model=not isinstance(model, LoadedModel),  # made here, for this run alone
            box_rule=box_rule,
            ten_crop=ten_crop,
            boxes=boxes,
            maxboxacc_protocol=maxboxacc_protocol,
            save_scoremaps=save_scoremaps,
            scoremap_base=Path(cub) / "images"
            if cub is not None
            else Path(images)
            if wsol_metadata is not None and images is not None
            else None,
            cam_threshold_from=cam_threshold_from,
            class_predictions=class_predictions,
            pxap_masks=pxap_masks,
            processes=job,
        )


def _wsol_ground_truth(metadata_dir, images, mask_root):
    """wsolevaluation metadata -> (annotations, ``{stem: images/<id>}`` or None, the PxAP masks
    ``{stem: (paths, ignore)}`` or None, the image ids)."""
    from cam_cli.data.wsol_metadata import (
        annotations_from_metadata,
        image_paths,
        read_wsol_metadata,
    )

    metadata = read_wsol_metadata(metadata_dir)
    truth = annotations_from_metadata(metadata)
    source = image_paths(metadata, images) if images is not None else None
    if metadata.kind != "masks":
        return truth, source, None, metadata.image_ids
    unmasked = [image_id for image_id in metadata.image_ids if image_id not in metadata.masks]
    if unmasked:
        raise EvaluationError(
            f"{metadata_dir}: localization.txt has no mask for {len(unmasked)} image(s), "
            f"e.g. {unmasked[0]}"
        )
    root = Path(mask_root if mask_root is not None else images if images is not None else ".")
    masks = {
        Path(image_id).stem: (
            [root / p for p in paths],
            root / metadata.ignore[image_id] if metadata.ignore.get(image_id) else None,
        )
        for image_id, paths in metadata.masks.items()
    }
    for paths, ignore in masks.values():  # before the first image, not in the middle of a run
        for path in [*paths, *([ignore] if ignore is not None else [])]:
            if not path.is_file():
                raise EvaluationError(f"{path}: no such mask file (--mask-root {root})")
    return truth, source, masks, metadata.image_ids
