"""The records of a `cam-cli bbox` run, read and scored without any model: classification and
localization error (ILSVRC rule) of ``--topk 5`` records; GT-known and MaxBoxAccV2 need a
model's CAM of the true class, so they are not available here."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from cam_cli.data.annotations import ImageAnnotation
from cam_cli.data.classes import ClassInfo
from cam_cli.data.matching import (
    EvaluationError,
    Missing,
    check_known_labels,
    check_missing,
    check_prediction_record,
    check_record_classes,
)
from cam_cli.errors import InputFileError
from cam_cli.evaluation.resume import check_per_image_file
from cam_cli.evaluation.scoring import Scorer, box_settings, check_boxes
from cam_cli.files.atomic import atomic_file
from cam_cli.files.checks import printable_path, record_name
from cam_cli.files.lock import FileLock
from cam_cli.files.reading import json_lines
from cam_cli.outputs.writers import json_line


def read_prediction_records(source: str | Path | IO[str]) -> Iterator[dict]:
    """JSON Lines records of `cam-cli bbox` from a file, ``-`` (stdin) or an open stream, read
    line by line (`files.reading.json_lines`: bounded lines and nesting, a FIFO refused)."""
    if isinstance(source, (str, Path)) and str(source) != "-":
        path = Path(source)
        if not os.path.lexists(path):
            raise EvaluationError(f"{path}: no such predictions file")
        yield from _parse_records(json_lines(path, str(path), _EXPECTED), str(path))
    else:
        stream = sys.stdin if not hasattr(source, "read") else source
        name = "<stdin>" if stream is sys.stdin else "<stream>"
        yield from _parse_records(json_lines(stream, name, _EXPECTED), name)


_EXPECTED = "the JSON Lines output of `cam-cli bbox` (not --format csv)"


def _parse_records(lines: Iterable[tuple[int, Any]], name: str) -> Iterator[dict]:
    try:
        for number, record in lines:
            if not isinstance(record, dict) or not isinstance(record.get("path"), str):
                raise EvaluationError(f"{name}:{number}: not a `cam-cli bbox` record (no 'path')")
            check_prediction_record(record, f"{name}:{number}")
            yield record
    except InputFileError as error:  # the reader's, naming the file and line
        raise EvaluationError(str(error)) from None


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
    check_boxes(boxes, per_image=None)
    settings = {"mode": "predictions", **(settings or {}), **box_settings(boxes=boxes)}
    scorer = Scorer(maxboxacc=False, fingerprint=None, boxes=boxes)
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
                check_record_classes(record, classes, f"record {number} ({path})")
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
