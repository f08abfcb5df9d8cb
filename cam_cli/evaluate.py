"""Localization evaluation: a model over annotated images, or the records of a `cam-cli bbox` run.

Two doors, one report (a JSON-serialisable dict, `format_report` makes the table for people):

- `evaluate_model(loaded, images, annotations, ...)` runs the model and scores every image:
  top-1/top-5 classification and localization error (ILSVRC rule), GT-known localization error
  (the box from the true class's CAM, asked of the pipeline as an extra class) and, on request,
  MaxBoxAccV2 from the true class's CAM at network input resolution.
- `evaluate_predictions(records, annotations, ...)` scores the JSON Lines of
  ``cam-cli bbox --topk 5`` without any model; GT-known and MaxBoxAccV2 need a model's CAM of the
  true class, so they are not available there.

Mismatches are loud, because each one silently destroys or narrows the figures: an image without
ground truth, ground truth without an image, a label the model does not know, a class list in
another order than the annotations' all raise `EvaluationError` (missing items may be allowed,
and are then counted in the report).

A 50,000-image model run can be resumed: with ``per_image`` every scored image is appended (and
flushed) to a JSON Lines file; on start the lines already there are fed back into the evaluator
and only the remaining images go through the model. Each line holds everything needed to re-add
it exactly (its prediction record, image size, GT-known box, MaxBoxAccV2 IoUs), plus a
fingerprint of the settings, so lines of a run with other settings are refused, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from cam_cli.annotations import ImageAnnotation, check_labels_known, match_images
from cam_cli.classes import ClassInfo
from cam_cli.metrics import LocalizationEvaluator, MaxBoxAccV2, format_table

if TYPE_CHECKING:
    from cam_cli.loading import LoadedModel

EXAMPLES = 5  # missing items named in error messages (the JSON report lists them all)
FSYNC_EVERY_LINES = 500  # per-image log: flush every line, fsync this often (or every 10 s)
FSYNC_EVERY_SECONDS = 10.0
GT_KNOWN_NEEDS_MODEL = "n/a (needs a model)"
# Settings that do not change any per-image result, so a resumed run may change them.
NOT_IN_FINGERPRINT = frozenset(
    {"device", "batch_size", "workers", "images", "allow_missing", "per_image", "json"}
)


class EvaluationError(ValueError):
    """Inputs that do not fit together (every figure would be wrong or silently partial).
    The message says what is wrong and what to do; the CLI turns it into exit code 2."""


# --- missing items ----------------------------------------------------------------------------


@dataclass
class Missing:
    """Items on one side only: images (or prediction records) without ground truth, and ground
    truth without an image (or record). Left out only with ``allow_missing``, and then counted."""

    without_annotation: list[str] = field(default_factory=list)
    without_image: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.without_annotation) + len(self.without_image)

    def describe(self, image_word: str = "images") -> str:
        parts = []
        if self.without_annotation:
            parts.append(
                f"{len(self.without_annotation)} {image_word} have no annotation "
                f"(e.g. {_examples(self.without_annotation)})"
            )
        if self.without_image:
            kind = "image" if image_word == "images" else "prediction record"
            parts.append(
                f"{len(self.without_image)} annotations have no {kind} "
                f"(e.g. {_examples(self.without_image)})"
            )
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {
            "images_without_annotation": len(self.without_annotation),
            "annotations_without_image": len(self.without_image),
            "left_out": self.count,
            "images_without_annotation_list": list(self.without_annotation),
            "annotations_without_image_list": list(self.without_image),
        }


def _examples(items: Sequence[str], shown: int = EXAMPLES) -> str:
    more = f", ... ({len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def check_missing(missing: Missing, allow_missing: bool, image_word: str = "images") -> None:
    """Stop unless every item has its counterpart or the user said missing ones are fine."""
    if missing.count and not allow_missing:
        raise EvaluationError(
            f"{missing.describe(image_word)}. Check that the images and the annotations belong "
            "together, or pass --allow-missing to evaluate the matched ones only "
            "(the report then says how many were left out)."
        )


def pair_images(
    images: str | Path | Mapping[str, str | Path], annotations: Mapping[str, ImageAnnotation]
) -> tuple[list[tuple[Path, ImageAnnotation]], Missing]:
    """Images with their annotation, by file stem. ``images`` is a folder (flat or per-class
    sub-folders) or a ``{stem: path}`` mapping such as CUB's ``images.txt`` gives."""
    if isinstance(images, Mapping):
        matched, without_image = [], []
        for stem, path in sorted(images.items()):
            if stem not in annotations:
                continue  # CUB lists images of all splits; only the annotated ones count
            if Path(path).is_file():
                matched.append((Path(path), annotations[stem]))
            else:
                without_image.append(str(path))
        without_image += sorted(stem for stem in annotations if stem not in images)
        return matched, Missing([], without_image)
    try:
        matched, unmatched, without_image = match_images(images, annotations)
    except ValueError as error:  # not a folder, two images with one name
        raise EvaluationError(str(error)) from None
    return matched, Missing([str(p) for p in unmatched], list(without_image))


