"""Resumable evaluation: the per-image log of a run, and the identity that keeps runs apart.

A 50,000-image model run can be resumed: every scored image is appended (and flushed) to a JSON
Lines file; on start the lines already there are fed back into the evaluator and only the
remaining images go through the model. Each line holds everything needed to re-add it exactly
(its prediction record, image size, GT-known box, MaxBoxAccV2 IoUs), plus the run's identity,
so lines of another run are refused, never mixed in. A file that is not a per-image file at all
is never touched (`check_per_image_file`); the lines of images that failed are dropped when a
run resumes (`rewrite_per_image`), so those images are tried again and end with one line each.
The writer holds the file's lock (`files.lock.FileLock`) from reading it to its last line.

A resumed line is trusted no more than new input: each is read bounded (`files.reading`: a
line of at most 1 MiB, JSON nested at most 100 deep) and checked field by field
(`check_line`: the record's predictions as `eval`'s `predictions` checks a record, sizes positive
integers, MaxBoxAccV2 IoUs numbers in [0, 1]), so an edited line is refused naming the file and
line, never scored.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cam_cli.data.matching import check_prediction_record
from cam_cli.errors import EvaluationError, InputFileError
from cam_cli.files.atomic import atomic_file
from cam_cli.files.checks import printable_path
from cam_cli.files.reading import MAX_LINE_BYTES, loads, raw_lines
from cam_cli.outputs.writers import json_line

FSYNC_EVERY_LINES = 500  # per-image log: flush every line, fsync this often (or every 10 s)
FSYNC_EVERY_SECONDS = 10.0


def settings_fingerprint(identity: Mapping[str, Any]) -> str:
    """A short hash of what shapes every per-image result (the model's weights by content, the
    ground truth, the box settings): a run's identity, written on each of its lines."""
    text = json.dumps(dict(identity), sort_keys=True, default=str)
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


# Every per-image line `json_line` writes starts so ("path" is the evaluator's first key).
LINE_START = b'{"path": '


