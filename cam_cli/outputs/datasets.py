"""Pseudo-label datasets out of `cam-cli bbox` (`format` ``voc|yolo|coco-dataset``, `output`
``DIR``): the folders a detector trainer reads, so CAM boxes on unlabelled images become its
training set.

Layouts (``NAME``: the image's unique name, below; ``SPLIT``: `DatasetOptions.split`):

- ``voc``: ``Annotations/NAME.xml`` (``<size>``, one ``<object>`` per kept box with
  ``<name>``, ``<difficult>0``, ``<bndbox>`` in VOC's 1-based pixels), ``ImageSets/Main/SPLIT.txt``
  and ``JPEGImages/NAME.ext``;
- ``yolo``: ``labels/NAME.txt`` (``class cx cy w h``, normalised, six decimals),
  ``images/NAME.ext`` and ``data.yaml`` (``path``, ``train``, ``val``, ``nc``, ``names``);
- ``coco-dataset``: ``annotations/instances_SPLIT.json`` (images with width and height,
  categories ``id`` = class index + 1, annotations with ``bbox`` x, y, w, h, ``area``,
  ``iscrowd`` 0 and the CAM ``score`` as an extra field) and ``images/NAME.ext``.

The images are never copied: ``JPEGImages/`` and ``images/`` hold symbolic links to them.
The folder must be new or empty (or one this command is resuming), so no label file of
someone else's is ever replaced. An image whose kept boxes are none (all
under ``min_score``) is left out of the dataset, not written as an image of nothing, which
would teach a detector that its object is background; the run says how many.

``NAME`` is the image's file stem; the second image of one stem in one run (``a/x.jpg`` and
``b/x.jpg``) is ``x-2`` (in input order, as `bbox`'s `draw` names its pictures), and every
file says which image it is: VOC's ``<path>``, COCO's ``cam_cli_path``, the link's target.

The folder obeys the rules of every resumable output: each file written atomically, one
writer at a time (`files.lock.FolderLock`), never over an input, and resumable: the journal
``.cam-cli-dataset.jsonl`` holds the run's identity (model, settings, inputs) and one line per
image done; a run with the same identity skips those images, one with another is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from cam_cli.data.classes import ClassInfo
from cam_cli.errors import InputFileError, SetupError
from cam_cli.files.atomic import temp_path, write_text_atomic
from cam_cli.files.checks import check_output_dir, check_outputs_spare_inputs, printable_path
from cam_cli.files.lock import FolderLock
from cam_cli.files.reading import json_lines
from cam_cli.inference.results import ImageResult
from cam_cli.outputs.draw import output_stem
from cam_cli.outputs.writers import json_line
from cam_cli.settings import DatasetFormat, LabelBy, choices

DATASET_FORMATS = choices(DatasetFormat)
LABEL_BY = choices(LabelBy)
JOURNAL = ".cam-cli-dataset.jsonl"
JOURNAL_VERSION = 1
IMAGE_DIRS = {"voc": "JPEGImages", "yolo": "images", "coco-dataset": "images"}


@dataclass(frozen=True)
class DatasetOptions:
    """A pseudo-label dataset to write: its format (`DATASET_FORMATS`), folder ``out``, the
    boxes kept (each prediction of the run, top-1 unless `bbox` was asked for more, whose
    score is at least ``min_score``), the class labels (``label_by``: wnid, name or index) and
    the split its lists name."""

    fmt: str
    out: str | Path
    min_score: float | None = None
    label_by: str = LabelBy.name.value
    split: str = "train"

    def check(self) -> None:
        """The options alone, before anything is read: `SetupError` naming the argument."""
        if self.fmt not in DATASET_FORMATS:
            raise SetupError(f"`format` {self.fmt!r}: not one of {', '.join(DATASET_FORMATS)}")
        if self.label_by not in LABEL_BY:
            raise SetupError(f"`label_by` must be one of {', '.join(LABEL_BY)}")
        if self.min_score is not None and not 0 <= self.min_score <= 1:
            raise SetupError(f"`min_score` must be in 0 .. 1, not {self.min_score}")
        check_output_dir(self.out, "`output`")


def class_labels(classes: Sequence[ClassInfo], label_by: str) -> list[str]:
    """Each class's label as the dataset names it; `SetupError` when a class has none (a model
    without wnids asked for wnids)."""
    labels = []
    for info in classes:
        label = {"wnid": info.wnid, "name": info.name, "index": str(info.index)}[label_by]
        if not label:
            raise SetupError(
                f"`label_by` {label_by}: class {info.index} of the model has no {label_by} "
                "(give the class list with `classes_file`, or label by index)"
            )
        labels.append(label)
    return labels


def unique_names(paths: Sequence[str], known: Mapping[str, str]) -> dict[str, str]:
    """Each image's NAME: its name in the journal (a resumed run), else its stem made unique
    in input order (`outputs.draw.output_stem`)."""
    taken = set(known.values())
    return {path: known.get(path) or output_stem(path, taken) for path in paths}


class DatasetWriter:
    """Writes one dataset folder as images are boxed: `planned` checks and locks it before
    any work, `write` adds one image, `close` writes the lists."""

    def __init__(
        self,
        options: DatasetOptions,
        classes: Sequence[ClassInfo],
        paths: Sequence[str],
        identity: Mapping[str, Any],
        inputs: Mapping[str, Any],
    ) -> None:
        options.check()
        self.options, self.fmt, self.out = options, options.fmt, Path(options.out)
        self.labels = class_labels(classes, options.label_by)
        self.identity = {
            "cam_cli_dataset": JOURNAL_VERSION,
            "format": self.fmt,
            "label_by": options.label_by,
            "min_score": options.min_score,
            "split": options.split,
            "inputs": hashlib.sha256("\n".join(paths).encode("utf-8", "surrogateescape"))
            .hexdigest(),
            **identity,
        }  # fmt: skip
        self.lock = FolderLock(self.out, "`output`")
        self.out.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            self.entries = self._resumed()
            self.names = unique_names(paths, {p: e["name"] for p, e in self.entries.items()})
            self._check_spares(inputs)
            self.journal = open(self.out / JOURNAL, "a", encoding="utf-8")  # noqa: SIM115
            if not self.entries:
                self.journal.seek(0)
                self.journal.truncate()
                self.journal.write(json_line(self.identity))
                self.journal.flush()
        except BaseException:
            self.lock.release()
            raise

    @property
    def done(self) -> set[str]:
        """The images a resumed run has already written."""
        return set(self.entries)

    # --- resume ---------------------------------------------------------------------------

    def _resumed(self) -> dict[str, dict]:
        """The journal's entries by image path, when it is of this run; an empty folder or a
        fresh one starts anew; a journal of another run, or a folder with other files and no
        journal, is refused."""
        journal = self.out / JOURNAL
        if not journal.exists():
            others = [p.name for p in self.out.iterdir() if p.name != ".cam-cli.lock"]
            if others:
                raise SetupError(
                    f"`output` {printable_path(self.out)}: not empty and not a dataset cam-cli "
                    f"is writing (it holds {printable_path(sorted(others)[0])}); give a new or "
                    "empty folder"
                )
            return {}
        entries: dict[str, dict] = {}
        try:
            lines = list(json_lines(journal, expected="a cam-cli dataset journal"))
        except InputFileError:  # a line torn by a kill: keep what is whole
            lines = _whole_lines(journal)
        if not lines or lines[0][1] != json.loads(json.dumps(self.identity)):
            raise SetupError(
                f"`output` {printable_path(self.out)}: holds a dataset of another run (other "
                "model, settings or images); give another folder, or remove it to start anew"
            )
        for number, entry in lines[1:]:
            if not _is_entry(entry):
                raise SetupError(
                    f"{printable_path(journal)}:{number}: not a line of a cam-cli dataset "
                    "journal; remove the folder to start anew"
                )
            entries[entry["path"]] = entry
        # Written anew without a line a kill left torn, so the lines appended next stay whole.
        text = "".join(json_line(value) for _, value in lines)
        write_text_atomic(text, journal, derived=True)
        return entries

    def _check_spares(self, inputs: Mapping[str, Any]) -> None:
        """No file this dataset writes may be one the run reads (an image, the weights, the
        class list): refused before any work."""
        outputs = {f"`output` ({name})": self._label_file(name) for name in self.names.values()}
        for name in self._list_files():
            outputs[f"`output` ({name.name})"] = name
        check_outputs_spare_inputs(outputs, inputs)

    # --- paths --------------------------------------------------------------------------------

    def _label_file(self, name: str) -> Path | None:
        if self.fmt == "voc":
            return self.out / "Annotations" / f"{name}.xml"
        if self.fmt == "yolo":
            return self.out / "labels" / f"{name}.txt"
        return None

    def _list_files(self) -> list[Path]:
        split = self.options.split
        if self.fmt == "voc":
            return [self.out / "ImageSets" / "Main" / f"{split}.txt"]
        if self.fmt == "yolo":
            return [self.out / "data.yaml"]
        return [self.out / "annotations" / f"instances_{split}.json"]

    # --- one image ----------------------------------------------------------------------------

    def kept(self, result: ImageResult) -> list[dict]:
        """The image's boxes that become labels: each prediction scoring at least
        ``min_score``, as ``{class_index, label, box, score}``."""
        least = self.options.min_score
        return [
            {"class_index": p.class_index, "label": self.labels[p.class_index],
             "box": [int(v) for v in p.box], "score": float(p.score)}
            for p in result.predictions
            if least is None or p.score >= least
        ]  # fmt: skip

    def write(self, result: ImageResult) -> int:
        """One boxed image: its link and label file, then its journal line. The number of
        boxes kept (0: the image is left out). OSError or ValueError naming the file."""
        name = self.names[result.path]
        boxes = self.kept(result)
        suffix = Path(result.path).suffix.lower()
        entry: dict[str, Any] = {"path": result.path, "name": name, "file": name + suffix,
                                 "width": result.width, "height": result.height,
                                 "boxes": boxes}  # fmt: skip
        if boxes:
            self._link(result.path, self.out / IMAGE_DIRS[self.fmt] / (name + suffix))
            label_file = self._label_file(name)
            if label_file is not None:
                label_file.parent.mkdir(parents=True, exist_ok=True)
                text = voc_xml(entry) if self.fmt == "voc" else yolo_lines(entry)
                write_text_atomic(text, label_file, derived=True)
        self.journal.write(json_line(entry))
        self.journal.flush()
        self.entries[result.path] = entry
        return len(boxes)

    def _link(self, source: str, target: Path) -> None:
        """``target`` a symbolic link to the image ``source``; an image already there (the
        dataset made where its images are) is left as it is; any other file is refused."""
        source_path = Path(os.path.abspath(source))
        if os.path.lexists(target):
            if target.exists() and os.path.samefile(target, source_path):
                return
            if not target.is_symlink():
                raise ValueError(
                    f"{printable_path(target)}: another file is there; refusing to replace it "
                    "with a link to the image"
                )
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = temp_path(target)
        os.symlink(source_path, temporary)
        os.replace(temporary, target)

    # --- the lists ----------------------------------------------------------------------------

    def close(self) -> tuple[int, int]:
        """Writes the lists (every image done, this run's and a resumed one's); the images
        and boxes in the dataset. Releases the lock."""
        try:
            self.journal.close()
            listed = [e for e in self.entries.values() if e["boxes"]]
            listed.sort(key=lambda e: e["name"])
            (target,) = self._list_files()
            target.parent.mkdir(parents=True, exist_ok=True)
            if self.fmt == "voc":
                text = "".join(f"{e['name']}\n" for e in listed)
            elif self.fmt == "yolo":
                text = data_yaml(self.out, self.labels)
            else:
                text = json.dumps(coco_document(listed, self.labels), separators=(",", ":"))
            write_text_atomic(text, target, derived=True)
            return len(listed), sum(len(e["boxes"]) for e in listed)
        finally:
            self.lock.release()


def _is_entry(entry: object) -> bool:
    """A journal line as `DatasetWriter.write` writes it (the lists are made from them)."""
    if not isinstance(entry, dict):
        return False
    text = all(isinstance(entry.get(key), str) for key in ("path", "name", "file"))
    sizes = all(isinstance(entry.get(key), int) and entry[key] > 0 for key in ("width", "height"))
    boxes = entry.get("boxes")
    return text and sizes and isinstance(boxes, list) and all(
        isinstance(box, dict) and isinstance(box.get("class_index"), int)
        and isinstance(box.get("label"), str) and isinstance(box.get("score"), float | int)
        and isinstance(box.get("box"), list) and len(box["box"]) == 4
        and all(isinstance(v, int) for v in box["box"])
        for box in boxes
    )  # fmt: skip


def _whole_lines(journal: Path) -> list[tuple[int, Any]]:
    """The journal's lines up to the first that does not parse (a kill mid-line)."""
    whole = []
    try:
        for number, value in json_lines(journal):
            whole.append((number, value))
    except InputFileError:
        pass
    return whole