# --- classes ----------------------------------------------------------------------------------


def _norm_name(name: str) -> str:
    """``"001.Black_footed_Albatross"`` and ``"black footed albatross"`` name the same class."""
    head, dot, tail = name.partition(".")
    if dot and head.isdigit():
        name = tail
    return name.replace("_", " ").strip().lower()


def check_class_order(model: list[ClassInfo], reference: list[ClassInfo], source: str) -> list:
    """The class list to evaluate with, when the annotations' labels are class indices (CUB).

    A model that knows nothing of its classes (plain weights) takes the annotations' list; a
    model with its own list must have the same classes in the same order (by wnid, else by
    name), or every label index would mean another class.
    """
    if len(model) != len(reference):
        raise EvaluationError(
            f"the model has {len(model)} classes but {source} lists {len(reference)}"
        )
    if all(c.wnid is None and c.name is None for c in model):
        return list(reference)
    differ = []
    for own, ref in zip(model, reference, strict=True):
        if own.wnid and ref.wnid:
            same = own.wnid == ref.wnid
        elif own.name and ref.name:
            same = _norm_name(own.name) == _norm_name(ref.name)
        else:
            same = True  # nothing to compare
        if not same:
            differ.append(f"{own.index}: {own.wnid or own.name} vs {ref.wnid or ref.name}")
    if differ:
        raise EvaluationError(
            f"the model's class order differs from {source} ({len(differ)} of {len(model)} "
            f"classes differ, e.g. class {_examples(differ, 3)}); the label indices would name "
            "other classes"
        )
    return list(model)


def _label_indices(classes: list[ClassInfo]) -> Callable[[str], int]:
    """Ground-truth label -> model class index (all-digit labels are indices, others wnids)."""
    by_wnid = {c.wnid: c.index for c in classes if c.wnid is not None}
    return lambda label: int(label) if label.isdigit() else by_wnid[label]


def check_known_labels(annotations: Iterable[ImageAnnotation], classes: list[ClassInfo]) -> None:
    """Every ground-truth label must be one of the model's classes, or every figure is wrong."""
    unknown = check_labels_known(list(annotations), classes)
    if not unknown:
        return
    hint = ""
    if any(not label.isdigit() for label in unknown) and all(c.wnid is None for c in classes):
        hint = " The model's classes have no wnids: pass --classes LOC_synset_mapping.txt."
    raise EvaluationError(
        f"{len(unknown)} ground-truth labels are not classes of the model "
        f"({len(classes)} classes), e.g. {_examples(unknown)}.{hint}"
    )


def _check_record_classes(record: Mapping, classes: list[ClassInfo], where: str) -> None:
    """A prediction's (class_index, wnid, name) must agree with the given class list, or the
    run that wrote it used another class order."""
    for prediction in record.get("predictions") or []:
        index = prediction.get("class_index")
        if not isinstance(index, int) or not 0 <= index < len(classes):
            raise EvaluationError(f"{where}: class_index {index!r} is not one of the classes")
        info = classes[index]
        wnid, name = prediction.get("wnid"), prediction.get("name")
        if (wnid and info.wnid and wnid != info.wnid) or (
            not (wnid and info.wnid) and name and info.name
            and _norm_name(name) != _norm_name(info.name)
        ):  # fmt: skip
            raise EvaluationError(
                f"{where}: class {index} is {wnid or name} in the predictions but "
                f"{info.wnid or info.name} in the class list: the predictions were made with "
                "another class order"
            )


