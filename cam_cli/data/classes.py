"""Class lists: index -> (wnid, name). Outputs carry all three, so users never juggle orders.

The source of truth is, in order: a checkpoint's own class list, a `LOC_synset_mapping.txt`
given with `classes_file`, torchvision's weight metadata (names only). ILSVRC's sorted-wnid order
(line i of `LOC_synset_mapping.txt` is class i) is the order torchvision and most checkpoints use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cam_cli.files.reading import text_lines


@dataclass(frozen=True)
class ClassInfo:
    index: int
    wnid: str | None
    name: str | None

    def as_dict(self) -> dict:
        return {"index": self.index, "wnid": self.wnid, "name": self.name}


def read_synset_mapping(path: str | Path) -> list[ClassInfo]:
    """Read ``LOC_synset_mapping.txt``: one ``wnid names`` line per class, line i = class i.

    The wnid ends at the first whitespace (a space or a tab: a tab-separated file gives the
    same classes as the space-separated original). The name is the first comma-separated
    synonym ("tench, Tinca tinca" -> "tench"), as torchvision's metadata names classes.
    """
    path = Path(path)
    classes: list[ClassInfo] = []
    for _, line in text_lines(path):  # bounded, UTF-8, a BOM dropped (`files.reading`)
        fields = line.split(None, 1)
        if not fields:
            continue
        wnid, names = fields[0], fields[1] if len(fields) > 1 else ""
        name = names.split(",")[0].strip() or wnid
        classes.append(ClassInfo(len(classes), wnid, name))
    if not classes:
        raise ValueError(f"{path}: no classes found")
    check_unique_wnids(classes, str(path))
    return classes


def check_unique_wnids(classes: list[ClassInfo], source: str) -> None:
    """Two classes with one wnid make every wnid lookup (eval's labels, `class`) ambiguous:
    ValueError naming the first one repeated. Classes without a wnid are not compared."""
    seen: set[str] = set()
    for info in classes:
        if info.wnid is not None and info.wnid in seen:
            raise ValueError(f"{source}: duplicate wnid {info.wnid} (class {info.index})")
        if info.wnid is not None:
            seen.add(info.wnid)


def classes_from_names(
    names: Sequence[str | None], wnids: Sequence[str | None] | None = None
) -> list[ClassInfo]:
    wnids = wnids or [None] * len(names)
    return [ClassInfo(i, w, n) for i, (w, n) in enumerate(zip(wnids, names, strict=True))]


def anonymous_classes(count: int) -> list[ClassInfo]:
    """Classes known only by index (weights without metadata and no `classes_file`)."""
    return [ClassInfo(i, None, None) for i in range(count)]


def resolve_class(query: str, classes: list[ClassInfo]) -> int:
    """A class given by index, wnid or name (case-insensitive) -> its index."""
    if query.isdigit():
        index = int(query)
        if index >= len(classes):
            raise ValueError(f"class index {index} out of range (model has {len(classes)} classes)")
        return index
    lowered = query.lower()
    for info in classes:
        if info.wnid == query or (info.name and info.name.lower() == lowered):
            return info.index
    raise ValueError(f"unknown class {query!r}: give an index, a wnid or a class name")
