"""wsolevaluation's metadata format (Choe et al., CVPR 2020, clovaai/wsolevaluation), in and out.

One folder per split holds four text files, every row keyed by the image id (the image's path
under the data root, e.g. ``val/ILSVRC2012_val_00000001.JPEG``)::

    image_ids.txt      <id>                          the images, in order
    class_labels.txt   <id>,<label>                  0-based class index (sorted wnids)
    image_sizes.txt    <id>,<width>,<height>          original pixels (empty for OpenImages)
    localization.txt   <id>,<x0>,<y0>,<x1>,<y1>       boxes: one row per box
                   or  <id>,<mask>,<ignore>          masks: one row per instance mask; the
                                                     image's one ignore mask on its first row,
                                                     the field may be empty

Read as their ``data_loaders.py`` reads them (each line with its ``\\n`` stripped, split on
commas): the last line may lack its newline; a box row is kept in file order, an image with two
boxes has two rows. Their boxes are scored with the ``+ 1`` inclusive IoU of ``evaluation.py``
(``calculate_multiple_iou``), so ``x1, y1`` are the last pixel inside the box: the same inclusive
boxes as cam-cli's, read and written unchanged. (Their own CUB metadata was made as
``x + w, y + h`` from CUB's floats, one pixel more than `annotations.cub_box`'s inclusive box;
converting CUB here writes cam-cli's box, so the round trip is exact.)

Two things cam-cli adds: blank lines and a ``\\r`` before the newline are tolerated, and every
malformed row is refused with its file and line (theirs fails with a bare unpacking error).
An image id (and a mask path) must be a relative path that stays below its root: an absolute
one, or one with a ``..`` part, is refused, so no file outside the folders given is ever read.

Cost: one pass over each file, line by line (`files.reading.text_lines`: a line of at most
1 MiB, a FIFO refused), every lookup in a set or a dict: linear in the number of rows (ILSVRC
train's 1.28 million ids read in seconds), memory the metadata itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from cam_cli.data.ground_truth import Box, ImageAnnotation, check_box
from cam_cli.files.reading import excerpt, text_lines

logger = logging.getLogger(__name__)

FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")


@dataclass(frozen=True)
class WsolMetadata:
    """One split's metadata. ``boxes`` or ``masks`` is filled, as localization.txt holds."""

    image_ids: tuple[str, ...]
    class_labels: Mapping[str, int]
    image_sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # (width, height)
    boxes: Mapping[str, tuple[Box, ...]] = field(default_factory=dict)
    masks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ignore: Mapping[str, str | None] = field(default_factory=dict)  # None: no ignore mask

    @property
    def kind(self) -> str:
        """``"masks"`` (OpenImages30k) or ``"boxes"`` (ILSVRC, CUB; also labels only)."""
        return "masks" if self.masks else "boxes"


def _rows(path: Path, fields: int | tuple[int, ...]) -> Iterator[tuple[str, list[str]]]:
    """``(where, fields)`` of every non-blank line, split on commas as their loaders do."""
    allowed = (fields,) if isinstance(fields, int) else fields
    for number, line in text_lines(path):
        text = line.rstrip("\r")
        if not text.strip():
            continue
        parts = text.split(",")
        where = f"{path}:{number}"
        if len(parts) not in allowed:
            wanted = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{where}: expected {wanted} comma-separated fields, got {len(parts)}")
        if not parts[0]:
            raise ValueError(f"{where}: empty image id")
        yield where, parts


def check_relative(name: str, where: str, what: str = "path") -> None:
    """A path of the metadata (an image id, a mask path) must stay below the root it is read
    from: not absolute (on any platform), no ``..`` part. ValueError at ``where`` otherwise."""
    if ".." not in name and not name.startswith(("/", "\\")) and ":" not in name:
        return  # nearly every name: no path objects made
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in windows.parts:
        raise ValueError(
            f"{where}: {what} {excerpt(name)} leaves the data root (absolute, or with '..'); "
            "metadata paths are relative to it"
        )


