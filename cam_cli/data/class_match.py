"""Ground-truth classes given by NAME (a VOC ``<name>``, a YOLO ``data.yaml`` entry, a COCO
category, a CSV ``class`` field) matched to a model's classes, so any labelled data scores a
model whose class list came from a checkpoint, a `classes_file` file or torchvision's metadata.

The labels the evaluation compares are a class's wnid, or its index as digits
(`data.annotations`): a name becomes the one its class is known by, so every evaluator keeps
reading labels as it does today. A label that is already a wnid or an index of the model is
left as it is (ILSVRC's wnids stay exactly what they were).

Names match exactly first, then ignoring case and ``_`` against spaces (``golden_retriever``,
``Golden retriever``); a name two classes share (ImageNet's two "crane"s) is refused rather
than guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import GroundTruth, ImageAnnotation, unique

SHOWN = 8  # names an error lists before "..."


def normalise_name(name: str) -> str:
    """``"Golden_Retriever"`` and ``"golden retriever"`` name the same class."""
    return " ".join(name.replace("_", " ").split()).lower()


def class_label(info: ClassInfo) -> str:
    """The label the evaluation reads for a class: its wnid, or its index where it has no
    wnid (or one of digits only, which would read as an index)."""
    if info.wnid is not None and not info.wnid.isdigit():
        return info.wnid
    return str(info.index)


class ClassMatcher:
    """Names and wnids of ``classes`` -> the label of their class (`class_label`)."""

    def __init__(self, classes: Sequence[ClassInfo]) -> None:
        self.classes = list(classes)
        self._wnids = {info.wnid: info for info in classes if info.wnid is not None}
        self._exact: dict[str, list[ClassInfo]] = {}
        self._loose: dict[str, list[ClassInfo]] = {}
        for info in classes:
            for name in {info.name, info.wnid} - {None}:
                assert name is not None
                self._exact.setdefault(name, []).append(info)
                self._loose.setdefault(normalise_name(name), []).append(info)

    def find(self, label: str) -> ClassInfo | None | list[ClassInfo]:
        """The class ``label`` names; None if none; the classes when several share the name."""
        if label in self._wnids:
            return self._wnids[label]
        if label.isdigit() and int(label) < len(self.classes):
            return self.classes[int(label)]
        for table, key in ((self._exact, label), (self._loose, normalise_name(label))):
            found = {info.index: info for info in table.get(key, [])}
            if len(found) == 1:
                return next(iter(found.values()))
            if found:
                return list(found.values())
        return None

    def label(self, label: str) -> str | None:
        found = self.find(label)
        return class_label(found) if isinstance(found, ClassInfo) else None


def match_labels(
    annotations: Mapping[str, ImageAnnotation],
    classes: Sequence[ClassInfo],
    source: str,
    strict: bool = True,
) -> dict[str, ImageAnnotation]:
    """``annotations`` with every label the model's class label (new objects; the caller's
    are left as they were). ``strict``: a name no class has, or one several classes share, is
    a ValueError naming them all (up to `SHOWN`) and ``source``; otherwise such labels are
    left as they are, for the evaluation's own check to report."""
    matcher = ClassMatcher(classes)
    labels = {label for a in annotations.values() for label in _labels(a)}
    mapping: dict[str, str] = {}
    unknown, ambiguous = [], []
    for label in sorted(labels):
        found = matcher.find(label)
        if isinstance(found, ClassInfo):
            mapping[label] = class_label(found)
        elif isinstance(found, list):
            ambiguous.append(f"{label} (classes {', '.join(str(c.index) for c in found)})")
        else:
            unknown.append(label)
    if strict and unknown:
        raise ValueError(
            f"{source}: {len(unknown)} class name(s) are not classes of the model: "
            f"{_listed(unknown)}; the model's {len(classes)} classes are "
            f"{_listed([_describe(c) for c in classes])} (give the class list with `classes_file`)"
        )
    if strict and ambiguous:
        raise ValueError(
            f"{source}: class name(s) shared by several classes of the model: "
            f"{_listed(ambiguous)}; name them by wnid or index"
        )
    if all(mapping.get(label, label) == label for label in labels):
        return dict(annotations)
    return {key: _relabelled(a, mapping) for key, a in annotations.items()}


def _labels(annotation: ImageAnnotation) -> Iterable[str]:
    yield from annotation.labels
    yield from (label for label, _ in annotation.boxes)


def _relabelled(annotation: ImageAnnotation, mapping: Mapping[str, str]) -> ImageAnnotation:
    boxes = tuple((mapping.get(label, label), box) for label, box in annotation.boxes)
    labels = unique(mapping.get(label, label) for label in annotation.labels)
    return replace(annotation, labels=labels, boxes=boxes)


def _describe(info: ClassInfo) -> str:
    known = info.name or info.wnid
    return f"{info.index}: {known}" if known else str(info.index)


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f", ... ({len(items)} in all)" if len(items) > SHOWN else "")


def match_truth(truth: GroundTruth, classes: Sequence[ClassInfo], source: str) -> GroundTruth:
    """``truth`` with its labels matched to ``classes`` once the model's classes are known:
    class names (``truth.class_names``) strictly (`match_labels`), ILSVRC's labels leniently
    (wnids and indices stay what they are; a class name among them is matched too)."""
    strict = truth.class_names
    annotations = match_labels(truth.annotations, classes, source, strict=strict)
    if annotations is truth.annotations or (not strict and annotations == truth.annotations):
        return truth
    return replace(truth, annotations=annotations, class_names=False)
