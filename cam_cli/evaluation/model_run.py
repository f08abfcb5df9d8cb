"""The model run of `cam-cli eval`: a model over annotated images, every image scored as it
comes (`evaluate_model`).

Top-1/top-5 classification and localization error (ILSVRC rule), GT-known localization error
(the box from the true class's CAM, asked of the pipeline as an extra class) and, on request,
MaxBoxAccV2 and PxAP from the true class's CAM. The per-image work on that CAM runs where the
maps are, inside the pipeline, through one `TrueClassAnalysis`; an interrupted run resumes from
its ``--per-image`` file (`evaluation.resume`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cam_cli.data.annotations import ImageAnnotation
from cam_cli.data.classes import ClassInfo
from cam_cli.data.matching import (
    EvaluationError,
    check_class_order,
    check_known_labels,
    check_missing,
    label_indices,
    pair_images,
)
from cam_cli.evaluation.metrics import MaxBoxAccProtocol, MaxBoxAccV2, gt_boxes_in_grid
from cam_cli.evaluation.resume import (
    PerImageLog,
    cut_to,
    per_image_lines,
    rewrite_per_image,
    settings_fingerprint,
)
from cam_cli.evaluation.scoring import (
    Scorer,
    absolute,
    box_settings,
    check_boxes,
    maxboxacc_settings,
    maxboxacc_setup,
)
from cam_cli.files.checks import printable_path
from cam_cli.files.lock import FileLock, FolderLock
from cam_cli.inference.analysis import Analysis
from cam_cli.inference.localizer import Localizer, compile_or_warn
from cam_cli.inference.shards import Processes
from cam_cli.models.loading import LoadedModel
from cam_cli.runtime.distributed import is_main_process
from cam_cli.settings import CamOptions, RunOptions

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)
ScoremapSaver = Callable[[str, np.ndarray], object]


class TrueClassAnalysis(Analysis):
    """What evaluation wants of every image besides its top-k boxes: the true class (and
    another classifier's classes) as extra classes, and the per-image work on the true class's
    CAM where the maps are: the MaxBoxAccV2 sweep (100 thresholds, every box) and the score map
    to save, or PxAP's histograms, on the host beside the network; or, when the boxes are made
    on the device and the protocol is cam-cli's, the sweep there with the CAMs, so only the best
    IoUs per threshold leave it. The CAM is dropped once done."""

    def __init__(
        self,
        extra_classes: Callable[[str], Sequence[int]],
        annotation_of: Mapping[str, ImageAnnotation],
        protocol: MaxBoxAccProtocol,
        maxbox: MaxBoxAccV2 | None,
        save: ScoremapSaver | None,
        pxap: Any,
        sweep_on_device: bool,
        box_step: str = "torch",
    ) -> None:
        """``sweep_on_device``: the cam-cli protocol's sweep runs with the CAMs on the device,
        with ``box_step`` ("torch" or "triton": the Localizer's resolved `Localizer.box_step`),
        and only the best IoUs leave it, in the batch's one copy to the host."""
        keep = ((maxbox is not None or save is not None) and not sweep_on_device) or (
            pxap is not None
        )
        at = "input" if protocol.input_size_cam else "feature"
        super().__init__(extra_classes=extra_classes, extra_cams=at if keep else None)
        self.annotation_of = annotation_of
        self.maxbox, self.save, self.sweep_on_device = maxbox, save, sweep_on_device
        self.box_step = box_step
        self.pxap_histograms = None if pxap is None else pxap.finisher(annotation_of)
        self.sweeps_on_host = not sweep_on_device and (maxbox is not None or save is not None)
        self.maker = (maxbox or MaxBoxAccV2(protocol=protocol)) if self.sweeps_on_host else None

    def on_device(self, batch, cams) -> torch.Tensor | None:
        """The best IoUs ``[B, T]`` left on the device: the pipeline copies them with the rest
        of the batch (one host wait), and each image gets its row."""
        if not self.sweep_on_device:
            return None
        from cam_cli.boxes.steps import device_best_ious
        from cam_cli.evaluation.maxboxacc_torch import pad_gt_boxes

        grid = tuple(cams.shape[-2:])
        gt = [
            gt_boxes_in_grid(self.annotation_of[item.path], item.width, item.height, grid)
            for item in batch.items
        ]
        boxes, valid = pad_gt_boxes(gt, cams.device)
        return device_best_ious(self.box_step, cams[:, 0], boxes, valid, self.maxbox.thresholds)

    def on_host(self, result) -> None:
        if self.pxap_histograms is not None:  # masks have no boxes: no MaxBoxAcc to run
            self.pxap_histograms(result)
        elif self.sweeps_on_host:
            self._sweep(result)

    def _sweep(self, result) -> None:
        if result.extra_cams is None:
            return
        annotation, maker, maxbox = self.annotation_of[result.path], self.maker, self.maxbox
        cam = result.extra_cams[0]
        if maker.protocol.input_size_cam:
            result.analysis = maker.image_ious(cam, annotation, result.width, result.height)
        else:
            scoremap = maker.scoremap(cam)
            if self.save is not None:
                self.save(result.path, scoremap)
            if maxbox is not None:
                result.analysis = maxbox.scoremap_image_ious(
                    scoremap, annotation, result.width, result.height
                )
        result.extra_cams = None


def annotations_digest(annotations: Mapping[str, ImageAnnotation]) -> str:
    """A hash of the ground truth itself: a resumed run must score against the same boxes."""
    digest = hashlib.sha256()
    for image_id in sorted(annotations):
        a = annotations[image_id]
        digest.update(json.dumps([image_id, a.labels, a.boxes, a.width, a.height]).encode())
    return digest.hexdigest()[:16]


def scoremap_saver(
    root: str | Path,
    images: str | Path | Mapping[str, str | Path],
    base: str | Path | None,
    input_size_cam: bool,
) -> ScoremapSaver:
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


def listed_predictions(result, count: int) -> list[dict]:
    """The record's predictions from another classifier's classes (extra classes 1..count):
    rank as listed, each with its own CAM's box and the CAM network's score of it."""
    return [{**p.as_dict(), "rank": rank} for rank, p in enumerate(result.extra[1 : 1 + count], 1)]


def _left_to_do(
    items: Sequence[tuple[Path, ImageAnnotation]],
    per_image: str | Path | None,
    lock: FileLock | None,
    fingerprint: str | None,
    scorer: Scorer,
) -> list[str]:
    """The images not in the per-image file yet (its lines are fed to the scorer). An image
    whose line is an error (a truncated file, since fixed?) is run again: its old line is
    dropped from the file, so it ends up with exactly one line."""
    if lock is None:
        return [str(path) for path, _ in items]
    # keyed as the per-image lines write them (`printable_path`: names that are not UTF-8)
    by_stem = {printable_path(annotation.image_id): annotation for _, annotation in items}
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


def _extra_classes(
    todo: Sequence[tuple[str, ImageAnnotation]],
    classes: list[ClassInfo],
    listed: Mapping[str, list[int]] | None,
) -> tuple[Callable[[str], list[int]], dict[str, list[int]]]:
    """``extra_classes(path)``: the true class, then another classifier's classes (``listed``,
    by image id), padded to one length (the pipeline wants as many for every image; the
    padding is never scored); and those classes by path."""
    to_index = label_indices(classes)
    # An image without a label (scored wrong anyway) asks for class 0 and gets no GT-known box.
    true_class = {path: to_index(a.labels[0]) if a.labels else 0 for path, a in todo}
    listed_of = {} if listed is None else {p: listed[printable_path(a.image_id)] for p, a in todo}
    most = max((len(v) for v in listed_of.values()), default=0)

    def extra_classes(path: str) -> list[int]:
        own = listed_of.get(path, [])
        return [true_class[path], *own, *[true_class[path]] * (most - len(own))]

    return extra_classes, listed_of


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
    processes: Processes | None = None,
) -> dict:
    """Run ``loaded`` (from `models.loading.load_model`) over annotated images and score them.

    ``box_rule`` and ``ten_crop``: how CAMs become boxes (`Localizer`); box 1 is the box every
    figure uses, and ``boxes=2`` also scores box 2 as the released evaluation did
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
    ``processes``: the job's processes (`shards.processes`, as `evaluate` does under torchrun):
    every rank runs its share of the images, rank 0 alone reads and writes ``per_image``, and
    every rank returns rank 0's report.
    """
    run = run or RunOptions()
    job = processes or Processes()
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
    protocol, carried = maxboxacc_setup(maxboxacc, maxboxacc_protocol, cam_threshold_from)
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
        save = scoremap_saver(save_scoremaps, images, scoremap_base, protocol.input_size_cam)

    check_boxes(boxes, per_image, box_rule)
    if pxap_masks is not None and per_image is not None:
        raise EvaluationError("PxAP cannot resume from --per-image yet; leave one out")
    # The weights' digest before the pipeline prepares them (folded batch norm would change
    # it), so every caller gets the same resume identity for the same weights.
    model_digest = loaded.digest() if per_image is not None else None
    cam = CamOptions(topk=topk, threshold=threshold, box_rule=box_rule, ten_crop=ten_crop)
    localizer = Localizer(loaded, cam, run, processes=job, copy_model=copy_model)
    # Only what differs from the paper's defaults enters the report and the fingerprint, so a
    # default run's report and its --per-image file stay exactly as they were.
    rule_settings = box_settings(box_rule, ten_crop, boxes)
    settings = {
        "mode": "model",
        **(settings or {}),
        **loaded.describe(),
        **rule_settings,
        "threshold": localizer.threshold,  # None: the checkpoint's own, else 0.2 (`Localizer`)
        "topk": localizer.topk,
        "fast": localizer.precision.enabled,  # resolved: None means "where the hardware gains"
        "maxboxacc": maxboxacc,
        **maxboxacc_settings(maxboxacc, protocol.name, save_scoremaps, carried),
        **({} if listed is None else {"class_predictions": absolute(class_predictions)}),
        "device": str(localizer.device),
        "decode": localizer.decode,  # "pil" or "device"
    }
    fingerprint = None
    if per_image is not None:
        from cam_cli.evaluation.class_predictions import file_digest

        # What decides every per-image result, by content: never file names or devices.
        fingerprint = settings_fingerprint(
            {
                "model": model_digest,
                "ground_truth": annotations_digest(annotations),
                **{key: settings[key] for key in ("threshold", "topk", "fast", "maxboxacc")},
                # the wsol protocol changed MaxBoxAcc's per-image IoUs: older lines are not these
                **({"maxboxacc_protocol": protocol.name} if maxboxacc else {}),
                **({} if listed is None else {"class_predictions": file_digest(class_predictions)}),
                **rule_settings,
                # device decoding moves pixels slightly; PIL runs keep their old fingerprints
                **({"decode": "device"} if settings["decode"] == "device" else {}),
            }
        )
    scorer = Scorer(maxboxacc, fingerprint, boxes, protocol.name, carried)
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
    lock = FileLock(per_image) if per_image is not None else None
    # one run writes a folder of maps at a time (rank 0 holds it for the job)
    maps_lock = FolderLock(save_scoremaps, "`save_scoremaps`") if save is not None else None
    annotation_of_path = {str(path): annotation for path, annotation in items}
    writer = None
    try:  # the lock (rank 0, taken in _left_to_do) is held until the last line is written
        if maps_lock is not None:
            job.from_rank_zero(maps_lock.acquire)
        # Under torchrun rank 0 alone reads (and trims) the file, and tells every rank what is
        # left.
        left = job.from_rank_zero(lambda: _left_to_do(items, per_image, lock, fingerprint, scorer))
        todo = [(path, annotation_of_path[path]) for path in left]
        if save is not None and len(todo) < len(items) and is_main_process():
            logger.info(
                "note: %d of %d images resumed from %s: their score maps are not written again "
                "(the run that scored them wrote them)",
                len(items) - len(todo), len(items), per_image,
            )  # fmt: skip
        extra_classes, listed_of = _extra_classes(todo, loaded.classes, listed)
        if run.compile_model and todo:
            compile_or_warn(localizer, run.batch_size)
        main = is_main_process()  # under torchrun the other ranks run, never score or write
        if per_image is not None and todo and main:
            writer = PerImageLog(per_image)
        if todo:
            annotation_of = dict(todo)
            # The cam-cli protocol's sweep runs where the boxes are made: on the device with
            # the CAMs when they are boxed there. The wsol protocol (OpenCV's resize and
            # contours) and the score maps run on the host beside the network, from the CAMs
            # at feature resolution (7x7 for MobileNetV2: little to copy).
            on_device = localizer.boxes_on_device and protocol.input_size_cam and maxboxacc
            analysis = TrueClassAnalysis(
                extra_classes,
                annotation_of,
                protocol,
                scorer.maxbox,
                save,
                pxap,
                on_device,
                box_step=localizer.box_step,
            )
            for result in localizer.localize([path for path, _ in todo], analysis):
                annotation = annotation_of[result.path]
                wanted = has_boxes and annotation.labels and result.extra
                gt_known = result.extra[0].box if wanted else None
                if pxap is not None:
                    pxap.add(result)
                    result.analysis = None
                record = result.as_record()
                if listed is not None and result.error is None:
                    record["predictions"] = listed_predictions(result, len(listed_of[result.path]))
                line = scorer.add(record, annotation, gt_known, result.analysis)
                if writer is not None:
                    writer.write(line)
    finally:
        localizer.close()
        if writer is not None:
            writer.close()
        if lock is not None:
            lock.release()
        if maps_lock is not None:
            maps_lock.release()

    def report() -> dict:
        figures = scorer.report(missing, settings, gt_known_available=True)
        if pxap is not None:
            figures["pxap"] = pxap.summary()
        return figures

    return job.from_rank_zero(report)
