"""Which image goes with which ground truth, and whether their classes agree.

Mismatches are loud, because each one silently destroys or narrows the figures: an image without
ground truth, ground truth without an image, a label the model does not know, a class list in
another order than the annotations'. Each raises `EvaluationError` (missing items may be allowed,
and are then counted in the report).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import ImageAnnotation
from cam_cli.data.images import list_images
from cam_cli.errors import EvaluationError

EXAMPLES = 5  # missing items named in error messages (the JSON report lists them all)


def match_images(
    images_dir: str | Path, annotations: Mapping[str, ImageAnnotation]
) -> tuple[list[tuple[Path, ImageAnnotation]], list[Path], list[str]]:
    """Pair every image under ``images_dir`` with its annotation by file stem.

    Works for flat ``val/*.JPEG`` and class-sorted ``val/<wnid>/*.JPEG`` alike. Returns
    ``(matched, images_without_annotation, annotations_without_image)`` so the caller can say
    loudly what was left out instead of silently evaluating a subset.
    """
    matched: list[tuple[Path, ImageAnnotation]] = []
    unmatched_images: list[Path] = []
    seen: dict[str, Path] = {}
    for path in list_images(images_dir):
        if path.stem in seen:
            raise ValueError(
                f"two images with the same name {path.stem}: {seen[path.stem]}, {path}"
            )
        seen[path.stem] = path
        annotation = annotations.get(path.stem)
        if annotation is None:
            unmatched_images.append(path)
        else:
            matched.append((path, annotation))
    missing = sorted(image_id for image_id in annotations if image_id not in seen)
    return matched, unmatched_images, missing


def check_labels_known(
    annotations: Mapping[str, ImageAnnotation] | Iterable[ImageAnnotation],
    classes: list[ClassInfo],
) -> list[str]:
    """Ground-truth labels (image labels and box labels) the model's classes do not contain,
    sorted. Non-empty means every figure would be wrong: the caller should stop loudly."""
    items = annotations.values() if isinstance(annotations, Mapping) else annotations
    wnids = {info.wnid for info in classes if info.wnid is not None}
    unknown: set[str] = set()
    for annotation in items:
        for label in (*annotation.labels, *(label for label, _ in annotation.boxes)):
            known = int(label) < len(classes) if label.isdigit() else label in wnids
            if not known:
                unknown.add(label)
    return sorted(unknown)


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
            kinds = {"images": "image", "score maps": "score map"}
            kind = kinds.get(image_word, "prediction record")
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
            "together, or pass `allow_missing` to evaluate the matched ones only "
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


def label_indices(classes: list[ClassInfo]) -> Callable[[str], int]:
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
        hint = " The model's classes have no wnids: pass `classes_file` LOC_synset_mapping.txt."
    raise EvaluationError(
        f"{len(unknown)} ground-truth labels are not classes of the model "
        f"({len(classes)} classes), e.g. {_examples(unknown)}.{hint}"
    )


def check_record_classes(record: Mapping, classes: list[ClassInfo], where: str) -> None:
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


def check_prediction_record(record: Mapping, where: str) -> None:
    """A `cam-cli bbox` record as the scorer needs it: an error record, or ``predictions`` a
    list of objects each with an integer ``class_index`` and a ``box`` of 4 integers."""
    if record.get("error") is not None:
        return
    predictions = record.get("predictions")
    if predictions is None:
        return  # scored as "no predictions", as before
    problem = None
    if not isinstance(predictions, list):
        problem = "'predictions' is not a list"
    else:
        for i, p in enumerate(predictions, start=1):
            if not isinstance(p, dict):
                problem = f"prediction {i} is not an object"
            elif not _is_int(p.get("class_index")):
                problem = f"prediction {i} has no integer 'class_index'"
            elif not (
                isinstance(p.get("box"), list)
                and len(p["box"]) == 4
                and all(_is_int(v) for v in p["box"])
            ):
                problem = f"prediction {i} has no 'box' of 4 integers [xmin, ymin, xmax, ymax]"
            if problem:
                break
    if problem:
        raise EvaluationError(
            f"{where}: not a `cam-cli bbox` record ({problem}); expected its JSON Lines output"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
