"""Training data: ILSVRC-layout folders -> labelled items, decoded and augmented in workers.

``DIR/train/<class>/**`` gives the classes (sorted folder names = ILSVRC's sorted-wnid order)
and the training images; the optional ``DIR/val`` is class folders, or flat ILSVRC images
labelled by ``DIR/annotations/*.xml`` or ``DIR/LOC_val_solution.csv``. Tiny ImageNet's download
is taken as it is: ``train/<wnid>/images/`` (with ``<wnid>_boxes.txt`` beside it), ``wnids.txt``
(checked against the folders), ``words.txt`` (the names) and ``val/images/`` labelled by
``val/val_annotations.txt``.

Randomness is a function of ``(seed, epoch, image index)`` only, never of a process's RNG: the
crop and flip of an image come from its own generator, and the order of an epoch is a
permutation seeded by ``seed + epoch``. That is what makes a resumed run see the same batches,
and N torchrun processes see together exactly the global batch one process would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cam_cli.data.annotations import read_annotations
from cam_cli.data.batches import DecodedImage
from cam_cli.data.classes import ClassInfo, read_synset_mapping
from cam_cli.data.images import list_images, load_resized, open_rgb
from cam_cli.data.matching import match_images
from cam_cli.data.tiny_imagenet import read_wnids, tiny_classes
from cam_cli.errors import TrainError


@dataclass
class TrainData:
    classes: list[ClassInfo]
    train: list[tuple[str, int]]  # (path, class index)
    val: list[tuple[str, int]]
    notes: list[str]  # what was left out and why, for the log


def class_images(folder: Path, data_dir: Path, notes: list[str]) -> list[Path]:
    """The images of one class folder: `list_images`, but a symlinked folder inside it that
    leads back into the data (``loop -> ..``, a link to another class) is not walked, with a
    note, so a class keeps only its own images. Links to folders outside the data (a class
    kept on another disk) are followed."""
    own, data = folder.resolve(), data_dir.resolve()

    def follow(link: Path) -> bool:
        target = link.resolve()
        if target.is_relative_to(own) or not (
            target.is_relative_to(data) or data.is_relative_to(target)
        ):
            return True
        notes.append(f"{link} links back into the data ({target}); not followed")
        return False

    return list_images(folder, follow=follow)


def scan_train_dir(data_dir: Path) -> tuple[list[ClassInfo], list[tuple[str, int]], list[str]]:
    """``DIR/train/<class>/**`` -> classes (sorted folder names) and ``(path, index)`` items.

    Sorted folder names give ILSVRC's sorted-wnid order, the order LOC_synset_mapping.txt and
    torchvision use; names come from ``DIR/LOC_synset_mapping.txt`` when it is there.
    """
    train_dir = data_dir / "train"
    if not train_dir.is_dir():
        raise TrainError(f"{data_dir}: no train/ folder (expected DIR/train/<class>/<images>)")
    folders = sorted(p for p in train_dir.iterdir() if p.is_dir())
    if not folders:
        raise TrainError(f"{train_dir}: no class folders (expected train/<class>/<images>)")
    names: dict[str, str] = {}
    mapping = data_dir / "LOC_synset_mapping.txt"
    notes: list[str] = []
    if (data_dir / "wnids.txt").is_file():  # Tiny ImageNet
        names = _tiny_names(data_dir, [f.name for f in folders], notes)
    elif mapping.is_file():
        try:
            for c in read_synset_mapping(mapping):
                if c.wnid and c.name:
                    names[c.wnid] = c.name
        except ValueError as error:
            raise TrainError(str(error)) from None
    items: list[tuple[str, int]] = []
    kept: list[Path] = []
    for folder in folders:  # a folder without images is no class (it could never be learned)
        paths = [str(path) for path in class_images(folder, data_dir, notes)]
        if not paths:
            notes.append(f"class folder {folder} has no images; skipped (not a class)")
            continue
        items.extend((path, len(kept)) for path in paths)
        kept.append(folder)
    classes = [ClassInfo(i, f.name, names.get(f.name, f.name)) for i, f in enumerate(kept)]
    if not items:
        raise TrainError(f"{train_dir}: no images in the class folders")
    return classes, items, notes


def _tiny_names(data_dir: Path, folders: list[str], notes: list[str]) -> dict[str, str]:
    """The folders must be wnids of ``wnids.txt`` (a wnid without a folder is no class here:
    a note says so); their names come from ``words.txt``."""
    try:
        listed = read_wnids(data_dir / "wnids.txt")
        wnids, present = set(listed), set(folders)
        unknown = [name for name in folders if name not in wnids]
        if unknown:
            raise TrainError(f"{data_dir / 'train'}: class folders not in "
                             f"{data_dir / 'wnids.txt'}: {', '.join(unknown[:5])}")  # fmt: skip
        absent = [wnid for wnid in listed if wnid not in present]
        if absent:
            listed_in, train = data_dir / "wnids.txt", data_dir / "train"
            notes.append(
                f"{len(absent)} wnids of {listed_in} have no class folder in {train} "
                f"(e.g. {absent[0]}); not classes here"
            )
        names: dict[str, str] = {}
        for c in tiny_classes(data_dir, folders):
            assert c.wnid is not None  # each folder is a listed wnid...
            assert c.name is not None  # ... and each wnid is named (by itself at least)
            names[c.wnid] = c.name
        return names
    except (ValueError, OSError) as error:
        raise TrainError(str(error)) from None


def limit_per_class(items: list[tuple[str, int]], count: int) -> list[tuple[str, int]]:
    """The first ``count`` items of every class (in their sorted order); 0 keeps all."""
    if count <= 0:
        return list(items)
    taken: dict[int, int] = {}
    kept = []
    for path, label in items:
        if taken.get(label, 0) < count:
            taken[label] = taken.get(label, 0) + 1
            kept.append((path, label))
    return kept


def scan_val_dir(data_dir: Path, classes: list[ClassInfo]) -> tuple[list[tuple[str, int]], list]:
    """Optional ``DIR/val``: class folders, or flat ILSVRC images with their annotations.

    Flat images are labelled from ``DIR/annotations/*.xml`` or ``DIR/LOC_val_solution.csv``;
    an image's label is its annotation's first class.
    """
    val_dir = data_dir / "val"
    if not val_dir.is_dir():
        return [], []
    index_of = {c.wnid: c.index for c in classes}
    folders = sorted(p for p in val_dir.iterdir() if p.is_dir())
    notes: list[str] = []
    tiny = val_dir / "val_annotations.txt"  # Tiny ImageNet: val/images/ + this file
    if tiny.is_file():
        images = val_dir / "images" if (val_dir / "images").is_dir() else val_dir
        return _labelled_flat(images, tiny, index_of)
    if folders:
        unknown = [f.name for f in folders if f.name not in index_of]
        if unknown:
            raise TrainError(f"{val_dir}: class folders not in train/: {', '.join(unknown[:5])}")
        items = [
            (str(path), index_of[folder.name])
            for folder in folders
            for path in class_images(folder, data_dir, notes)
        ]
        return items, notes
    source = next(
        (p for p in (data_dir / "annotations", data_dir / "LOC_val_solution.csv") if p.exists()),
        None,
    )
    if source is None:
        return [], [f"{val_dir}: no annotations/ or LOC_val_solution.csv; no validation"]
    return _labelled_flat(val_dir, source, index_of)


def _labelled_flat(
    val_dir: Path, source: Path, index_of: dict[str | None, int]
) -> tuple[list[tuple[str, int]], list[str]]:
    """Flat val images labelled by their annotations' first class."""
    notes: list[str] = []
    try:
        matched, unmatched, absent = match_images(val_dir, read_annotations(source))
    except ValueError as error:
        raise TrainError(str(error)) from None
    items, unknown = [], 0
    for path, annotation in matched:
        label = annotation.labels[0] if annotation.labels else None
        if label in index_of:
            items.append((str(path), index_of[label]))
        else:
            unknown += 1
    if unmatched:
        notes.append(f"{len(unmatched)} val images have no annotation in {source}; left out")
    if absent:
        notes.append(f"{len(absent)} images of {source} are not in {val_dir} (e.g. {absent[0]}); "
                     "not validated on")  # fmt: skip
    if unknown:
        notes.append(f"{unknown} val images are of classes not in train/; left out")
    return items, notes


def scan_data(data_dir: str | Path) -> TrainData:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise TrainError(f"{data_dir}: no such data folder")
    classes, train_items, notes = scan_train_dir(data_dir)
    val_items, val_notes = scan_val_dir(data_dir, classes)
    return TrainData(classes, train_items, val_items, notes + val_notes)


def random_resized_crop_box(
    width: int,
    height: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop parameters, drawn from ``rng``: ``(left, top, w, h)``."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, w, h
    in_ratio = width / height  # fallback: the central crop of the nearest allowed aspect
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


class LabeledImages(torch.utils.data.Dataset):
    """``(epoch, index)`` -> a `DecodedImage` with its label; never raises.

    Decoding happens in DataLoader workers, and batches are made by the same `collate_images`
    as inference. A bad file gives an error, so one broken JPEG among 1.28 million never stops
    a run.
    """

    def __init__(
        self, items: list[tuple[str, int]], size: int, augment: bool, seed: int, scale_min: float
    ) -> None:
        self.items = items
        self.size = size
        self.augment = augment
        self.seed = seed
        self.scale = (scale_min, 1.0)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> DecodedImage:
        epoch, index = key
        path, label = self.items[index]
        try:
            if self.augment:
                rng = np.random.default_rng((self.seed, epoch, index))
                pixels, width, height = self._augmented(path, rng)
            else:  # exactly what inference does
                pixels, width, height = load_resized(path, self.size)
        except Exception as error:  # noqa: BLE001 - any failure is one skipped image, never a stop
            return DecodedImage(index, path, 0, 0, None, str(error), label)
        return DecodedImage(index, path, width, height, pixels, None, label)

    def _augmented(self, path: str, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
        image, (width, height) = open_rgb(path)
        left, top, w, h = random_resized_crop_box(image.width, image.height, rng, self.scale)
        image = image.resize(
            (self.size, self.size),
            Image.Resampling.BILINEAR,
            box=(left, top, left + w, top + h),
            reducing_gap=None,
        )
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
        return pixels, width, height


class EpochSampler(torch.utils.data.Sampler):
    """DistributedSampler's partition, yielding ``(epoch, index)`` and able to start mid-epoch.

    Epoch e shuffles with ``torch.randperm(n, generator seeded seed + e)``, keeps whole global
    batches only (``steps * batch * world`` images), and rank r takes every world-th image from
    r. Step k of rank r thus takes images of the k-th global-batch slice of the permutation, and
    the union over ranks is exactly the batch a single process with the global batch would see.
    """

    def __init__(
        self, n: int, batch_per_rank: int, rank: int, world: int, seed: int, shuffle: bool = True
    ) -> None:
        self.n, self.batch, self.rank, self.world = n, batch_per_rank, rank, world
        self.seed, self.shuffle = seed, shuffle
        self.steps = n // (batch_per_rank * world)
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = list(range(self.n))
        mine = order[: self.steps * self.batch * self.world][self.rank :: self.world]
        for index in mine[self.start_step * self.batch :]:
            yield self.epoch, index

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.batch


class ValSampler(torch.utils.data.Sampler):
    """This rank's share of the validation images (every world-th), no padding, no duplicates."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((0, i) for i in self.indices)

    def __len__(self) -> int:
        return len(self.indices)
