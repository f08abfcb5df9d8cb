"""Turn the model options of every command into a ready model: weights, classes, preprocessing.

Sources of weights:
- ``--weights imagenet``: torchvision's ImageNet weights (downloaded once into torch's cache).
- ``--weights FILE``: a state_dict (torchvision's keys or our own ``net.`` keys).
- ``--checkpoint FILE``: written by ``cam-cli train``; self-describing (architecture, classes,
  preprocessing, input size), so nothing else needs to be given.
All files are read with ``torch.load(..., weights_only=True)``: a checkpoint cannot run code.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cam_cli.classes import ClassInfo, anonymous_classes, classes_from_names, read_synset_mapping
from cam_cli.preprocess import IMAGENET, Preprocessing, get_preprocessing
from cam_cli.registry import ArchSpec, CAMNet, get_arch

CHECKPOINT_FORMAT = "cam-cli-checkpoint"


class ModelLoadError(Exception):
    """A model could not be set up from the options given; the message says what to do."""


@dataclass
class LoadedModel:
    arch: str
    model: CAMNet
    classes: list[ClassInfo]
    preprocessing: Preprocessing
    input_size: int

    def describe(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "num_classes": len(self.classes),
            "preprocessing": self.preprocessing.name,
            "input_size": self.input_size,
        }


def resolve_weights_enum(path: str) -> Any:
    """``"torchvision.models.ResNet18_Weights.IMAGENET1K_V1"`` -> the enum member."""
    module_name, enum_name, member = path.rsplit(".", 2)
    return getattr(getattr(importlib.import_module(module_name), enum_name), member)


def download_torchvision_state_dict(enum_path: str, what: str) -> dict[str, torch.Tensor]:
    """torchvision's weights (from torch's cache or the network); offline -> one clear error."""
    weights = resolve_weights_enum(enum_path)
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as error:  # URLError, socket errors, HTTP errors, partial files
        reason = str(getattr(error, "reason", error)).splitlines()[0][:120]
        raise ModelLoadError(
            f"cannot get torchvision's ImageNet weights for {what} ({weights.url}): {reason}. "
            "Offline? Download that file elsewhere and pass it as a local state_dict "
            "(e.g. --weights FILE, or --backbone-weights FILE for training)."
        ) from None


def read_state_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such weights file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise ModelLoadError(f"{path}: not a loadable weights file ({first_line})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a state_dict or a checkpoint dict")
    return data


def unwrap_state_dict(data: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Accept a bare state_dict, a cam-cli checkpoint, or the common {"state_dict": ...} form."""
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(data.get(key), dict):
            data = data[key]
            break
    # DDP / torch.compile prefixes
    prefixes = ("module.", "_orig_mod.")
    return {next((k[len(p) :] for p in prefixes if k.startswith(p)), k): v for k, v in data.items()}


def _num_classes_in(state_dict: dict[str, torch.Tensor], spec: ArchSpec) -> int | None:
    """The class count of a state_dict: rows of the last 2-D weight, or conv classifier outputs."""
    model = spec.build(2)
    own = model.state_dict()
    for key, value in state_dict.items():
        full = key if key.startswith("net.") else f"net.{key}"
        if full in own and own[full].shape[:1] == (2,) and value.ndim >= 1:
            return int(value.shape[0])
    return None


def load_weights_into(model: CAMNet, state_dict: dict[str, torch.Tensor], source: str) -> None:
    try:
        model.load_weights(state_dict)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise ModelLoadError(f"{source}: weights do not fit this architecture: {detail}") from None


def _load_checkpoint(path: str | Path, device: str) -> LoadedModel:
    data = read_state_file(path)
    if data.get("format") != CHECKPOINT_FORMAT:
        raise ModelLoadError(
            f"{path}: not a cam-cli checkpoint (use --weights for a plain state_dict)"
        )
    spec = get_arch(data["arch"])
    classes = [ClassInfo(int(c["index"]), c.get("wnid"), c.get("name")) for c in data["classes"]]
    model = spec.build(len(classes))
    load_weights_into(model, data["model"], str(path))
    return LoadedModel(
        arch=spec.name,
        model=model.eval().to(device),
        classes=classes,
        preprocessing=Preprocessing.from_dict(data["preprocessing"]),
        input_size=int(data["input_size"]),
    )


def load_model(
    *,
    arch: str | None = None,
    weights: str | None = None,
    checkpoint: str | Path | None = None,
    classes_file: str | Path | None = None,
    normalize: str | None = None,
    input_size: int | None = None,
    num_classes: int | None = None,
    device: str = "cpu",
) -> LoadedModel:
    """The one door to a ready-to-run model for `cam`, `bbox` and `eval`."""
    if checkpoint is not None:
        if weights is not None:
            raise ModelLoadError("give either --checkpoint or --weights, not both")
        loaded = _load_checkpoint(checkpoint, device)
        if arch is not None and get_arch(arch).name != loaded.arch:
            raise ModelLoadError(f"{checkpoint}: holds a {loaded.arch}, not a {arch}")
        if normalize is not None:
            loaded.preprocessing = get_preprocessing(normalize)
        if input_size is not None:
            loaded.input_size = input_size
        if classes_file is not None:
            _check_same_classes(loaded.classes, read_synset_mapping(classes_file), checkpoint)
        return loaded

    if arch is None:
        raise ModelLoadError("give --arch NAME (see `cam-cli models`) or --checkpoint FILE")
    try:
        spec = get_arch(arch)
    except KeyError as error:
        raise ModelLoadError(str(error.args[0])) from None
    file_classes = read_synset_mapping(classes_file) if classes_file is not None else None
    names: list[str] | None = None

    if weights is None:
        state_dict = None
    elif weights == "imagenet":
        if spec.torchvision_weights is None:
            raise ModelLoadError(
                f"{spec.name} has no torchvision ImageNet weights; train it with `cam-cli train`"
                " and pass --checkpoint, or pass --weights FILE"
            )
        state_dict = download_torchvision_state_dict(spec.torchvision_weights, spec.name)
        names = list(resolve_weights_enum(spec.torchvision_weights).meta["categories"])
    else:
        state_dict = unwrap_state_dict(read_state_file(weights))

    count = num_classes
    if count is None and state_dict is not None:
        count = _num_classes_in(state_dict, spec)
    if count is None:
        count = len(file_classes) if file_classes else 1000
    model = spec.build(count)
    if state_dict is not None:
        load_weights_into(model, state_dict, str(weights))

    if file_classes is not None:
        if len(file_classes) != count:
            raise ModelLoadError(
                f"{classes_file}: lists {len(file_classes)} classes but the model has {count}"
            )
        classes = file_classes
    elif names is not None and len(names) == count:
        classes = classes_from_names(names)
    else:
        classes = anonymous_classes(count)
    return LoadedModel(
        arch=spec.name,
        model=model.eval().to(device),
        classes=classes,
        preprocessing=get_preprocessing(normalize) if normalize else IMAGENET,
        input_size=input_size or spec.default_input_size,
    )


def _check_same_classes(own: list[ClassInfo], given: list[ClassInfo], source: Any) -> None:
    own_wnids = [c.wnid for c in own]
    given_wnids = [c.wnid for c in given]
    if own_wnids != given_wnids:
        raise ModelLoadError(
            f"{source}: its class order differs from the --classes file "
            f"({len(own_wnids)} vs {len(given_wnids)} classes); the checkpoint's own list is used "
            "when --classes is left out"
        )


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over the target.

    A crash (even kill -9) mid-write leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
