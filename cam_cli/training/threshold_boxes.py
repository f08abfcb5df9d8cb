"""The CAM threshold's images from a few boxes a user drew, read and checked against the
classes and the disk before the first epoch.

Own data comes without ``<wnid>_boxes.txt``; a user who draws boxes on a dozen images gives
them in any ground-truth file `data.interchange` reads (a CSV ``path,class,xmin,ymin,xmax,
ymax``, Pascal VOC, YOLO, COCO), and the threshold is chosen on them exactly as on Tiny
ImageNet's training boxes (`training.threshold`). The images are found as `eval` finds them,
by file name under a folder: the box file's own folder (a VOC or YOLO root: that root), so the
file and its images move together. Classes are matched by name (`data.class_match`: the class
folder's name, or its synset name). A box whose image is not there, or whose class the run
does not train, is left out with one note each (the count and the first example): a few
hand-drawn boxes are worth using even when some name a class dropped since. A malformed file
stops the run at once, before any training, naming file and line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cam_cli.data.class_match import ClassMatcher
from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import ImageAnnotation
from cam_cli.data.images import list_images
from cam_cli.data.interchange import read_ground_truth
from cam_cli.files.reading import excerpt

BoxedImage = tuple[str, int, ImageAnnotation]  # (image path, class index, its boxes)


def images_folder(path: Path, images: object) -> Path:
    """Where the images of a box file are looked for: the reader's own (a VOC or YOLO root
    knows its images folder), else the file's folder."""
    if isinstance(images, str | Path):
        return Path(images)
    return path if path.is_dir() else path.parent


def _find_images(
    folder: Path, annotations: Mapping[str, ImageAnnotation]
) -> tuple[list[tuple[Path, ImageAnnotation]], list[str]]:
    """The images under ``folder`` the file names (by file stem), and the names not found.
    Unlike `eval`'s matching, other images may share a name (a box file kept at the top of a
    data folder sees every class's images): only two images for one NAMED stem are refused."""
    found: dict[str, Path] = {}
    for image in list_images(folder):
        if image.stem in annotations:
            if image.stem in found:
                raise ValueError(f"two images named {image.stem} under {folder}: "
                                 f"{found[image.stem]}, {image}; which one the box is of "
                                 "is unknown")  # fmt: skip
            found[image.stem] = image
    matched = [(found[stem], annotations[stem]) for stem in annotations if stem in found]
    return matched, [stem for stem in annotations if stem not in found]


def boxed_images(
    path: str | Path, classes: Sequence[ClassInfo], notes: list[str]
) -> list[BoxedImage]:
    """The images of the box file that exist and are of a class of ``classes``, each with its
    boxes of that class (the first class it names that the run trains); what is left out is
    said in ``notes``. ValueError: a malformed file, or no usable box at all."""
    path = Path(path)
    truth = read_ground_truth(path)  # names kept as written: matched below, leniently
    folder = images_folder(path, truth.images)
    matched, absent = _find_images(folder, truth.annotations)
    matcher = ClassMatcher(classes)
    chosen: list[BoxedImage] = []
    said = len(notes)
    unknown: list[str] = []
    mixed: list[str] = []
    for image, annotation in matched:
        found = {label: matcher.find(label) for label, _ in annotation.boxes}
        index = {label: info.index for label, info in found.items() if isinstance(info, ClassInfo)}
        unknown += [label for label, info in found.items() if not isinstance(info, ClassInfo)]
        if not index:
            continue
        info = classes[next(iter(index.values()))]
        if len(set(index.values())) > 1:
            mixed.append(image.stem)
        wnid = info.wnid or str(info.index)
        boxes = tuple(
            (wnid, box) for name, box in annotation.boxes if index.get(name) == info.index
        )
        chosen.append((str(image), info.index, ImageAnnotation(image.stem, (wnid,), boxes)))
    if mixed:
        notes.append(f"{len(mixed)} images of {path} have boxes of several classes (e.g. "
                     f"{excerpt(mixed[0])}); only their first class's boxes are used")  # fmt: skip
    if unknown:
        notes.append(f"{len(unknown)} class names of {path} are not (or not only one) class of "
                     f"this run (e.g. {excerpt(unknown[0])}); their boxes left out")  # fmt: skip
    if absent:
        notes.append(f"{len(absent)} images of {path} are not under {folder} (e.g. "
                     f"{excerpt(absent[0])}); their boxes left out")  # fmt: skip
    if not chosen:
        reasons = "".join(f"; {note}" for note in notes[said:])
        raise ValueError(f"{path}: no box of an image under {folder} of a class trained"
                         + reasons)  # fmt: skip
    return chosen
