"""Writing results: JSON Lines (default), CSV or COCO JSON, to stdout or atomically to a file.

A file output is written to a temporary sibling and renamed into place when the run ends, so a
reader never sees a half-written file under the final name. JSON is always strict (no NaN), and
a path that is not valid UTF-8 is written escaped (`files.checks.printable_path`).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from cam_cli.errors import SetupError
from cam_cli.files.atomic import atomic_file, named_errors
from cam_cli.files.checks import printable, printable_path
from cam_cli.settings import BboxFormat, DatasetFormat, OutputFormat, choices

CSV_COLUMNS = ["path", "width", "height", "rank", "class_index", "wnid", "name", "score",
               "xmin", "ymin", "xmax", "ymax", "error"]  # fmt: skip


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's "CSV
# injection"): a file named "=HYPERLINK(...).jpg" must stay text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A text cell of a CSV output, neutralised for spreadsheets: one that starts like a
    formula gets a leading ``'`` (shown by no spreadsheet, read back as text). Numbers and
    other text are written as they are; JSON outputs are never changed."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeCsvWriter:
    """`csv.writer` whose rows go through `csv_cell`: every CSV the tool writes uses it."""

    def __init__(self, handle: IO[str]) -> None:
        self._writer = csv.writer(handle)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([csv_cell(value) for value in row])


@contextmanager
def open_output(path: str | Path | IO[str] | None) -> Iterator[IO[str]]:
    """stdout for None or ``-``, an open stream as it is, otherwise an atomic file. A closed
    stdout (``cam-cli bbox ... >&-``: Python then has none) is a `SetupError`, before any
    record is made: the results would go nowhere."""
    if path is not None and not isinstance(path, str | Path):  # an open stream
        yield path
    elif path is None or str(path) == "-":
        if sys.stdout is None:
            raise SetupError("stdout is closed: give `output` FILE, or let stdout be written")
        with named_errors("<stdout>"):  # `> /dev/full`: "<stdout>: No space left on device"
            yield sys.stdout
            sys.stdout.flush()
    else:
        with atomic_file(path) as handle:
            yield handle


FORMATS = tuple(f for f in choices(BboxFormat) if f not in choices(DatasetFormat))
BOX_FORMATS = choices(OutputFormat)


def json_line(record: dict) -> str:
    """One strict JSON line (no NaN/Infinity, which JSON does not have: a ValueError instead)
    that can always be written as UTF-8: a file name that is not valid UTF-8 is written with
    its odd bytes as ``\\xNN`` (`files.checks.printable_path`)."""
    text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
        escaped = "\\\\x" in text  # a backslash before "x" (`printable_path` may escape it)
    except UnicodeEncodeError:
        escaped = True
    if escaped:  # rare: only then is the record walked
        text = json.dumps(printable(record), ensure_ascii=False, allow_nan=False)
    return text + "\n"


class CocoDocument:
    """`ImageResult.as_record()` dicts gathered into one COCO JSON document
    ``{"images", "categories", "annotations"}``; the annotations are COCO detection results
    (``image_id``, ``category_id``, ``bbox`` [x, y, w, h], ``score``), one per box, so
    pycocotools' ``COCO`` loads the document and ``loadRes`` takes its annotations.

    Our boxes are inclusive pixel boxes, so ``w = xmax - xmin + 1``; a category's id is the
    model's class index. Images that failed are left out (they are reported on stderr)."""

    def __init__(self) -> None:
        self.images: list[dict] = []
        self.categories: dict[int, dict] = {}
        self.annotations: list[dict] = []

    def add(self, record: dict) -> None:
        if "error" in record:
            return
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": printable_path(record["path"]),
                            "width": record["width"], "height": record["height"]})  # fmt: skip
        if "drawing" in record:  # `bbox`'s `draw`: the picture drawn for the image
            self.images[-1]["drawing"] = printable_path(record["drawing"])
        for p in record["predictions"]:
            category = int(p["class_index"])
            self.categories.setdefault(category, {
                "id": category, "name": p["name"] or p["wnid"] or str(category),
                "supercategory": "", "wnid": p["wnid"],
            })  # fmt: skip
            for x0, y0, x1, y1 in p.get("boxes") or [p["box"]]:
                w, h = x1 - x0 + 1, y1 - y0 + 1
                self.annotations.append({
                    "id": len(self.annotations) + 1, "image_id": image_id,
                    "category_id": category, "bbox": [x0, y0, w, h], "area": w * h,
                    "iscrowd": 0, "score": p["score"], "rank": p["rank"],
                })  # fmt: skip

    def document(self) -> dict:
        return {
            "images": self.images,
            "categories": [self.categories[k] for k in sorted(self.categories)],
            "annotations": self.annotations,
        }


