"""A model over the ground truth's images as a source (`ModelRun`, opened by `model_run`): each
image's top-k boxes, the box of its true class's CAM (GT-known) and, for the evaluators that
read maps, their work on its true class's score map, done where the maps are.

The per-image work on the true class's CAM runs inside the pipeline, through one
`TrueClassAnalysis`; an interrupted run resumes from its per-image file (`evaluation.resume`).
Under torchrun every rank runs its share of the images, rank 0 alone reads and writes the
per-image file and makes the report, and every rank returns it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cam_cli.data.annotations import ImageAnnotation
from cam_cli.data.class_match import match_truth
from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import GroundTruth
from cam_cli.data.matching import (
    EvaluationError,
    check_class_order,
    check_known_labels,
    check_missing,
    label_indices,
    pair_images,
)
from cam_cli.eval_options import EvalOptions
from cam_cli.evaluation.class_predictions import class_indices, file_digest, read_class_predictions
from cam_cli.evaluation.evaluators.base import Evaluator, ScoredImage
from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2
from cam_cli.evaluation.maxboxacc.protocol import (
    MaxBoxAccProtocol,
    maxboxacc_protocol,
    scoremap_of_cam,
)
from cam_cli.evaluation.report import Report
from cam_cli.evaluation.report_settings import absolute, box_settings, maxboxacc_settings
from cam_cli.evaluation.resume import (
    PerImageLog,
    cut_to,
    per_image_lines,
    record_from_line,
    rewrite_per_image,
    settings_fingerprint,
)
from cam_cli.evaluation.scoremap_files import save_scoremap, scoremap_id
from cam_cli.evaluation.sources.base import Source
from cam_cli.files.checks import printable_path
from cam_cli.files.lock import FileLock, FolderLock
from cam_cli.inference.analysis import Analysis, ExtraCams
from cam_cli.inference.localizer import Localizer, compile_or_warn
from cam_cli.inference.map_methods import load_for_method, method_settings
from cam_cli.inference.results import ImageResult
from cam_cli.models.loading import LoadedModel
from cam_cli.runtime.distributed import is_main_process, process_device
from cam_cli.runtime.group import Group, open_group
from cam_cli.settings import ModelOptions

if TYPE_CHECKING:
    import torch

    from cam_cli.data.batches import ImageBatch

logger = logging.getLogger(__name__)
ScoremapSaver = Callable[[str, np.ndarray], object]


class TrueClassAnalysis(Analysis):
    """What evaluation wants of every image besides its top-k boxes: the true class (and
    another classifier's classes) as extra classes, and the evaluators' work on the true
    class's CAM where the maps are: on the host beside the network, from the score map of the
    protocol (`protocol.scoremap_of_cam`), which is also saved if asked; or, for an evaluator
    that offers it when the boxes are made on the device, there with the CAMs, so only its
    result leaves the device. The CAM is dropped once done."""

    def __init__(
        self,
        extra_classes: Callable[[str], Sequence[int]],
        annotation_of: Mapping[str, ImageAnnotation],
        protocol: MaxBoxAccProtocol,
        on_host: Sequence[Evaluator],
        on_device: Evaluator | None,
        save: ScoremapSaver | None,
        box_backend: str,
        report_cams: bool = False,
    ) -> None:
        """``box_backend``: the Localizer's resolved `Localizer.box_backend`, for ``on_device``.
        ``report_cams``: also hand on the true class's and the top-1 class's CAMs (as
        ``from_map["report_cams"]``), for an HTML report's pictures."""
        keep = bool(on_host) or save is not None
        at: ExtraCams = "input" if protocol.input_size_cam else "feature"
        extra: ExtraCams | None = at if keep else ("feature" if report_cams else None)
        super().__init__(keep_cams=report_cams, extra_classes=extra_classes, extra_cams=extra)
        self.report_cams = report_cams
        self.annotation_of = annotation_of
        self.protocol = protocol
        self.host_evaluators = list(on_host)
        self.device_evaluator = on_device
        self.save = save
        self.box_backend = box_backend

    def on_device(self, batch: ImageBatch, cams: torch.Tensor) -> torch.Tensor | None:
        if self.device_evaluator is None:
            return None
        images = [(self.annotation_of[i.path], i.width, i.height) for i in batch.items]
        return self.device_evaluator.on_device(self.box_backend, cams[:, 0], images)

    def on_host(self, result: ImageResult) -> None:
        found: dict[str, object] = {}
        if self.device_evaluator is not None and result.analysis is not None:
            found[self.device_evaluator.key] = result.analysis
        if self.report_cams and result.extra_cams is not None:
            top1 = result.cams[0] if result.cams is not None and len(result.cams) else None
            found["report_cams"] = (
                result.extra_cams[0].copy(),
                None if top1 is None else top1.copy(),
            )
            result.cams = None
        if result.extra_cams is not None and (self.host_evaluators or self.save is not None):
            scoremap = scoremap_of_cam(result.extra_cams[0], self.protocol)
            if self.save is not None:
                self.save(result.path, scoremap)
            annotation = self.annotation_of[result.path]
            for evaluator in self.host_evaluators:
                found[evaluator.key] = evaluator.on_map(
                    scoremap, annotation, result.width, result.height
                )
        result.extra_cams = None
        result.analysis = found


def annotations_digest(annotations: Mapping[str, ImageAnnotation]) -> str:
    """A hash of the ground truth itself: a resumed run must score against the same boxes."""
    digest = hashlib.sha256()
    for image_id in sorted(annotations):
        a = annotations[image_id]
        digest.update(json.dumps([image_id, a.labels, a.boxes, a.width, a.height]).encode())
    return digest.hexdigest()[:16]


def scoremap_saver(root: str | Path, base: Path | None) -> ScoremapSaver:
    """``save(image_path, scoremap)`` into ``root`` under wsolevaluation's image ids, their
    paths below ``base`` (`data.ground_truth.GroundTruth.base`)."""
    if base is None:
        raise EvaluationError("`save_scoremaps` needs the folder the image ids start from")
    start = base

    def save(path: str, scoremap: np.ndarray) -> object:
        return save_scoremap(root, scoremap_id(path, start), scoremap)

    return save


def listed_predictions(result: ImageResult, count: int) -> list[dict[str, Any]]:
    """The record's predictions from another classifier's classes (extra classes 1..count):
    rank as listed, each with its own CAM's box and the CAM network's score of it."""
    return [{**p.as_dict(), "rank": rank} for rank, p in enumerate(result.extra[1 : 1 + count], 1)]


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


@contextmanager
def model_run(options: EvalOptions, truth: GroundTruth) -> Iterator[ModelRun]:
    """The model loaded (from its options, on this process's device) or taken as given (left
    as it was: its Localizer works on a copy), under torchrun in the group of processes."""
    run = options.source.run
    with open_group(run.device) as group:  # under torchrun: the group
        model = options.source.model
        if isinstance(model, ModelOptions):
            device = str(process_device(run.device))
            loaded, copy_model = load_for_method(model, options.source.cam, device), False
        else:
            loaded, copy_model = model, True
        source = ModelRun(options, truth, loaded, group, copy_model)
        try:
            yield source
        finally:
            source.close()


def _matched_truth(truth: GroundTruth, classes: Sequence[ClassInfo]) -> GroundTruth:
    try:
        return match_truth(truth, classes, "`annotations`")
    except ValueError as error:
        raise EvaluationError(str(error)) from None


class ModelRun(Source):
    """``loaded`` (from `models.loading.load_model`) over the ground truth's images: a folder
    matched to the annotations by file stem, or ``{stem: path}`` (CUB, wsolevaluation ids).
    The ground truth's class list (CUB's) is checked against the model's (a model without
    class names takes it). GT-known error uses the box of the CAM of the image's first
    ground-truth class. ``copy_model=False``: the model is prepared in place, for a caller that
    made it for this run. Raises `EvaluationError` on mismatches, before any image is run."""

    mode = "model"

    def __init__(
        self,
        options: EvalOptions,
        truth: GroundTruth,
        loaded: LoadedModel,
        group: Group,
        copy_model: bool,
    ) -> None:
        super().__init__()
        if truth.classes is None:  # names (VOC, YOLO, COCO, CSV) -> the model's labels
            truth = _matched_truth(truth, loaded.classes)
        self.options, self.truth, self.group = options, truth, group
        metrics, outputs, run = options.metrics, options.outputs, options.source.run
        if truth.images is None:
            raise EvaluationError("give the images to run the model over")
        self.items, self.missing = pair_images(truth.images, truth.annotations)
        check_missing(self.missing, metrics.allow_missing)
        if not self.items:
            raise EvaluationError("no annotated image to evaluate")
        if truth.classes is not None:
            order = check_class_order(
                loaded.classes, list(truth.classes), "the annotations' classes"
            )
            loaded = replace(loaded, classes=order)
        check_known_labels((annotation for _, annotation in self.items), loaded.classes)
        self.has_boxes = any(annotation.boxes for _, annotation in self.items)
        self.protocol = maxboxacc_protocol(metrics.maxboxacc_protocol)
        self.listed = None
        if metrics.class_predictions is not None:
            self.listed = class_indices(
                read_class_predictions(metrics.class_predictions),
                [printable_path(a.image_id) for _, a in self.items],
                loaded.classes,
                str(metrics.class_predictions),
            )
        self.save = None
        if outputs.save_scoremaps is not None:
            self.save = scoremap_saver(outputs.save_scoremaps, truth.base())
        if truth.masks is not None and outputs.per_image is not None:
            raise EvaluationError("PxAP cannot resume from `per_image` yet; leave one out")
        if metrics.faithfulness and outputs.per_image is not None:
            raise EvaluationError(
                "`faithfulness` cannot resume from `per_image` yet; leave one out"
            )
        # The weights' digest before the pipeline prepares them (folded batch norm would change
        # it), so every caller gets the same resume identity for the same weights.
        model_digest = loaded.digest() if outputs.per_image is not None else None
        self.loaded = loaded
        cam = replace(options.source.cam, faithfulness=metrics.faithfulness)
        self.localizer = Localizer(loaded, cam, run, group=group,
                                   copy_model=copy_model)  # fmt: skip
        self.settings = self._settings()
        self.fingerprint = None
        if outputs.per_image is not None:
            self.fingerprint = self._fingerprint(model_digest)

    def _settings(self) -> dict[str, Any]:
        """Only what differs from the paper's defaults enters the report and the fingerprint,
        so a default run's report and its per-image file stay exactly as they were."""
        metrics, cam, localizer = self.options.metrics, self.options.source.cam, self.localizer
        protocol = self.protocol.name if metrics.maxboxacc else None
        saved, carried = self.options.outputs.save_scoremaps, metrics.cam_threshold_from
        return {
            **self.loaded.describe(),
            **box_settings(cam.box_rule, cam.ten_crop, metrics.boxes),
            **method_settings(localizer.maps),  # none for the paper's CAM
            "threshold": localizer.threshold,  # None: the checkpoint's own, else 0.2
            "topk": localizer.topk,
            "fast": localizer.precision.enabled,  # resolved: None means where the hardware gains
            "maxboxacc": metrics.maxboxacc,
            **maxboxacc_settings(protocol, saved, carried if metrics.maxboxacc else None),
            **(
                {}
                if self.listed is None
                else {"class_predictions": absolute(metrics.class_predictions or "")}
            ),  # fmt: skip
            "device": str(localizer.device),
            "decode": localizer.decode,  # "pil" or "device"
        }

    def _fingerprint(self, model_digest: str | None) -> str:
        """What decides every per-image result, by content: never file names or devices."""
        metrics, cam, settings = self.options.metrics, self.options.source.cam, self.settings
        return settings_fingerprint(
            {
                "model": model_digest,
                "ground_truth": annotations_digest(self.truth.annotations),
                **{key: settings[key] for key in ("threshold", "topk", "fast", "maxboxacc")},
                # the wsol protocol changed MaxBoxAcc's per-image IoUs: older lines are not these
                **({"maxboxacc_protocol": self.protocol.name} if metrics.maxboxacc else {}),
                **(
                    {}
                    if self.listed is None or metrics.class_predictions is None
                    else {"class_predictions": file_digest(metrics.class_predictions)}
                ),
                **box_settings(cam.box_rule, cam.ten_crop, metrics.boxes),
                **method_settings(self.localizer.maps),  # other maps, other lines
                # device decoding moves pixels slightly; PIL runs keep their old fingerprints
                **({"decode": "device"} if settings["decode"] == "device" else {}),
            }
        )

    def close(self) -> None:
        self.localizer.close()

    def report(self, make: Callable[[], Report]) -> Report:
        return self.group.from_rank_zero(make)

    def images(self, evaluators: Sequence[Evaluator]) -> Iterator[ScoredImage]:
        """The images read back from the per-image file first (rank 0), then the others as the
        pipeline gives them, each line appended to the file as it is scored."""
        per_image, maps = self.options.outputs.per_image, self.options.outputs.save_scoremaps
        lock = FileLock(per_image) if per_image is not None else None
        # one run writes a folder of maps at a time (rank 0 holds it for the group)
        maps_lock = FolderLock(maps, "`save_scoremaps`") if self.save and maps else None
        writer = None
        annotation_of_path = {str(path): annotation for path, annotation in self.items}
        resumed: list[ScoredImage] = []
        try:  # the lock (rank 0, taken in _left_to_do) is held until the last line is written
            if maps_lock is not None:
                self.group.from_rank_zero(maps_lock.acquire)
            left = self.group.from_rank_zero(lambda: self._left_to_do(lock, resumed))
            self.resumed = len(resumed)
            todo = [(path, annotation_of_path[path]) for path in left]
            if maps_lock is not None and len(todo) < len(self.items) and is_main_process():
                logger.info(
                    "note: %d of %d images resumed from %s: their score maps are not written "
                    "again (the run that scored them wrote them)",
                    len(self.items) - len(todo), len(self.items), per_image,
                )  # fmt: skip
            yield from resumed
            if not todo:
                return
            run = self.options.source.run
            if run.compile_model:
                compile_or_warn(self.localizer, run.batch_size)
            if per_image is not None and is_main_process():
                writer = PerImageLog(per_image)  # the other ranks run, never score or write
            annotation_of = dict(todo)
            analysis, count = self._analysis(todo, evaluators)
            for result in self.localizer.localize([path for path, _ in todo], analysis):
                image = self._scored(result, annotation_of[result.path], count(result.path))
                yield image
                if writer is not None:
                    writer.write({**image.line, "run": self.fingerprint})
        finally:
            if writer is not None:
                writer.close()
            if lock is not None:
                lock.release()
            if maps_lock is not None:
                maps_lock.release()

    def _analysis(
        self, todo: Sequence[tuple[str, ImageAnnotation]], evaluators: Sequence[Evaluator]
    ) -> tuple[TrueClassAnalysis, Callable[[str], int]]:
        """The pipeline's analysis, and how many of another classifier's classes each image
        has. An evaluator that offers its work on the device does it there when the boxes are
        made there (the cam-cli protocol's sweep); the others read the score map of the
        protocol on the host, beside the network (OpenCV's resize and contours: from the CAMs
        at feature resolution, little to copy)."""
        extra_classes, listed_of = _extra_classes(todo, self.loaded.classes, self.listed)
        readers = [e for e in evaluators if e.reads_maps]
        on_device = None
        if self.localizer.boxes_on_device:
            on_device = next((e for e in readers if e.on_device_too), None)
        on_host = [e for e in readers if e is not on_device]
        analysis = TrueClassAnalysis(
            extra_classes,
            dict(todo),
            self.protocol,
            on_host,
            on_device,
            self.save,
            self.localizer.box_backend,
            report_cams=self.options.outputs.html_report is not None,
        )
        return analysis, lambda path: len(listed_of.get(path, ()))

    def _scored(self, result: ImageResult, annotation: ImageAnnotation, listed: int) -> ScoredImage:
        """A result as the evaluators take it: its record (another classifier's classes as
        its predictions, where given), its GT-known box, what was computed on its map."""
        record = result.as_record()
        if self.listed is not None and result.error is None:
            record["predictions"] = listed_predictions(result, listed)
        wanted = self.has_boxes and annotation.labels and result.extra
        error = result.error
        if error is None and not record.get("predictions"):
            error = "no predictions"
        found = dict(result.analysis) if isinstance(result.analysis, dict) else {}
        if result.faithfulness is not None:
            found["faithfulness"] = result.faithfulness
        return ScoredImage(
            annotation, result.path, error, record, result.extra[0].box if wanted else None, found
        )

    def _left_to_do(self, lock: FileLock | None, resumed: list[ScoredImage]) -> list[str]:
        """The images not in the per-image file yet; its lines become ``resumed`` images. An
        image whose line is an error (a truncated file, since fixed?) is run again: its old line
        is dropped from the file, so it ends up with exactly one line."""
        items, per_image = self.items, self.options.outputs.per_image
        if lock is None or per_image is None or self.fingerprint is None:
            return [str(path) for path, _ in items]
        # keyed as the per-image lines write them (`printable_path`: names that are not UTF-8)
        by_stem = {printable_path(annotation.image_id): annotation for _, annotation in items}
        lock.acquire()  # held until the last line is written; a second run stops here
        lines, good_end = per_image_lines(per_image, self.fingerprint)
        seen: set[str] = set()
        kept: list[bytes] = []
        thresholds = len(MaxBoxAccV2().thresholds)
        for raw, line in lines:
            image_id = line.get("image_id")
            if image_id not in by_stem or image_id in seen:
                problem = "is listed twice" if image_id in seen else "is not being evaluated now"
                raise EvaluationError(
                    f"{per_image}: image {image_id} {problem}; the file belongs to another run "
                    "(give another `per_image` file)"
                )
            seen.add(image_id)
            if line.get("error") is not None:
                continue
            kept.append(raw)
            found = {}
            if self.options.metrics.maxboxacc:
                ious = line.get("maxboxacc_ious")
                if ious is None or len(ious) != thresholds:
                    raise EvaluationError(
                        f"per-image line of {line.get('path')} has no MaxBoxAcc IoUs"
                    )
                found["maxboxacc"] = ious
            record = record_from_line(line)
            resumed.append(ScoredImage(by_stem[image_id], record.get("path"), None, record,
                                       line.get("gt_known_box"), found, resumed=True))  # fmt: skip
        if len(kept) < len(lines):
            rewrite_per_image(per_image, kept)
            logger.info("retrying %d images that failed before", len(lines) - len(kept))
        else:
            cut_to(per_image, good_end)
        if resumed:
            logger.info(
                "resuming: %d of %d images already scored in %s",
                len(resumed),
                len(items),
                per_image,
            )
        scored = {printable_path(image.annotation.image_id) for image in resumed}
        return [str(path) for path, _ in items if printable_path(path.stem) not in scored]