# --- the formats ------------------------------------------------------------------------------


def voc_xml(entry: Mapping[str, Any]) -> str:
    """One Pascal VOC annotation: boxes in 1-based inclusive pixels (cam-cli's 0-based + 1)."""
    objects = "".join(
        "  <object>\n"
        f"    <name>{escape(box['label'])}</name>\n"
        "    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n"
        "    <difficult>0</difficult>\n"
        f"    <score>{box['score']:.6f}</score>\n"
        "    <bndbox>\n"
        + "".join(
            f"      <{tag}>{value + 1}</{tag}>\n"
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box["box"], strict=True)
        )
        + "    </bndbox>\n  </object>\n"
        for box in entry["boxes"]
    )
    path = os.path.abspath(entry["path"])
    return (
        "<annotation>\n"
        f"  <folder>{IMAGE_DIRS['voc']}</folder>\n"
        f"  <filename>{escape(_text(entry['file']))}</filename>\n"
        f"  <path>{escape(_text(path))}</path>\n"
        "  <source><database>cam-cli pseudo-labels</database></source>\n"
        f"  <size><width>{entry['width']}</width><height>{entry['height']}</height>"
        "<depth>3</depth></size>\n"
        "  <segmented>0</segmented>\n"
        f"{objects}</annotation>\n"
    )