class RecordWriter:
    """Streams `ImageResult.as_record()` dicts as JSON Lines or CSV (one row per prediction),
    or gathers them into one COCO document written by `close` (``fmt="coco"``). ``drawing``:
    the CSV gains a last column, ``drawing``, the picture `bbox`'s `draw` made of the image (JSON
    records carry it as they are given it)."""

    def __init__(self, handle: IO[str], fmt: str = "jsonl", drawing: bool = False) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use jsonl, csv or coco")
        self.handle = handle
        self.fmt = fmt
        self._csv = None
        self._coco = CocoDocument() if fmt == "coco" else None
        self._drawing = drawing
        if fmt == "csv":
            self._csv = SafeCsvWriter(handle)
            self._csv.writerow(CSV_COLUMNS + ["drawing"] * drawing)

    def write(self, record: dict) -> None:
        if self._coco is not None:
            self._coco.add(record)
            return
        path = record["path"] if self._csv is None else printable_path(record["path"])
        if self._csv is None:
            self.handle.write(json_line(record))
        elif "predictions" not in record:
            self._csv.writerow([path, "", "", "", "", "", "", "", "", "", "", "",
                                record["error"], *[""] * self._drawing])  # fmt: skip
        else:  # an error beside predictions (the `draw` PNG failed) is on each of its rows
            drawing = [printable_path(record.get("drawing", ""))] * self._drawing
            for p in record["predictions"]:
                self._csv.writerow([path, record["width"], record["height"], p["rank"],
                                    p["class_index"], p["wnid"] or "", p["name"] or "",
                                    p["score"], *p["box"], record.get("error", ""),
                                    *drawing])  # fmt: skip
        if self.handle is sys.stdout:
            self.handle.flush()  # keep pipelines (`bbox | eval`) streaming

    def close(self) -> None:
        """Ends the output: the COCO document is written here, all at once."""
        if self._coco is not None:
            text = json.dumps(self._coco.document(), ensure_ascii=False, allow_nan=False)
            self.handle.write(text + "\n")
            self.handle.flush()


BOX_CSV_COLUMNS = ["path", "map", "width", "height", "rank", "xmin", "ymin", "xmax", "ymax",
                   "error"]  # fmt: skip


class BoxRecordWriter:
    """Streams `cam-cli boxes` records, ``{"path", ["map",] "width", "height", "boxes"}`` or
    ``{"path", "error"}``, as JSON Lines or CSV (one row per box, ``rank`` 1 first), names
    that are not UTF-8 escaped as `RecordWriter` writes them (`files.checks.printable_path`)."""

    def __init__(self, handle: IO[str], fmt: str = "jsonl") -> None:
        if fmt not in BOX_FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use jsonl or csv")
        self.handle = handle
        self._csv = SafeCsvWriter(handle) if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(BOX_CSV_COLUMNS)

    def write(self, record: dict) -> None:
        path = printable_path(record["path"])
        if self._csv is None:
            self.handle.write(json_line(record))
        elif "error" in record:
            self._csv.writerow([path, *[""] * 8, printable_path(record["error"])])
        else:
            head = [path, record.get("map", ""), record["width"], record["height"]]
            for rank, box in enumerate(record["boxes"], start=1):
                self._csv.writerow([*head, rank, *box, ""])
        if self.handle is sys.stdout:
            self.handle.flush()
