"""The cam-cli checkpoint, defined once: what `cam-cli train` writes (`training.trainer`) and
what `checkpoint` reads (`models.loading`).

A checkpoint is a dict of tensors and plain containers, so ``torch.load(weights_only=True)``
reads it. Its model part (`model_part`, read back by `read_model_part`) is what running the
network needs: ``format``, ``version``, ``arch``, ``classes``, ``preprocessing``,
``input_size``, ``model`` (the state_dict) and, once chosen at training (`training.threshold`),
``cam_threshold``. A training run's files add what the run was (``config``, ``epoch``,
``step``, ``best_*``...), and ``last.pt`` what resuming needs (``optimizer``, ``scheduler``,
``scaler``, ``epoch_stats``, ``rng``); only the trainer reads those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from cam_cli.data.classes import ClassInfo, check_unique_wnids
from cam_cli.errors import ModelLoadError
from cam_cli.files.checks import check_input_size
from cam_cli.models.preprocess import Preprocessing
from cam_cli.models.registry import get_arch
from cam_cli.models.weights import check_state_dict

CHECKPOINT_FORMAT = "cam-cli-checkpoint"
CHECKPOINT_VERSION = 1


def is_checkpoint(data: Mapping[str, Any]) -> bool:
    """Written by cam-cli (a plain state_dict or another tool's file is not)."""
    return data.get("format") == CHECKPOINT_FORMAT


def plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so a checkpoint holds only weights_only-safe containers."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def model_part(
    arch: str,
    classes: Sequence[ClassInfo],
    preprocessing: Preprocessing,
    input_size: int,
    state_dict: Mapping[str, Tensor],
) -> dict[str, Any]:
    """The self-describing start of every checkpoint: with it alone the network runs."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "arch": arch,
        "classes": [c.as_dict() for c in classes],
        "preprocessing": plain(preprocessing.to_dict()),
        "input_size": input_size,
        "model": state_dict,
    }


@dataclass(frozen=True)
class SavedModel:
    """A checkpoint's model part, checked."""

    arch: str  # the registry's name of it
    classes: list[ClassInfo]
    preprocessing: Preprocessing
    input_size: int
    state_dict: dict[str, Tensor]
    cam_threshold: float | None


def read_model_part(data: Mapping[str, Any], path: str | Path) -> SavedModel:
    """The model part of a checkpoint read from ``path``, or a `ModelLoadError` saying what is
    missing or damaged (``data`` is known to be a checkpoint: `is_checkpoint`)."""
    try:
        spec = get_arch(str(data["arch"]))
        classes = [
            ClassInfo(int(c["index"]), c.get("wnid"), c.get("name")) for c in data["classes"]
        ]
        preprocessing = Preprocessing.from_dict(data["preprocessing"])
        input_size = int(data["input_size"])
        state_dict = check_state_dict(data["model"], str(path))
        threshold = data.get("cam_threshold")
        threshold = None if threshold is None else float(threshold)
    except KeyError as error:
        raise ModelLoadError(f"{path}: a damaged cam-cli checkpoint (no {error})") from None
    except (TypeError, ValueError, AttributeError, OverflowError) as error:
        raise ModelLoadError(f"{path}: a damaged cam-cli checkpoint ({error})") from None
    if not classes:
        raise ModelLoadError(f"{path}: a damaged cam-cli checkpoint (its class list is empty)")
    check_input_size(input_size, f"{path}: its input_size")
    try:
        check_unique_wnids(classes, f"{path}: a damaged cam-cli checkpoint's class list")
    except ValueError as error:
        raise ModelLoadError(str(error)) from None
    return SavedModel(spec.name, classes, preprocessing, input_size, state_dict, threshold)
