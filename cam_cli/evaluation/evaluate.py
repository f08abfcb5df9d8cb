"""Localization evaluation: a model over annotated images, or the records of a `cam-cli bbox` run.

Two doors, one report (a JSON-serialisable dict; `report.format_report` makes the table):

- `evaluate_model(loaded, images, annotations, ...)` runs the model and scores every image:
  top-1/top-5 classification and localization error (ILSVRC rule), GT-known localization error
  (the box from the true class's CAM, asked of the pipeline as an extra class) and, on request,
  MaxBoxAccV2 from the true class's CAM at network input resolution.
- `evaluate_predictions(records, annotations, ...)` scores the JSON Lines of
  ``cam-cli bbox --topk 5`` without any model; GT-known and MaxBoxAccV2 need a model's CAM of the
  true class, so they are not available there.

`evaluate(...)` is what `cam-cli eval` runs: it reads the ground truth from files, loads the
model if one is asked for, and takes one of the two doors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from cam_cli.boxes.second_box import SecondBoxScorer
from cam_cli.data.annotations import (
    CUB_FILES,
    ImageAnnotation,
    annotation_files,
    read_annotations,
    read_cub,
)
from cam_cli.data.classes import ClassInfo, read_synset_mapping
from cam_cli.data.images import list_images
from cam_cli.data.matching import (
    Missing,
    _check_record_classes,
    _label_indices,
    check_class_order,
    check_known_labels,
    check_missing,
    check_prediction_record,
    pair_images,
)
from cam_cli.errors import EvaluationError
from cam_cli.evaluation.metrics import (
    LocalizationEvaluator,
    MaxBoxAccV2,
    gt_boxes_in_grid,
    maxboxacc_protocol,
)
from cam_cli.evaluation.resume import (
    PerImageLog,
    check_per_image_file,
    cut_to,
    per_image_lines,
    record_from_line,
    rewrite_per_image,
    settings_fingerprint,
)
from cam_cli.files.atomic import atomic_file
from cam_cli.files.checks import (
    check_output_file,
    check_outputs_spare_inputs,
    printable_path,
    record_name,
)
from cam_cli.files.lock import FileLock
from cam_cli.outputs.writers import json_line

if TYPE_CHECKING:  # torch is imported only when a model runs: scoring records needs none
    from cam_cli.inference.localizer import RunOptions
    from cam_cli.models.loading import LoadedModel, ModelOptions

logger = logging.getLogger(__name__)


# --- scoring ----------------------------------------------------------------------------------


def _without_guessed_size(record: Mapping) -> Mapping:
    """A failed image's record, with its size marked unknown.

    The evaluator falls back on the annotation's image size when a record has none, and the
    median-box baseline then counts the failed image's boxes. Only XML annotations state sizes,
    so XML and CSV ground truth would give different figures whenever an image fails; with the
    size unknown, a failed image never enters the median, whatever the annotation format.
    """
    if record.get("error") is None:
        return record
    return {**record, "width": None, "height": None}


class _Scorer:
    """The evaluator, MaxBoxAccV2 (optional) and the per-image line of every scored image."""

    def __init__(
        self,
        maxboxacc: bool,
        fingerprint: str | None,
        boxes: int = 1,
        protocol: str = "wsol",
        save_scoremaps: Callable[[str, np.ndarray], object] | None = None,
        carried: Mapping | None = None,
    ) -> None:
        self.evaluator = LocalizationEvaluator()
        self.second = SecondBoxScorer() if boxes == 2 else None
        self.maxbox = MaxBoxAccV2(protocol=protocol) if maxboxacc else None
        self.protocol = maxboxacc_protocol(protocol)
        self.save_scoremaps = save_scoremaps  # (image path, map): `--save-scoremaps`
        self.carried = carried  # `carried_thresholds`: thresholds chosen on another split
        self.fingerprint = fingerprint
        self.resumed = 0

    def add(
        self,
        record: Mapping,
        annotation: ImageAnnotation,
        gt_known_box: Sequence[int] | None = None,
        maxbox_ious: np.ndarray | None = None,
    ) -> dict:
        """Score one image; ``maxbox_ious`` come from `maxbox_finisher` (MaxBoxAcc)."""
        result = self.evaluator.add(_without_guessed_size(record), annotation, gt_known_box)
        if self.second is not None:
            self.second.add(_without_guessed_size(record), annotation, result)
        line = {**result, "width": record.get("width"), "height": record.get("height")}
        if self.maxbox is not None:
            ious = np.zeros(len(self.maxbox.thresholds))
            if maxbox_ious is not None and result["gt_boxes"] and result["error"] is None:
                ious = maxbox_ious
            # else: failed image or no box, a miss at every threshold
            self._add_maxbox_ious(ious)
            line["maxboxacc_ious"] = [float(v) for v in ious]
        if self.fingerprint is not None:
            line["run"] = self.fingerprint
        return line

    def maxbox_finisher(self, annotation_of: Mapping[str, ImageAnnotation]):
        """The per-image MaxBoxAcc work (100 thresholds, every box) and the score map to save,
        on the host, as a `localize` ``finish``: it runs beside the network, and the CAM is
        dropped once done."""
        maxbox, save = self.maxbox, self.save_scoremaps
        if maxbox is None and save is None:
            return None
        maker = maxbox or MaxBoxAccV2(protocol=self.protocol)

        def finish(result) -> None:
            if result.extra_cams is None:
                return
            annotation = annotation_of[result.path]
            cam = result.extra_cams[0]
            if maker.protocol.input_size_cam:
                result.analysis = maker.image_ious(cam, annotation, result.width, result.height)
            else:
                scoremap = maker.scoremap(cam)
                if save is not None:
                    save(result.path, scoremap)
                if maxbox is not None:
                    result.analysis = maxbox.scoremap_image_ious(
                        scoremap, annotation, result.width, result.height
                    )
            result.extra_cams = None

        return finish

    def maxbox_on_device(self, annotation_of: Mapping[str, ImageAnnotation]):
        """The same work where the CAMs are, a batch at a time, as a `localize` ``extra_maps``:
        only the best IoUs per threshold leave the device."""
        from cam_cli.evaluation.maxboxacc_torch import best_ious_torch, pad_gt_boxes

        maxbox = self.maxbox
        if maxbox is None:
            return None

        def extra_maps(items, cams) -> list[np.ndarray]:
            grid = tuple(cams.shape[-2:])
            gt = [
                gt_boxes_in_grid(annotation_of[item.path], item.width, item.height, grid)
                for item in items
            ]
            boxes, valid = pad_gt_boxes(gt, cams.device)
            best = best_ious_torch(cams[:, 0], boxes, valid, maxbox.thresholds)
            return list(best.cpu().numpy())

        return extra_maps

    def _add_maxbox_ious(self, ious: Sequence[float]) -> None:
        self.maxbox.add_best_ious(np.asarray(ious, dtype=np.float64))

    def readd(self, line: Mapping, annotation: ImageAnnotation) -> None:
        """Feed back a per-image line of an earlier (interrupted) run, exactly as first scored."""
        record = _without_guessed_size(record_from_line(line))
        self.evaluator.add(record, annotation, line.get("gt_known_box"))
        if self.maxbox is not None:
            ious = line.get("maxboxacc_ious")
            if ious is None or len(ious) != len(self.maxbox.thresholds):
                raise EvaluationError(f"per-image line of {line.get('path')} has no MaxBoxAcc IoUs")
            self._add_maxbox_ious(ious)
        self.resumed += 1

    def report(self, missing: Missing, settings: Mapping, gt_known_available: bool) -> dict:
        extra = {} if self.second is None else {"second_box": self.second.summary()}
        if self.carried is not None and self.maxbox is not None:
            extra["maxboxacc_v2_carried"] = self.maxbox.summary_at(self.carried)
        return {
            **self.evaluator.summary(),
            **extra,
            "maxboxacc_v2": None if self.maxbox is None else self.maxbox.summary(),
            "gt_known_available": gt_known_available,
            "missing": missing.as_dict(),
            "resumed_images": self.resumed,
            "settings": dict(settings),
        }


# --- predictions mode -------------------------------------------------------------------------


def read_prediction_records(source: str | Path | IO[str]) -> Iterator[dict]:
    """JSON Lines records of `cam-cli bbox` from a file, ``-`` (stdin) or an open stream."""
    if isinstance(source, (str, Path)) and str(source) != "-":
        path = Path(source)
        if not path.is_file():
            raise EvaluationError(f"{path}: no such predictions file")
        with path.open(encoding="utf-8") as handle:
            yield from _parse_records(handle, str(path))
    else:
        stream = sys.stdin if not hasattr(source, "read") else source
        yield from _parse_records(stream, "<stdin>" if stream is sys.stdin else "<stream>")


def _parse_records(lines: Iterable[str], name: str) -> Iterator[dict]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError as error:
            raise EvaluationError(
                f"{name}:{number}: not JSON ({error.args[0][:60]}); expected the JSON Lines "
                "output of `cam-cli bbox` (not --format csv)"
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise EvaluationError(f"{name}:{number}: not a `cam-cli bbox` record (no 'path')")
        check_prediction_record(record, f"{name}:{number}")
        yield record


def evaluate_predictions(
    records: Iterable[Mapping],
    annotations: Mapping[str, ImageAnnotation],
    *,
    allow_missing: bool = False,
    classes: list[ClassInfo] | None = None,
    per_image: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
    boxes: int = 1,
) -> dict:
    """Score `cam-cli bbox` records (ideally ``--topk 5``) against ground truth; no model needed.
    ``boxes=2`` also scores each prediction's second box (`second_box`), from records made with
    a ranked ``--box-rule``.

    Records are matched to annotations by the file stem of their ``path``. A record with
    ``error`` counts as wrong for every figure. ``classes`` (a ``--classes`` file, or CUB's
    classes.txt) lets the records' class indices and wnids be checked against a class list.
    ``per_image``: a JSON Lines file of per-image results, written atomically (fresh).
    Raises `EvaluationError` on mismatches (see `check_missing`).
    """
    _check_boxes(boxes, per_image=None)
    settings = {"mode": "predictions", **(settings or {}), **_box_settings(boxes=boxes)}
    scorer = _Scorer(maxboxacc=False, fingerprint=None, boxes=boxes)
    missing = Missing()
    seen: dict[str, str] = {}
    matched: list[ImageAnnotation] = []

    # Records name an image that is not valid UTF-8 escaped (`printable_path`): so are the ids.
    by_id = {printable_path(image_id): a for image_id, a in annotations.items()}

    def score_all(write: Callable[[dict], None] | None) -> None:
        for number, record in enumerate(records, start=1):
            path = str(record.get("path"))
            stem = record_name(Path(path).stem)  # printed already, unless made in Python
            if stem in seen:
                raise EvaluationError(
                    f"two prediction records for image {stem}: {seen[stem]} and {path}"
                )
            seen[stem] = path
            annotation = by_id.get(stem)
            if annotation is None:
                missing.without_annotation.append(path)
                continue
            _check_record_labels(record, annotation, number)
            if classes is not None:
                check_known_labels([annotation], classes)
                _check_record_classes(record, classes, f"record {number} ({path})")
            matched.append(annotation)
            try:
                line = scorer.add(record, annotation)
            except ValueError as error:  # e.g. a record without image size and no XML size
                raise EvaluationError(f"record {number}: {error}") from None
            if write is not None:
                write(line)
        missing.without_image.extend(sorted(s for s in by_id if s not in seen))
        check_missing(missing, allow_missing, "prediction records")
        if not matched:
            raise EvaluationError("no prediction record matches an annotation: nothing to score")

    if per_image is None:
        score_all(None)
    else:
        check_per_image_file(per_image)
        with FileLock(per_image), atomic_file(per_image) as handle:
            score_all(lambda line: handle.write(json_line(line)))
    return scorer.report(missing, settings, gt_known_available=False)


# --- score maps mode ----------------------------------------------------------------------------


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

    chosen, carried = _maxboxacc_setup(True, protocol, cam_threshold_from)
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
            **_maxboxacc_settings(True, chosen.name, None, carried),
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
        except (OSError, ValueError) as error:  # a damaged mask file: the ground truth is wrong
            raise EvaluationError(f"{masks[stem][0][0]}: cannot read the mask ({error})") from None
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
    from PIL import Image

    try:
        with Image.open(image) as opened:
            width, height = opened.size
            if opened.getexif().get(0x0112) in (5, 6, 7, 8):  # turned by 90 degrees
                width, height = height, width
    except OSError as error:
        raise EvaluationError(f"{image}: cannot read its size ({error})") from None
    return width, height


def _check_record_labels(record: Mapping, annotation: ImageAnnotation, number: int) -> None:
    """Wnid labels need wnids in the predictions (a `bbox` run without --classes has none)."""
    wnid_labels = any(not label.isdigit() for label in annotation.labels)
    predictions = record.get("predictions") or []
    if wnid_labels and predictions and all(p.get("wnid") is None for p in predictions):
        raise EvaluationError(
            f"record {number} ({record.get('path')}): the predictions carry no wnids but the "
            "ground truth is labelled by wnid; run `cam-cli bbox` with "
            "--classes LOC_synset_mapping.txt"
        )


# --- model mode -------------------------------------------------------------------------------


def _annotations_digest(annotations: Mapping[str, ImageAnnotation]) -> str:
    """A hash of the ground truth itself: a resumed run must score against the same boxes."""
    digest = hashlib.sha256()
    for image_id in sorted(annotations):
        a = annotations[image_id]
        digest.update(json.dumps([image_id, a.labels, a.boxes, a.width, a.height]).encode())
    return digest.hexdigest()[:16]


def evaluate_model(
    loaded: LoadedModel,
    images: str | Path | Mapping[str, str | Path],
    annotations: Mapping[str, ImageAnnotation],
    *,
    classes: list[ClassInfo] | None = None,
    allow_missing: bool = False,
    threshold: float | None = None,
    topk: int = 5,
    maxboxacc: bool = False,
    per_image: str | Path | None = None,
    run: RunOptions | None = None,
    settings: Mapping[str, Any] | None = None,
    copy_model: bool = True,
    box_rule: str = "paper",
    ten_crop: bool = False,
    boxes: int = 1,
    maxboxacc_protocol: str = "wsol",
    save_scoremaps: str | Path | None = None,
    scoremap_base: str | Path | None = None,
    cam_threshold_from: str | Path | None = None,
    class_predictions: str | Path | None = None,
    pxap_masks: Mapping[str, tuple[Sequence[Path], Path | None]] | None = None,
) -> dict:
    """Run ``loaded`` (from `models.loading.load_model`) over annotated images and score them.

    ``box_rule`` and ``ten_crop``: how CAMs become boxes (`pipeline.Localizer`); box 1 is the
    box every figure uses, and ``boxes=2`` also scores box 2 as the released evaluation did
    (`second_box`).

    ``images``: a folder (matched to ``annotations`` by file stem) or ``{stem: path}`` (CUB).
    ``classes``: the class list the annotation labels index (CUB's classes.txt); checked
    against the model's (a model without class names takes it). GT-known error uses the box of
    the CAM of the image's first ground-truth class; ``maxboxacc`` adds MaxBoxAccV2 from that
    CAM at network input size; ``run`` says how it runs (batch, device, precision...).
    ``threshold=None``: the CAM threshold the checkpoint carries, else the paper's 0.2.
    ``maxboxacc_protocol``: ``wsol`` (wsolevaluation's figure, the default) or ``cam-cli``
    (the figure before, `metrics.MAXBOXACC_PROTOCOLS`). ``save_scoremaps``: a folder where each
    image's true-class score map is written as wsolevaluation writes it (`scoremaps`), named
    by its path below ``scoremap_base`` (default: the folder above ``images``).
    ``cam_threshold_from``: an earlier report whose best MaxBoxAccV2 thresholds are applied
    here too (`thresholds.carried_thresholds`; the report says which figure used which).
    ``class_predictions``: another classifier's top-k classes per image (`class_predictions`);
    each image's predictions are then those classes, with the box of each class's CAM, so
    classification and top-1/top-5 localization error are that classifier's with these boxes.
    ``per_image``: JSON Lines of per-image results, appended as the run goes; an existing file
    is resumed (its images are not run again) when it was written by the same model (weights
    compared by content), ground truth and settings. ``settings`` are extra entries for the
    report (e.g. the input paths). ``loaded`` is left as it was (``copy_model=False``: its model
    is prepared in place, for a caller that made it for this run). Raises `EvaluationError` on
    mismatches. ``pxap_masks`` (``{image stem: (mask paths, ignore path or None)}``, from
    wsolevaluation mask metadata) adds PxAP from the true class's CAM (`pxap.ModelPxAP`).
    In a group of processes (``with run.processes() as run:``, as `evaluate` does
    under torchrun) every rank runs its share of the images, rank 0 alone reads and writes
    ``per_image``, and every rank returns rank 0's report.
    """
    from cam_cli.data.decode import resolve_decode
    from cam_cli.inference import shards
    from cam_cli.inference.localizer import RunOptions, compile_or_warn

    run = run or RunOptions()
    items, missing = pair_images(images, annotations)
    check_missing(missing, allow_missing)
    if not items:
        raise EvaluationError("no annotated image to evaluate")
    if classes is not None:
        order = check_class_order(loaded.classes, classes, "the annotations' classes")
        loaded = replace(loaded, classes=order)
    check_known_labels((annotation for _, annotation in items), loaded.classes)
    has_boxes = any(annotation.boxes for _, annotation in items)
    if maxboxacc and not has_boxes:
        raise EvaluationError("--maxboxacc needs ground-truth boxes; these annotations have none")
    protocol, carried = _maxboxacc_setup(maxboxacc, maxboxacc_protocol, cam_threshold_from)
    listed = None
    if class_predictions is not None:
        from cam_cli.evaluation.class_predictions import class_indices, read_class_predictions

        listed = class_indices(
            read_class_predictions(class_predictions),
            [printable_path(a.image_id) for _, a in items],
            loaded.classes,
            str(class_predictions),
        )
    save = None
    if save_scoremaps is not None:
        save = _scoremap_saver(save_scoremaps, images, scoremap_base, protocol.input_size_cam)

    _check_boxes(boxes, per_image, box_rule)
    if pxap_masks is not None and per_image is not None:
        raise EvaluationError("PxAP cannot resume from --per-image yet; leave one out")
    # The weights' digest before the pipeline prepares them (folded batch norm would change
    # it), so every caller gets the same resume identity for the same weights.
    model_digest = loaded.digest() if per_image is not None else None
    localizer = run.localizer(
        loaded,
        compile_now=False,
        topk=topk,
        threshold=threshold,
        box_rule=box_rule,
        ten_crop=ten_crop,
        copy_model=copy_model,
    )
    threshold = localizer.threshold  # None: the checkpoint's own, else 0.2 (`Localizer`)
    # Only what differs from the paper's defaults enters the report and the fingerprint, so a
    # default run's report and its --per-image file stay exactly as they were.
    rule_settings = _box_settings(box_rule, ten_crop, boxes)
    settings = {
        "mode": "model",
        **(settings or {}),
        **loaded.describe(),
        **rule_settings,
        "threshold": threshold,
        "topk": localizer.topk,
        "fast": localizer.precision.enabled,  # resolved: None means "where the hardware gains"
        "maxboxacc": maxboxacc,
        **_maxboxacc_settings(maxboxacc, protocol.name, save_scoremaps, carried),
        **({} if listed is None else {"class_predictions": _absolute(class_predictions)}),
        "device": str(localizer.device),
        "decode": resolve_decode(run.decode, localizer.device),  # "pil" or "device"
    }
    fingerprint = None
    if per_image is not None:
        # What decides every per-image result, by content: never file names or devices.
        fingerprint = settings_fingerprint(
            {
                "model": model_digest,
                "ground_truth": _annotations_digest(annotations),
                **{key: settings[key] for key in ("threshold", "topk", "fast", "maxboxacc")},
                # the wsol protocol changed MaxBoxAcc's per-image IoUs: older lines are not these
                **({"maxboxacc_protocol": protocol.name} if maxboxacc else {}),
                **(
                    {} if listed is None else {"class_predictions": _file_digest(class_predictions)}
                ),
                **rule_settings,
                # device decoding moves pixels slightly; PIL runs keep their old fingerprints
                **({"decode": "device"} if settings["decode"] == "device" else {}),
            }
        )
    scorer = _Scorer(maxboxacc, fingerprint, boxes, protocol.name, save, carried)
    pxap = None
    if pxap_masks is not None:
        from cam_cli.evaluation.pxap import ModelPxAP, normalize_scoremap

        # the score map of the protocol: wsolevaluation's (bicubic from the feature CAM) by
        # default, the input-size CAM as it comes with the cam-cli protocol
        pxap = ModelPxAP(
            pxap_masks,
            scoremap=normalize_scoremap if protocol.input_size_cam else None,
            save=save,
        )
    # keyed as the per-image lines write them (`printable_path`: names that are not UTF-8)
    by_stem = {printable_path(annotation.image_id): annotation for _, annotation in items}

    lock = FileLock(per_image) if per_image is not None else None

    def left_to_do() -> list[str]:
        """The images not in the per-image file yet (its lines are fed to the scorer). An
        image whose line is an error (a truncated file, since fixed?) is run again: its old
        line is dropped from the file, so it ends up with exactly one line."""
        if lock is None:
            return [str(path) for path, _ in items]
        lock.acquire()  # held until the last line is written; a second run stops here
        lines, good_end = per_image_lines(per_image, fingerprint)
        seen: set[str] = set()
        kept: list[bytes] = []
        for raw, line in lines:
            image_id = line.get("image_id")
            if image_id not in by_stem or image_id in seen:
                problem = "is listed twice" if image_id in seen else "is not being evaluated now"
                raise EvaluationError(
                    f"{per_image}: image {image_id} {problem}; the file belongs to another run "
                    "(give another --per-image file)"
                )
            seen.add(image_id)
            if line.get("error") is None:
                kept.append(raw)
                scorer.readd(line, by_stem[image_id])
        done = {line["image_id"] for _, line in lines if line.get("error") is None}
        if len(kept) < len(lines):
            rewrite_per_image(per_image, kept)
            logger.info("retrying %d images that failed before", len(lines) - len(kept))
        else:
            cut_to(per_image, good_end)
        if done:
            logger.info(
                "resuming: %d of %d images already scored in %s", len(done), len(items), per_image
            )
        return [str(path) for path, _ in items if printable_path(path.stem) not in done]

    # Under torchrun rank 0 alone reads (and trims) the file, and tells every rank what is left.
    annotation_of_path = {str(path): annotation for path, annotation in items}
    writer = None
    try:  # the lock (rank 0, taken in left_to_do) is held until the last line is written
        todo = [(path, annotation_of_path[path]) for path in shards.from_rank_zero(left_to_do)]
        to_index = _label_indices(loaded.classes)
        # The pipeline wants as many extra classes for every image: an image without a label
        # (scored wrong anyway) asks for class 0 and gets no GT-known box.
        true_class = {path: to_index(a.labels[0]) if a.labels else 0 for path, a in todo}
        # Another classifier's classes ride along as extra classes, after the true one, padded
        # to one length (the pipeline wants as many for every image); the padding is never
        # scored.
        listed_of = (
            {} if listed is None else {p: listed[printable_path(a.image_id)] for p, a in todo}
        )
        most = max((len(v) for v in listed_of.values()), default=0)

        def extra_classes(path: str) -> list[int]:
            own = listed_of.get(path, [])
            return [true_class[path], *own, *[true_class[path]] * (most - len(own))]

        annotation_of = dict(todo)
        if run.compile_model and todo:
            compile_or_warn(localizer, run.batch_size)
        main = shards.is_rank_zero()  # under torchrun the other ranks run, never score or write
        if per_image is not None and todo and main:
            writer = PerImageLog(per_image)
        if todo:
            # The cam-cli protocol's sweep runs where the boxes are made: on the device with
            # the CAMs when they are boxed there. The wsol protocol (OpenCV's resize and
            # contours) and the score maps run on the host beside the network, from the CAMs
            # at feature resolution (7x7 for MobileNetV2: little to copy).
            on_device = localizer.boxes_on_device and protocol.input_size_cam and maxboxacc
            finish = None if on_device else scorer.maxbox_finisher(annotation_of)
            if pxap is not None:  # masks have no boxes, so there is no MaxBoxAcc to run
                finish = pxap.finisher(annotation_of)
            results = run.localize(
                localizer,
                [path for path, _ in todo],
                extra_classes=extra_classes,
                keep_extra_cams=((maxboxacc or save is not None) and not on_device)
                or pxap is not None,
                extra_cams_at_feature=not protocol.input_size_cam,
                extra_maps=scorer.maxbox_on_device(annotation_of) if on_device else None,
                finish=finish,
            )
            for result in results:
                annotation = annotation_of[result.path]
                wanted = has_boxes and annotation.labels and result.extra
                gt_known = result.extra[0].box if wanted else None
                if pxap is not None:
                    pxap.add(result)
                    result.analysis = None
                record = result.as_record()
                if listed is not None and result.error is None:
                    record["predictions"] = _listed_predictions(result, len(listed_of[result.path]))
                line = scorer.add(record, annotation, gt_known, result.analysis)
                if writer is not None:
                    writer.write(line)
    finally:
        localizer.close()
        if writer is not None:
            writer.close()
        if lock is not None:
            lock.release()

    def report() -> dict:
        figures = scorer.report(missing, settings, gt_known_available=True)
        if pxap is not None:
            figures["pxap"] = pxap.summary()
        return figures

    return shards.from_rank_zero(report)


def _listed_predictions(result, count: int) -> list[dict]:
    """The record's predictions from another classifier's classes (extra classes 1..count):
    rank as listed, each with its own CAM's box and the CAM network's score of it."""
    return [{**p.as_dict(), "rank": rank} for rank, p in enumerate(result.extra[1 : 1 + count], 1)]


def _file_digest(path: str | Path) -> str:
    from cam_cli.evaluation.class_predictions import file_digest

    return file_digest(path)


def _maxboxacc_setup(
    maxboxacc: bool, protocol: str, cam_threshold_from: str | Path | None
) -> tuple:
    """The protocol (by name), and the carried thresholds of ``cam_threshold_from`` if any."""
    from cam_cli.evaluation.thresholds import carried_thresholds

    try:
        chosen = maxboxacc_protocol(protocol)
    except ValueError as error:
        raise EvaluationError(str(error)) from None
    if cam_threshold_from is None:
        return chosen, None
    if not maxboxacc:
        raise EvaluationError(
            "--cam-threshold-from carries MaxBoxAccV2's CAM thresholds; add --maxboxacc"
        )
    levels = MaxBoxAccV2(protocol=chosen).iou_thresholds
    return chosen, carried_thresholds(cam_threshold_from, chosen.name, levels)


def _maxboxacc_settings(
    maxboxacc: bool, protocol: str, save_scoremaps: str | Path | None, carried: Mapping | None
) -> dict:
    """Report entries of the MaxBoxAcc options (none for a run without them)."""
    settings: dict[str, Any] = {"maxboxacc_protocol": protocol} if maxboxacc else {}
    if save_scoremaps is not None:
        settings["save_scoremaps"] = str(Path(save_scoremaps).resolve())
    if carried is not None:
        settings["cam_threshold_from"] = carried["report"]
    return settings


def _scoremap_saver(
    root: str | Path,
    images: str | Path | Mapping[str, str | Path],
    base: str | Path | None,
    input_size_cam: bool,
) -> Callable[[str, np.ndarray], object]:
    """``save(image_path, scoremap)`` into ``root`` under wsolevaluation's image ids."""
    from cam_cli.evaluation.scoremaps import save_scoremap, scoremap_id

    if input_size_cam:
        raise EvaluationError(
            "--save-scoremaps writes wsolevaluation's maps (bicubic from the feature-resolution "
            "CAM); use it with --maxboxacc-protocol wsol"
        )
    if base is None:
        if isinstance(images, Mapping):
            raise EvaluationError("--save-scoremaps needs the folder the image ids start from")
        base = Path(os.path.abspath(images)).parent
    if Path(root).exists() and not Path(root).is_dir():
        raise EvaluationError(f"{root}: --save-scoremaps needs a folder; this is a file")

    def save(path: str, scoremap: np.ndarray) -> object:
        return save_scoremap(root, scoremap_id(path, base), scoremap)

    return save


def _box_settings(box_rule: str = "paper", ten_crop: bool = False, boxes: int = 1) -> dict:
    """The box settings that differ from the defaults (none for a default run)."""
    given = {"box_rule": box_rule, "ten_crop": ten_crop, "boxes": boxes}
    defaults = {"box_rule": "paper", "ten_crop": False, "boxes": 1}
    return {key: value for key, value in given.items() if value != defaults[key]}


def _check_boxes(boxes: int, per_image: str | Path | None, box_rule: str | None = None) -> None:
    if boxes not in (1, 2):
        raise EvaluationError(f"--boxes must be 1 or 2 (as the released evaluation), not {boxes}")
    if boxes == 2 and box_rule == "paper":
        raise EvaluationError("--boxes 2 needs a rule that ranks boxes: --box-rule zhou2016")
    if boxes == 2 and per_image is not None:
        raise EvaluationError("--boxes 2 cannot resume from --per-image yet; leave one out")


def _absolute(path: str | Path) -> str:
    """Paths in the report are absolute, so a report says where its inputs were."""
    return str(Path(path).resolve()) if str(path) != "-" and Path(path).exists() else str(path)


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
    from cam_cli.models.loading import LoadedModel, ModelOptions, load_model

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
    settings: dict[str, Any] = {k: _absolute(v) for k, v in paths.items() if v is not None}
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
    from cam_cli.inference.localizer import RunOptions

    with (run or RunOptions()).processes() as run:  # torchrun: the group, this process's device
        loaded = load_model(model, device=run.device) if isinstance(model, ModelOptions) else model
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
