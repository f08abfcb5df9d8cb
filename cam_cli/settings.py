"""The settings a user gives the library, as plain data: where a model comes from
(`ModelOptions`), what a `Localizer` computes (`CamOptions`) and how a run goes (`RunOptions`).

Frozen dataclasses with nothing that runs: the code that acts on them lives where the work is
(`models.loading`, `inference.localizer`, `runtime.group`). Nothing heavy is imported here,
so the command line can build them without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


@dataclass(frozen=True)
class ModelOptions:
    """Where a model comes from, as the command-line options say it (see `load_model`)."""

    arch: str | None = None
    weights: str | None = None
    checkpoint: str | Path | None = None
    classes_file: str | Path | None = None
    normalize: str | None = None
    input_size: int | None = None
    onnx: str | Path | None = None  # a `cam-cli export` file run by ONNX Runtime (`onnx_runtime`)
    cam_exact: bool = True  # False: any head (a gradient method reads a layer, not the head)


@dataclass(frozen=True)
class CamOptions:
    """What a `Localizer` computes for every image: its CAMs and their boxes.

    ``topk``: the classes ranked by score (or ``class_indices``: these classes for every image,
    in this order); ``threshold``: the CAM threshold (None: the one the checkpoint carries, else
    the paper's 0.2); ``box_rule`` (`boxes.rules`): ``paper``, ``zhou2016`` or
    ``all-components``; ``ten_crop``: the released ten-crop CAM (`cam.ten_crop`).
    ``method``: where the maps come from, ``cam`` (the paper's, exact) or a method of
    `cam.methods` (``gradcam``...), which reads ``layer`` (None: the network's default layer).
    ``faithfulness``: also each image's Average Drop, Increase in Confidence and Deletion /
    Insertion AUC of its top-1 map (`cam.faithfulness`), on `ImageResult.faithfulness`.
    """

    topk: int = 5
    threshold: float | None = None
    class_indices: tuple[int, ...] | None = None
    box_rule: str = "paper"
    ten_crop: bool = False
    method: str = "cam"
    layer: str | None = None
    faithfulness: bool = False


@dataclass(frozen=True)
class CamFileOptions:
    """What `write_cams` writes beside each image's overlays: ``npy`` (`NpyMaps`) the raw
    maps, ``alpha`` the overlay's opacity, ``pseudo_masks`` a folder of one segmentation
    pseudo-mask per image (`outputs.masks`)."""

    npy: str = "none"
    alpha: float = 0.5
    pseudo_masks: str | Path | None = None


@dataclass(frozen=True)
class RunOptions:
    """How a run goes, never what it computes (``fast`` aside: bf16 moves figures by at most
    a few tenths of a point): shared by `write_boxes`, `write_cams` and `evaluate`.

    ``workers=None``: `default_workers` for the device; ``fast=None``: low precision where the
    hardware gains (`runtime.device.Precision`); ``progress=None``: a bar when stderr is a
    terminal; ``lanes=None``: one per torch thread on the CPU; ``box_backend``: where CAMs become
    boxes (`Localizer`); ``decode``: where JPEGs are decoded (`data.decode`).
    """

    batch_size: int = 32
    workers: int | None = None
    device: str = "auto"
    fast: bool | None = None
    compile_model: bool = False
    progress: bool | None = None
    lanes: int | None = None
    box_backend: str = "auto"  # auto, scipy, torch or triton (`boxes.backends`)
    decode: str = "auto"  # auto, pil or device


# --- choices ----------------------------------------------------------------------------------
# Every choice set, once: the CLI offers the members, the library checks against `choices(...)`.


def choices(enum: type[StrEnum]) -> tuple[str, ...]:
    """The values of a choice set, in order, as plain strings (for checks and messages)."""
    return tuple(member.value for member in enum)


class Normalization(StrEnum):
    imagenet = "imagenet"
    caffe = "caffe"


class OutputFormat(StrEnum):
    """`cam-cli boxes` records (`outputs.writers.BoxRecordWriter`)."""

    jsonl = "jsonl"
    csv = "csv"


class BboxFormat(StrEnum):
    """`cam-cli bbox` records (`outputs.writers.RecordWriter`), or a pseudo-label dataset
    folder (`DatasetFormat`, `outputs.datasets`)."""

    jsonl = "jsonl"
    csv = "csv"
    coco = "coco"
    voc = "voc"
    yolo = "yolo"
    coco_dataset = "coco-dataset"


class DatasetFormat(StrEnum):
    """The pseudo-label datasets `cam-cli bbox`'s `output` DIR writes (`outputs.datasets`)."""

    voc = "voc"
    yolo = "yolo"
    coco_dataset = "coco-dataset"


class LabelBy(StrEnum):
    """How a pseudo-label dataset names its classes."""

    name = "name"
    wnid = "wnid"
    class_index = "index"  # not `index`: that is str.index


class DecodeMode(StrEnum):
    auto = "auto"
    pil = "pil"
    device = "device"


class BoxRule(StrEnum):
    paper = "paper"
    zhou2016 = "zhou2016"
    all_components = "all-components"


class BoxBackend(StrEnum):
    """Where CAMs become boxes (`inference.localizer.Localizer`'s ``box_backend``)."""

    auto = "auto"
    scipy = "scipy"
    torch = "torch"
    triton = "triton"


class NpyMaps(StrEnum):
    none = "none"
    feature = "feature"
    image = "image"
    both = "both"


class MaxBoxAccProtocolName(StrEnum):
    wsol = "wsol"
    cam_cli = "cam-cli"


class AnnotationsFormat(StrEnum):
    """How `eval` reads its ground truth (`data.interchange.FORMATS`)."""

    ilsvrc = "ilsvrc"
    voc = "voc"
    yolo = "yolo"
    coco = "coco"
    csv = "csv"


class CubSplit(StrEnum):
    test = "test"
    train = "train"
    all = "all"