def check_per_image_file(path: str | Path) -> None:
    """Refuse a `per_image` FILE that exists, is not empty and is not one cam-cli wrote: its
    first line must be (or, torn by a crash, begin as) a per-image line. Such a file is never
    cut, appended to or replaced; a folder or a device is refused too."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_file():
        raise EvaluationError(f"`per_image` {printable_path(path)}: not a regular file")
    with path.open("rb") as handle:
        first = handle.readline(MAX_LINE_BYTES)  # a line of ours is a few KB
    if not first:
        return
    line = None
    if first.startswith(LINE_START):
        try:
            line = loads(first, str(path))
        except InputFileError:
            line = None
    # torn: a start of ours that is not yet JSON (a whole object, a minified JSON file that
    # happens to begin so, is judged as the line it is)
    torn_start = first.startswith(LINE_START) and not first.endswith(b"\n") and line is None
    if torn_start or (isinstance(line, dict) and isinstance(line.get("image_id"), str)):
        return
    raise EvaluationError(
        f"`per_image` {printable_path(path)}: not a cam-cli per-image file (its first line is "
        "not one of ours); refusing to change it, give another FILE"
    )


def per_image_lines(path: str | Path, fingerprint: str) -> tuple[list[tuple[bytes, dict]], int]:
    """The complete lines of a per-image file, in order, each with its raw bytes, and the size
    they fill (less than the file's after a crash left a torn last line).

    A crash can leave a last line without its newline (or, after a power cut, garbage): that
    line is not returned. A broken line anywhere else, a line written with other settings, or
    a file that is not a per-image file at all (`check_per_image_file`) stops.
    """
    path = Path(path)
    if not path.exists():
        return [], 0
    check_per_image_file(path)
    lines: list[tuple[bytes, dict]] = []
    good_end = 0
    with path.open("rb") as handle:
        previous: bytes | None = None
        number = 0
        for _, raw in raw_lines(handle, str(path)):  # one line behind, to know the last
            if previous is not None:
                line = _per_image_line(previous, number, path, fingerprint, last=False)
                assert line is not None  # only a last line may be torn; a bad other one raised
                lines.append((previous, line))
                good_end += len(previous)
            previous, number = raw if isinstance(raw, bytes) else raw.encode(), number + 1
        if previous is not None:
            line = _per_image_line(previous, number, path, fingerprint, last=True)
            if line is not None:
                lines.append((previous, line))
                good_end += len(previous)
    return lines, good_end


def read_per_image(path: str | Path, fingerprint: str) -> Iterator[dict]:
    """The complete lines of a per-image file (`per_image_lines`); a torn tail is cut away in
    place, so appending continues cleanly."""
    lines, good_end = per_image_lines(path, fingerprint)
    yield from (line for _, line in lines)
    cut_to(path, good_end)


def cut_to(path: str | Path, size: int) -> None:
    """Drop what follows the last complete line (a torn tail)."""
    path = Path(path)
    if path.exists() and size < path.stat().st_size:
        os.truncate(path, size)


def rewrite_per_image(path: str | Path, raw_lines: list[bytes]) -> None:
    """Replace the file by these of its lines (the failed images left out, to be run again),
    atomically: a crash leaves the old file or the new one."""
    with atomic_file(path, "wb") as handle:
        for raw in raw_lines:
            handle.write(raw)


def _per_image_line(
    raw: bytes, number: int, path: Path, fingerprint: str, last: bool
) -> dict[str, Any] | None:
    """Parse one line of a per-image file; None for a torn last line."""
    try:
        line = loads(raw, f"{path}:{number}") if raw.endswith(b"\n") else None
    except InputFileError:
        line = None
    if not isinstance(line, dict):
        if last:
            return None
        raise EvaluationError(f"{path}:{number}: not a per-image line; is this the right file?")
    if line.get("run") != fingerprint:
        raise EvaluationError(
            f"{path}: was written by an evaluation with other settings (model, threshold, "
            "input size, `fast`, `maxboxacc` or annotations); resume with the same settings, "
            "or give another `per_image` file"
        )
    check_line(line, f"{path}:{number}")
    return line


def check_line(line: Mapping, where: str) -> None:
    """A per-image line as resuming re-adds it, checked as strictly as new input: the record
    (`data.matching.check_prediction_record`, ranks integers), ``width``/``height`` positive
    integers or null, ``gt_known_box`` 4 integers or null, ``maxboxacc_ious`` numbers in
    [0, 1]. `EvaluationError` at ``where`` (file:line) naming the field."""
    problem = _line_problem(line)
    if problem is None:
        try:
            check_prediction_record(line, where)
        except EvaluationError:
            problem = "its 'predictions' are not those of a scored record"
    if problem is not None:
        raise EvaluationError(
            f"{where}: a per-image line with {problem}; was the file edited? Resume from an "
            "untouched file, or give another `per_image` file"
        )


def _line_problem(line: Mapping) -> str | None:
    if not isinstance(line.get("path"), str) or not isinstance(line.get("image_id"), str):
        return "no 'path' and 'image_id' strings"
    if line.get("error") is not None and not isinstance(line["error"], str):
        return "an 'error' that is not a string"
    for key in ("width", "height"):
        if line.get(key) is not None and not (_is_int(line[key]) and line[key] >= 1):
            return f"a '{key}' that is not a positive integer"
    known = line.get("gt_known_box")
    if known is not None and not (
        isinstance(known, list) and len(known) == 4 and all(_is_int(v) for v in known)
    ):
        return "a 'gt_known_box' that is not 4 integers"
    predictions = line.get("predictions")
    if predictions is not None and not isinstance(predictions, list):
        return "'predictions' that are not a list"
    for prediction in predictions or []:
        rank = prediction.get("rank") if isinstance(prediction, dict) else "none"
        if rank is not None and not _is_int(rank):  # the order predictions are scored in
            return "a prediction without an integer 'rank'"
        if prediction.get("wnid") is not None and not isinstance(prediction["wnid"], str):
            return "a prediction whose 'wnid' is not a string"
    ious = line.get("maxboxacc_ious")
    if ious is not None and not (isinstance(ious, list) and all(_is_unit(v) for v in ious)):
        return "'maxboxacc_ious' that are not IoUs (numbers in [0, 1])"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_unit(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 1
    )


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
        self.handle.write(json_line(dict(line)))
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
