"""The validation images' labels from a ground-truth file a user made (`train`'s
``val_annotations``): a CSV ``path,class,xmin,ymin,xmax,ymax``, Pascal VOC, YOLO or COCO, read
by `data.interchange` exactly as `eval` reads it.

Train's validation is top-1 accuracy each epoch (the epoch it picks for best.pt), so what it
needs from such a file is each image's class; the boxes in it are for `eval`'s `annotations`
on the trained run, which needs the CAM threshold chosen once training ends. Own data rarely
comes as ``val/<class>/`` folders: a flat folder of images with the labels a labelling tool
wrote is the common case, and the file then says which class each image is of.

Images are found as `eval` finds them, by file stem (`data.matching.match_images`): under
``DIR/val`` when the data folder has one, else beside the file (a VOC or YOLO root: under that
root). Classes are matched by name (`data.class_match`: the class folder's name, or its
synset name). A class name the run does not train stops the run before the first epoch,
naming the names: validating on fewer images than the file holds, silently, would give a
figure of another set. Images on one side only are left out with a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cam_cli.data.class_match import ClassMatcher
from cam_cli.data.classes import ClassInfo
from cam_cli.data.interchange import read_ground_truth
from cam_cli.data.matching import match_images
from cam_cli.errors import TrainError
from cam_cli.files.reading import excerpt
from cam_cli.training.threshold_boxes import images_folder

SHOWN = 5  # names an error lists


def val_images_folder(path: Path, data_dir: Path) -> Path:
    """``DIR/val`` when it is there, else the file's own folder (a VOC or YOLO root: itself)."""
    val = data_dir / "val"
    return val if val.is_dir() else images_folder(path, None)


def annotated_val(
    path: str | Path,
    fmt: str | None,
    classes: Sequence[ClassInfo],
    data_dir: str | Path,
    notes: list[str],
) -> list[tuple[str, int]]:
    """``(image path, class index)`` of every image of the file found on disk, its class the
    first one its annotation names; what is left out is said in ``notes``. TrainError: an
    unreadable or malformed file, a class the run does not train, no image found."""
    path = Path(path)
    try:
        truth = read_ground_truth(path, fmt=fmt)  # names as written, matched below
        folder = val_images_folder(path, Path(data_dir))
        matched, unmatched, absent = match_images(folder, truth.annotations)
    except (ValueError, OSError) as error:
        raise TrainError(f"`val_annotations`: {error}") from None
    matcher = ClassMatcher(classes)
    items: list[tuple[str, int]] = []
    unknown: set[str] = set()
    unlabelled = 0
    for image, annotation in matched:
        names = [*annotation.labels, *(label for label, _ in annotation.boxes)]
        if not names:
            unlabelled += 1
            continue
        found = [matcher.find(name) for name in names]
        unknown.update(n for n, f in zip(names, found, strict=True) if not isinstance(f, ClassInfo))
        first = found[0]
        if isinstance(first, ClassInfo):
            items.append((str(image), first.index))
    if unknown:
        shown = sorted(unknown)
        more = ", ..." if len(shown) > SHOWN else ""
        trained = ", ".join(_describe(info) for info in classes[:SHOWN])
        raise TrainError(
            f"`val_annotations`: {path}: {len(shown)} class name(s) are not (or not only one) "
            f"class of this run: {', '.join(excerpt(n) for n in shown[:SHOWN])}{more}; "
            f"the run's {len(classes)} classes (train/ folders) are "
            f"{trained}{', ...' if len(classes) > SHOWN else ''}"
        )
    if unlabelled:
        notes.append(f"{unlabelled} images of {path} name no class; not validated on")
    if unmatched:
        notes.append(f"{len(unmatched)} images under {folder} are not in {path} (e.g. "
                     f"{unmatched[0]}); not validated on")  # fmt: skip
    if absent:
        notes.append(f"{len(absent)} images of {path} are not under {folder} (e.g. "
                     f"{excerpt(absent[0])}); not validated on")  # fmt: skip
    if not items:
        raise TrainError(f"`val_annotations`: {path}: no image of it found under {folder}")
    return items


def _describe(info: ClassInfo) -> str:
    """A class as a user may name it: ``n01910747 (jellyfish)``, or its folder name alone."""
    wnid = info.wnid or str(info.index)
    return f"{wnid} ({info.name})" if info.name and info.name != wnid else wnid