def _int(text: str, where: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{where}: {what} is not an integer: {excerpt(text)}") from None


def read_wsol_metadata(directory: str | Path) -> WsolMetadata:
    """The metadata of one split (a folder with the four files; image_sizes.txt may be empty,
    as OpenImages' is). Every id of image_ids.txt needs a class label. Rows of ids that
    image_ids.txt does not list are left out, as their evaluators leave them out (a trimmed
    image_ids.txt evaluates a subset); a note says how many."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a directory (expected wsolevaluation metadata)")
    for name in FILES:
        if not (directory / name).is_file():
            raise ValueError(f"{directory}: missing {name} (wsolevaluation metadata has {FILES})")

    ids: dict[str, str] = {}  # id -> where: in file order, looked up in constant time
    for where, (image_id,) in _rows(directory / "image_ids.txt", 1):
        check_relative(image_id, where, "image id")  # the other files' rows must be of these
        if image_id in ids:
            raise ValueError(f"{where}: image id {excerpt(image_id)} is listed twice")
        ids[image_id] = where
    if not ids:
        raise ValueError(f"{directory / 'image_ids.txt'}: no image ids")
    known = ids.keys()

    unlisted: dict[str, int] = {}

    def check_known(image_id: str, where: str) -> bool:
        if image_id in known:
            return True
        name = where.rsplit(":", 1)[0]
        unlisted[name] = unlisted.get(name, 0) + 1
        return False

    labels: dict[str, int] = {}
    for where, (image_id, label) in _rows(directory / "class_labels.txt", 2):
        if not check_known(image_id, where):
            continue
        if image_id in labels:
            raise ValueError(
                f"{where}: a second class label for {excerpt(image_id)} (one per image)"
            )
        labels[image_id] = _int(label, where, "the class label")
        if labels[image_id] < 0:
            raise ValueError(f"{where}: negative class label {labels[image_id]}")
    unlabelled = [image_id for image_id in ids if image_id not in labels]
    if unlabelled:
        raise ValueError(
            f"{directory / 'class_labels.txt'}: no label for {len(unlabelled)} image(s), "
            f"e.g. {excerpt(unlabelled[0])}"
        )

    sizes: dict[str, tuple[int, int]] = {}
    for where, (image_id, width, height) in _rows(directory / "image_sizes.txt", 3):
        if not check_known(image_id, where):
            continue
        size = (_int(width, where, "the width"), _int(height, where, "the height"))
        if min(size) < 1:
            raise ValueError(f"{where}: image size {size[0]}x{size[1]} is not positive")
        sizes[image_id] = size

    boxes: dict[str, list[Box]] = {}
    masks: dict[str, list[str]] = {}
    ignore: dict[str, str | None] = {}
    for where, parts in _rows(directory / "localization.txt", (3, 5)):
        image_id = parts[0]
        if not check_known(image_id, where):
            continue
        if len(parts) == 5:
            if masks:
                raise ValueError(f"{where}: a box row in a localization.txt of mask rows")
            box = tuple(_int(v, where, "a box coordinate") for v in parts[1:])
            boxes.setdefault(image_id, []).append(check_box(box, where))
            continue
        if boxes:
            raise ValueError(f"{where}: a mask row in a localization.txt of box rows")
        mask, ignore_path = parts[1], parts[2]
        if not mask:
            raise ValueError(f"{where}: empty mask path")
        check_relative(mask, where, "mask path")
        if ignore_path:
            check_relative(ignore_path, where, "ignore mask path")
        if image_id not in masks:
            masks[image_id] = [mask]
            ignore[image_id] = ignore_path or None  # empty: no ignore region (wsolevaluation #33)
            continue
        masks[image_id].append(mask)
        if ignore_path and ignore_path != ignore[image_id]:
            raise ValueError(
                f"{where}: a second ignore mask for {excerpt(image_id)} (one per image, on its "
                "first row)"
            )
    for name, count in unlisted.items():
        logger.info("%s: %d row(s) of images not in image_ids.txt, left out", name, count)
    if boxes and sizes:
        unsized = [image_id for image_id in boxes if image_id not in sizes]
        if unsized:
            raise ValueError(
                f"{directory / 'image_sizes.txt'}: no size for {excerpt(unsized[0])}, which has "
                "boxes"
            )
    return WsolMetadata(
        image_ids=tuple(ids),
        class_labels=labels,
        image_sizes=sizes,
        boxes={k: tuple(v) for k, v in boxes.items()},
        masks={k: tuple(v) for k, v in masks.items()},
        ignore=ignore,
    )


def annotations_from_metadata(metadata: WsolMetadata) -> dict[str, ImageAnnotation]:
    """cam-cli's ground truth, keyed by file stem as every reader's. Labels are the class
    index as a string (matched to predictions by index, as CUB's), boxes are unchanged.

    Ids that share a file stem (ImageNetV2's ``val2/0/0.jpeg``, ``val2/1/0.jpeg``) are refused:
    cam-cli matches images to ground truth by stem."""
    annotations: dict[str, ImageAnnotation] = {}
    for image_id in metadata.image_ids:
        stem = Path(image_id).stem
        if stem in annotations:
            first = next(i for i in metadata.image_ids if Path(i).stem == stem)
            raise ValueError(
                f"image ids {first} and {image_id} share the file stem {stem}; cam-cli matches "
                "images to their ground truth by file stem"
            )
        label = str(metadata.class_labels[image_id])
        width, height = metadata.image_sizes.get(image_id, (None, None))
        annotations[stem] = ImageAnnotation(
            image_id=stem,
            labels=(label,),
            boxes=tuple((label, box) for box in metadata.boxes.get(image_id, ())),
            width=width,
            height=height,
        )
    return annotations


def image_paths(metadata: WsolMetadata, root: str | Path) -> dict[str, Path]:
    """``{stem: root/id}``, what `evaluate_model` takes as its images (as CUB's)."""
    return {Path(image_id).stem: Path(root) / image_id for image_id in metadata.image_ids}


def metadata_texts(metadata: WsolMetadata) -> dict[str, str]:
    """The four files' text, rows in image_ids order, each line ending in ``\\n``."""
    ids = metadata.image_ids
    texts = {
        "image_ids.txt": "".join(f"{i}\n" for i in ids),
        "class_labels.txt": "".join(f"{i},{metadata.class_labels[i]}\n" for i in ids),
        "image_sizes.txt": "".join(
            f"{i},{metadata.image_sizes[i][0]},{metadata.image_sizes[i][1]}\n"
            for i in ids
            if i in metadata.image_sizes
        ),
    }
    if metadata.masks:
        rows = []
        for i in ids:
            for n, mask in enumerate(metadata.masks.get(i, ())):
                ignore = (metadata.ignore.get(i) or "") if n == 0 else ""
                rows.append(f"{i},{mask},{ignore}\n")
    else:
        rows = [
            f"{i},{b[0]},{b[1]},{b[2]},{b[3]}\n" for i in ids for b in metadata.boxes.get(i, ())
        ]
    texts["localization.txt"] = "".join(rows)
    return texts


def write_wsol_metadata(metadata: WsolMetadata, directory: str | Path) -> list[Path]:
    """Write the four files into ``directory`` (created), each atomically; returns their paths."""
    from cam_cli.files.atomic import write_text_atomic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in metadata_texts(metadata).items():
        write_text_atomic(text, directory / name, derived=True)
        written.append(directory / name)
    return written