# --- per-image lines and resuming -------------------------------------------------------------


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    """A short hash of the settings that shape per-image results (see NOT_IN_FINGERPRINT)."""
    kept = {k: v for k, v in settings.items() if k not in NOT_IN_FINGERPRINT}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_from_line(line: Mapping) -> dict:
    """The `cam-cli bbox` record a per-image line was scored from (what `add` needs again)."""
    if line.get("error") is not None:
        return {"path": line.get("path"), "error": line["error"]}
    record: dict = {"path": line.get("path"), "predictions": line.get("predictions") or []}
    for key in ("width", "height"):
        if line.get(key) is not None:
            record[key] = line[key]
    return record


def read_per_image(path: str | Path, fingerprint: str) -> Iterator[dict]:
    """The complete lines of a per-image file, in order; truncates a torn tail in place.

    A crash can leave a last line without its newline (or, after a power cut, garbage): that
    line is dropped and the file cut back to the last complete line, so appending continues
    cleanly. A broken line anywhere else, or a line written with other settings, stops.
    """
    path = Path(path)
    if not path.exists():
        return
    good_end = 0
    with path.open("rb") as handle:
        previous: bytes | None = None
        number = 0
        for raw in handle:  # one line behind, to know which line is the last
            if previous is not None:
                yield _per_image_line(previous, number, path, fingerprint, last=False)
                good_end += len(previous)
            previous, number = raw, number + 1
        if previous is not None:
            line = _per_image_line(previous, number, path, fingerprint, last=True)
            if line is not None:
                yield line
                good_end += len(previous)
    if good_end < path.stat().st_size:
        os.truncate(path, good_end)


def _per_image_line(raw: bytes, number: int, path: Path, fingerprint: str, last: bool):
    """Parse one line of a per-image file; None for a torn last line."""
    try:
        line = json.loads(raw) if raw.endswith(b"\n") else None
    except ValueError:
        line = None
    if not isinstance(line, dict):
        if last:
            return None
        raise EvaluationError(f"{path}:{number}: not a per-image line; is this the right file?")
    if line.get("run") != fingerprint:
        raise EvaluationError(
            f"{path}: was written by an evaluation with other settings (model, threshold, "
            "input size, --fast, --maxboxacc or annotations); resume with the same settings, "
            "or give another --per-image file"
        )
    return line


