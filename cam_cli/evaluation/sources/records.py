"""The records of a `cam-cli bbox` run as a source, no model needed (`Records`): read
(`read_prediction_records`), checked, and matched to the ground truth by file stem. They give
classification and localization error (ILSVRC rule) of ``topk`` 5 records; GT-known error,
MaxBoxAccV2 and PxAP need a model's CAM of the true class, so they are not available here."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from cam_cli.data.annotations import ImageAnnotation
from cam_cli.data.class_match import match_truth
from cam_cli.data.classes import ClassInfo, read_synset_mapping
from cam_cli.data.ground_truth import GroundTruth
from cam_cli.data.matching import (
    EvaluationError,
    check_known_labels,
    check_missing,
    check_prediction_record,
    check_record_classes,
)
from cam_cli.errors import InputFileError
from cam_cli.eval_options import EvalOptions
from cam_cli.evaluation.evaluators.base import Evaluator, ScoredImage
from cam_cli.evaluation.report_settings import box_settings
from cam_cli.evaluation.sources.base import Source
from cam_cli.files.atomic import atomic_file
from cam_cli.files.checks import printable_path, record_name
from cam_cli.files.lock import FileLock
from cam_cli.files.reading import json_lines
from cam_cli.outputs.writers import json_line
from cam_cli.settings import ModelOptions

Records_ = Iterable[Mapping[str, Any]]


def read_prediction_records(source: str | Path | IO[str]) -> Iterator[dict[str, Any]]:
    """JSON Lines records of `cam-cli bbox` from a file, ``-`` (stdin) or an open stream, read
    line by line (`files.reading.json_lines`: bounded lines and nesting, a FIFO refused)."""
    if isinstance(source, (str, Path)) and str(source) != "-":
        path = Path(source)
        if not os.path.lexists(path):
            raise EvaluationError(f"{path}: no such predictions file")
        yield from _parse_records(json_lines(path, str(path), _EXPECTED), str(path))
    else:
        stream: IO[str] = sys.stdin if isinstance(source, str | Path) else source
        name = "<stdin>" if stream is sys.stdin else "<stream>"
        yield from _parse_records(json_lines(stream, name, _EXPECTED), name)


_EXPECTED = "the JSON Lines output of `cam-cli bbox` (not `format` csv)"


def _parse_records(lines: Iterable[tuple[int, Any]], name: str) -> Iterator[dict[str, Any]]:
    try:
        for number, record in lines:
            if not isinstance(record, dict) or not isinstance(record.get("path"), str):
                raise EvaluationError(f"{name}:{number}: not a `cam-cli bbox` record (no 'path')")
            check_prediction_record(record, f"{name}:{number}")
            yield record
    except InputFileError as error:  # the reader's, naming the file and line
        raise EvaluationError(str(error)) from None


class Records(Source):
    """`cam-cli bbox` records (ideally ``topk`` 5) against the ground truth, read as they come.

    A record with ``error`` counts as wrong for every figure. The class list (CUB's
    classes.txt, or ``model.classes_file``) checks the records' class indices and wnids.
    ``per_image``: a JSON Lines file of per-image results, written atomically (fresh). Raises
    `EvaluationError` on mismatches (see `data.matching.check_missing`)."""

    mode = "predictions"

    def __init__(self, options: EvalOptions, truth: GroundTruth) -> None:
        super().__init__()
        given = options.source.predictions
        if isinstance(given, str | Path) or hasattr(given, "read"):
            self.records: Records_ = read_prediction_records(given)  # type: ignore[arg-type]
        else:
            self.records = given or []
        self.allow_missing = options.metrics.allow_missing
        self.per_image = options.outputs.per_image
        self.classes = _class_list(options, truth)
        if self.classes is None and truth.class_names:
            raise EvaluationError(
                "`annotations` names classes by name; give the model's class list "
                "(`classes_file`) to match them to the records' classes"
            )
        if self.classes is not None and truth.classes is None:
            try:
                truth = match_truth(truth, self.classes, "`annotations`")
            except ValueError as error:
                raise EvaluationError(str(error)) from None
        self.truth = truth
        self.settings = box_settings(boxes=options.metrics.boxes)

    def images(self, evaluators: Sequence[Evaluator]) -> Iterator[ScoredImage]:
        if self.per_image is None:
            yield from self._matched()
            return
        with FileLock(self.per_image), atomic_file(self.per_image) as handle:
            for image in self._matched():
                yield image
                handle.write(json_line(image.line))

    def _matched(self) -> Iterator[ScoredImage]:
        # Records name an image that is not valid UTF-8 escaped (`printable_path`): so are the ids.
        by_id = {printable_path(image_id): a for image_id, a in self.truth.annotations.items()}
        seen: dict[str, str] = {}
        matched = 0
        for number, record in enumerate(self.records, start=1):
            path = str(record.get("path"))
            stem = record_name(Path(path).stem)  # printed already, unless made in Python
            if stem in seen:
                raise EvaluationError(
                    f"two prediction records for image {stem}: {seen[stem]} and {path}"
                )
            seen[stem] = path
            annotation = by_id.get(stem)
            if annotation is None:
                self.missing.without_annotation.append(path)
                continue
            _check_record_labels(record, annotation, number)
            if self.classes is not None:
                check_known_labels([annotation], list(self.classes))
                check_record_classes(record, list(self.classes), f"record {number} ({path})")
            matched += 1
            yield ScoredImage(annotation, record.get("path"), _error(record, annotation, number),
                              record)  # fmt: skip
        self.missing.without_image.extend(sorted(s for s in by_id if s not in seen))
        check_missing(self.missing, self.allow_missing, "prediction records")
        if not matched:
            raise EvaluationError("no prediction record matches an annotation: nothing to score")


def _class_list(options: EvalOptions, truth: GroundTruth) -> Sequence[ClassInfo] | None:
    """The class list the records are checked against: CUB's, or the ``classes_file``."""
    model = options.source.model
    classes_file = model.classes_file if isinstance(model, ModelOptions) else None
    if truth.classes is not None or classes_file is None:
        return truth.classes
    try:
        return read_synset_mapping(classes_file)
    except (ValueError, OSError) as error:
        raise EvaluationError(str(error)) from None


def _error(record: Mapping[str, Any], annotation: ImageAnnotation, number: int) -> str | None:
    """Why a record has no result (it then counts as wrong); a record that has one must say
    the image's size, or its annotation must (XML)."""
    error = record.get("error")
    if error is None and not record.get("predictions"):
        return "no predictions"
    if error is not None:
        return str(error)
    if (
        record.get("width", annotation.width) is None
        or record.get("height", annotation.height) is None
    ):
        raise EvaluationError(
            f"record {number}: {record.get('path')}: record has no image width/height"
        )
    return None


def _check_record_labels(record: Mapping, annotation: ImageAnnotation, number: int) -> None:
    """Wnid labels need wnids in the predictions (a `bbox` run without classes has none)."""
    wnid_labels = any(not label.isdigit() for label in annotation.labels)
    predictions = record.get("predictions") or []
    if wnid_labels and predictions and all(p.get("wnid") is None for p in predictions):
        raise EvaluationError(
            f"record {number} ({record.get('path')}): the predictions carry no wnids but the "
            "ground truth is labelled by wnid; run `cam-cli bbox` with "
            "`classes_file` LOC_synset_mapping.txt"
        )