def yolo_lines(entry: Mapping[str, Any]) -> str:
    """``class cx cy w h`` a box: the box's pixels ``xmin .. xmax`` cover ``[xmin, xmax + 1)``
    of the image's width, so ``cx = (xmin + xmax + 1) / 2 / width``, ``w = (xmax - xmin + 1)
    / width``; six decimals."""
    width, height = entry["width"], entry["height"]
    lines = []
    for box in entry["boxes"]:
        x0, y0, x1, y1 = box["box"]
        cx, cy = (x0 + x1 + 1) / 2 / width, (y0 + y1 + 1) / 2 / height
        w, h = (x1 - x0 + 1) / width, (y1 - y0 + 1) / height
        lines.append(f"{box['class_index']} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def _yaml_quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def data_yaml(out: Path, labels: Sequence[str]) -> str:
    """The ``data.yaml`` ultralytics and YOLOv5 read: the folder, its image folder as both
    splits (pseudo-labels have no held-out split), the class names by index."""
    names = "".join(f"  {index}: {_yaml_quoted(label)}\n" for index, label in enumerate(labels))
    return (
        "# cam-cli bbox --format yolo: CAM pseudo-labels\n"
        f"path: {_yaml_quoted(_text(os.path.abspath(out)))}\n"
        "train: images\nval: images\n"
        f"nc: {len(labels)}\nnames:\n{names}"
    )


def coco_document(entries: Iterable[Mapping[str, Any]], labels: Sequence[str]) -> dict:
    """A COCO instances document; category ids are class indices + 1 (0 is background to
    torchvision's detection references)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, entry in enumerate(entries, start=1):
        images.append({"id": image_id, "file_name": _text(entry["file"]),
                       "width": entry["width"], "height": entry["height"],
                       "cam_cli_path": _text(os.path.abspath(entry["path"]))})  # fmt: skip
        for box in entry["boxes"]:
            x0, y0, x1, y1 = box["box"]
            w, h = x1 - x0 + 1, y1 - y0 + 1
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": box["class_index"] + 1, "bbox": [x0, y0, w, h], "area": w * h,
                "iscrowd": 0, "score": round(box["score"], 6),
            })  # fmt: skip
    categories = [{"id": i + 1, "name": label} for i, label in enumerate(labels)]
    info = {"description": "cam-cli bbox --format coco-dataset: CAM pseudo-labels"}
    return {"info": info, "images": images, "categories": categories, "annotations": annotations}


def _text(text: str) -> str:
    """A path as text a file can hold (bytes that are not UTF-8 escaped)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