class PerImageLog:
    """Appends per-image lines: flushed at once, fsynced every few hundred lines or seconds, so
    a crash loses at most the image being written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a", encoding="utf-8")
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def write(self, line: Mapping) -> None:
        self.handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.handle.flush()
        self._unsynced += 1
        now = time.monotonic()
        if self._unsynced >= FSYNC_EVERY_LINES or now - self._last_sync >= FSYNC_EVERY_SECONDS:
            self.sync()

    def sync(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        self.sync()
        self.handle.close()


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

    def __init__(self, maxboxacc: bool, fingerprint: str | None) -> None:
        self.evaluator = LocalizationEvaluator()
        self.maxbox = MaxBoxAccV2() if maxboxacc else None
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
        """The per-image MaxBoxAcc work (100 thresholds, every component) as a `localize`
        ``finish``: it runs beside the network, and the CAM is dropped once it is done."""
        maxbox = self.maxbox
        if maxbox is None:
            return None

        def finish(result) -> None:
            if result.extra_cams is not None:
                annotation = annotation_of[result.path]
                cam = result.extra_cams[0]
                result.analysis = maxbox.image_ious(cam, annotation, result.width, result.height)
                result.extra_cams = None

        return finish

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
        return {
            **self.evaluator.summary(),
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
        yield record


def evaluate_predictions(
    records: Iterable[Mapping],
    annotations: Mapping[str, ImageAnnotation],
    *,
    allow_missing: bool = False,
    classes: list[ClassInfo] | None = None,
    per_image: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict:
    """Score `cam-cli bbox` records (ideally ``--topk 5``) against ground truth; no model needed.

    Records are matched to annotations by the file stem of their ``path``. A record with
    ``error`` counts as wrong for every figure. ``classes`` (a ``--classes`` file, or CUB's
    classes.txt) lets the records' class indices and wnids be checked against a class list.
    ``per_image``: a JSON Lines file of per-image results, written atomically (fresh).
    Raises `EvaluationError` on mismatches (see `check_missing`).
    """
    from cam_cli.output import atomic_text_file

    settings = {"mode": "predictions", **(settings or {})}
    scorer = _Scorer(maxboxacc=False, fingerprint=None)
    missing = Missing()
    seen: dict[str, str] = {}
    matched: list[ImageAnnotation] = []

    def score_all(write: Callable[[dict], None] | None) -> None:
        for number, record in enumerate(records, start=1):
            path = str(record.get("path"))
            stem = Path(path).stem
            if stem in seen:
                raise EvaluationError(
                    f"two prediction records for image {stem}: {seen[stem]} and {path}"
                )
            seen[stem] = path
            annotation = annotations.get(stem)
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
        missing.without_image.extend(sorted(s for s in annotations if s not in seen))
        check_missing(missing, allow_missing, "prediction records")
        if not matched:
            raise EvaluationError("no prediction record matches an annotation: nothing to score")

    if per_image is None:
        score_all(None)
    else:
        with atomic_text_file(per_image) as handle:
            score_all(lambda line: handle.write(json.dumps(line, ensure_ascii=False) + "\n"))
    return scorer.report(missing, settings, gt_known_available=False)


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


def evaluate_model(
    loaded: LoadedModel,
    images: str | Path | Mapping[str, str | Path],
    annotations: Mapping[str, ImageAnnotation],
    *,
    classes: list[ClassInfo] | None = None,
    allow_missing: bool = False,
    threshold: float = 0.2,
    topk: int = 5,
    batch_size: int = 32,
    workers: int | None = None,
    device: str = "auto",
    fast: bool | None = None,
    compile_model: bool = False,
    maxboxacc: bool = False,
    per_image: str | Path | None = None,
    progress: bool = False,
    settings: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Run ``loaded`` (from `loading.load_model`) over annotated images and score them.

    ``images``: a folder (matched to ``annotations`` by file stem) or ``{stem: path}`` (CUB).
    ``classes``: the class list the annotation labels index (CUB's classes.txt); checked
    against the model's (a model without class names takes it). GT-known error uses the box of
    the CAM of the image's first ground-truth class; ``fast=None``: low precision where the
    hardware gains from it (as `cam-cli bbox`); ``maxboxacc`` adds MaxBoxAccV2 from that
    CAM at network input size. ``per_image``: JSON Lines of per-image results, appended as the
    run goes; an existing file is resumed (its images are not run again). ``log`` receives
    one-line progress notes for people, ``warn`` problems that do not stop the run (a failed
    ``compile_model``, after which it runs uncompiled). Raises `EvaluationError` on mismatches.
    """
    from cam_cli.pipeline import Localizer, compile_with_notes

    items, missing = pair_images(images, annotations)
    check_missing(missing, allow_missing)
    if not items:
        raise EvaluationError("no annotated image to evaluate")
    if classes is not None:
        loaded.classes = check_class_order(loaded.classes, classes, "the annotations' classes")
    check_known_labels((annotation for _, annotation in items), loaded.classes)
    has_boxes = any(annotation.boxes for _, annotation in items)
    if maxboxacc and not has_boxes:
        raise EvaluationError("--maxboxacc needs ground-truth boxes; these annotations have none")

    try:
        localizer = Localizer(loaded, topk=topk, threshold=threshold, device=device, fast=fast)
    except ValueError as error:  # threshold out of range, no CUDA
        raise EvaluationError(str(error)) from None
    settings = {
        "mode": "model",
        **(settings or {}),
        **loaded.describe(),
        "threshold": threshold,
        "topk": localizer.topk,
        "fast": localizer.fast.enabled,  # resolved: None means "where the hardware gains"
        "maxboxacc": maxboxacc,
        "device": str(localizer.device),
    }
    fingerprint = settings_fingerprint(settings) if per_image is not None else None
    scorer = _Scorer(maxboxacc, fingerprint)
    by_stem = {annotation.image_id: annotation for _, annotation in items}
    done: set[str] = set()
    if per_image is not None:
        for line in read_per_image(per_image, fingerprint):
            image_id = line.get("image_id")
            if image_id not in by_stem or image_id in done:
                problem = "is listed twice" if image_id in done else "is not being evaluated now"
                raise EvaluationError(
                    f"{per_image}: image {image_id} {problem}; the file belongs to another run "
                    "(give another --per-image file)"
                )
            scorer.readd(line, by_stem[image_id])
            done.add(image_id)
        if done and log is not None:
            log(f"resuming: {len(done)} of {len(items)} images already scored in {per_image}")

    todo = [(str(path), annotation) for path, annotation in items if path.stem not in done]
    to_index = _label_indices(loaded.classes)
    # The pipeline wants as many extra classes for every image: an image without a label
    # (scored wrong anyway) asks for class 0 and gets no GT-known box.
    true_class = {path: to_index(a.labels[0]) if a.labels else 0 for path, a in todo}
    annotation_of = dict(todo)
    if compile_model and todo:
        compile_with_notes(localizer, batch_size, log, warn)
    writer = PerImageLog(per_image) if per_image is not None and todo else None
    try:
        if todo:
            results = localizer.localize(
                [path for path, _ in todo],
                batch_size=batch_size,
                workers=workers,
                extra_classes=lambda path: [true_class[path]],
                keep_extra_cams=maxboxacc,
                progress=progress,
                finish=scorer.maxbox_finisher(annotation_of),
            )
            for result in results:
                annotation = annotation_of[result.path]
                wanted = has_boxes and annotation.labels and result.extra
                gt_known = result.extra[0].box if wanted else None
                line = scorer.add(result.as_record(), annotation, gt_known, result.analysis)
                if writer is not None:
                    writer.write(line)
    finally:
        if writer is not None:
            writer.close()
    return scorer.report(missing, settings, gt_known_available=True)


