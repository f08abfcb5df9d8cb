"""Plain settings, torch-free (`cam-cli --help` stays fast): what library and CLI share."""

from enum import StrEnum

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
    """`cam-cli bbox` records (`outputs.writers.RecordWriter`)."""

    jsonl = "jsonl"
    csv = "csv"
    coco = "coco"


class DecodeMode(StrEnum):
    auto = "auto"
    pil = "pil"
    device = "device"


class BoxRule(StrEnum):
    paper = "paper"
    zhou2016 = "zhou2016"
    all_components = "all-components"


class BoxStep(StrEnum):
    """Where CAMs become boxes (`inference.localizer.Localizer`'s ``box_step``)."""

    auto = "auto"
    scipy = "scipy"
    torch = "torch"


class NpyMaps(StrEnum):
    none = "none"
    feature = "feature"
    image = "image"
    both = "both"


class MaxBoxAccProtocolName(StrEnum):
    wsol = "wsol"
    cam_cli = "cam-cli"


class CubSplit(StrEnum):
    test = "test"
    train = "train"
    all = "all"