# --- the table --------------------------------------------------------------------------------


def format_report(report: Mapping, failed_shown: int = 10) -> str:
    """The table for people: what was evaluated, the figures (`metrics.format_table`), then
    what was left out and which images failed."""
    settings = report.get("settings", {})
    lines = [_describe_source(settings)]
    table = format_table(report, report.get("maxboxacc_v2"))
    if not report.get("gt_known_available", True):
        rows = table.splitlines()
        name_width = len(rows[1]) - 18  # the header: name column, then two 2+7-wide columns
        for i, row in enumerate(rows):
            if row.startswith("GT-known localization error"):
                rows[i] = f"{row[:name_width]}  {GT_KNOWN_NEEDS_MODEL}"
        table = "\n".join(rows)
    lines.append(table)
    count = report.get("min_predictions")
    if count is not None and count < 5:
        lines.append(
            f"note: some images have only {count} prediction(s); top-5 figures need "
            "`cam-cli bbox --topk 5`"
        )
    missing = report.get("missing") or {}
    if missing.get("left_out"):
        word = "prediction records" if settings.get("mode") == "predictions" else "images"
        kind = "record" if word == "prediction records" else "image"
        lines.append(
            f"left out (--allow-missing): {missing['images_without_annotation']} {word} without "
            f"annotation, {missing['annotations_without_image']} annotations without {kind}; "
            "figures are over the matched images only"
        )
    if report.get("resumed_images"):
        lines.append(f"resumed: {report['resumed_images']} images read back from --per-image")
    failed = report.get("failed") or []
    if report.get("failed_images"):
        lines.append(f"{report['failed_images']} images failed (counted as wrong):")
        lines += [f"  {item['path']}: {item['error']}" for item in failed[:failed_shown]]
        if report["failed_images"] > failed_shown:
            lines.append(f"  ... and {report['failed_images'] - failed_shown} more (see --json)")
    return "\n".join(lines)


def _describe_source(settings: Mapping) -> str:
    if settings.get("mode") == "predictions":
        head = f"predictions: {settings.get('predictions', '(records given in Python)')}"
    else:
        source = settings.get("checkpoint") or settings.get("weights") or "untrained"
        head = (
            f"model: {settings.get('arch')} ({source}), input {settings.get('input_size')}, "
            f"{settings.get('preprocessing')} preprocessing, CAM threshold "
            f"{settings.get('threshold')}{', --fast' if settings.get('fast') else ''}"
        )
    truth = settings.get("cub") or settings.get("annotations")
    return f"{head}\nground truth: {truth}" if truth else head
