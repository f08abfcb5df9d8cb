"""The one door to a ready model for `cam`, `bbox` and `eval`: network, weights, classes,
preprocessing and input size, from the options a user gives.

Sources of weights:
- `weights` ``imagenet``: torchvision's ImageNet weights (downloaded once into torch's cache).
- `weights` ``FILE``: a state_dict (torchvision's keys or our own ``net.`` keys).
- `checkpoint` ``FILE``: written by ``cam-cli train``; self-describing (architecture, classes,
  preprocessing, input size), so nothing else needs to be given.
Weights know their data, as torchvision's do: a 1000-class model without `classes_file` is an
ImageNet model and gets torchvision's ImageNet class names.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cam_cli.data.classes import (
    ClassInfo,
    anonymous_classes,
    classes_from_names,
    read_synset_mapping,
)
from cam_cli.errors import ModelLoadError, SetupError
from cam_cli.files.checks import check_input_size
from cam_cli.models.camnet import ArchSpec, CAMNet
from cam_cli.models.checkpoint_format import is_checkpoint, read_model_part
from cam_cli.models.preprocess import IMAGENET, Preprocessing, get_preprocessing
from cam_cli.models.registry import build_model, get_arch
from cam_cli.models.weights import (
    HF_HUB,
    download_hf_hub_state_dict,
    download_torchvision_state_dict,
    imagenet_class_names,
    load_weights_into,
    read_state_file,
    torchvision_weights,
    unwrap_state_dict,
)
from cam_cli.runtime.device import resolve_device
from cam_cli.settings import ModelOptions

logger = logging.getLogger(__name__)

IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class LoadedModel:
    arch: str
    model: CAMNet
    classes: list[ClassInfo]
    preprocessing: Preprocessing
    input_size: int
    cam_threshold: float | None = None  # chosen at training (`training.threshold`); None: 0.2

    def describe(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "num_classes": len(self.classes),
            "preprocessing": self.preprocessing.name,
            "input_size": self.input_size,
        }

    def digest(self) -> str:
        """A hash of what decides the model's outputs, weights by content: two files with the
        same weights give the same digest, a retrained ``best.pt`` under the same name does not."""
        digest = hashlib.sha256(repr((self.describe(), self.classes)).encode())
        digest.update(repr(self.preprocessing).encode())
        for key, tensor in self.model.state_dict().items():
            value = tensor.detach().cpu().contiguous()
            digest.update(f"{key}:{value.dtype}:{tuple(value.shape)}".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]


def _num_classes_in(state_dict: dict[str, torch.Tensor], spec: ArchSpec) -> int | None:
    """The class count of a state_dict: the classifier's output rows, found by building the
    network on the meta device (no memory, no initialisation) with 2 classes and seeing which
    tensors have 2 rows."""
    with torch.device("meta"):
        own = spec.build(2).state_dict()
    for key, value in state_dict.items():
        full = key if key.startswith("net.") else f"net.{key}"
        if full in own and own[full].shape[:1] == (2,) and value.ndim >= 1:
            return int(value.shape[0])
    return None


def _checkpoint_model(path: str | Path) -> LoadedModel:
    data = read_state_file(path)
    if not is_checkpoint(data):
        raise ModelLoadError(
            f"{path}: not a cam-cli checkpoint (use `weights` for a plain state_dict)"
        )
    saved = read_model_part(data, path)
    model = build_model(saved.arch, len(saved.classes))
    load_weights_into(model, saved.state_dict, str(path))
    return LoadedModel(saved.arch, model.eval(), saved.classes, saved.preprocessing,
                       saved.input_size, saved.cam_threshold)  # fmt: skip


def load_model(
    options: ModelOptions | None = None,
    *,
    device: str = "cpu",
    num_classes: int | None = None,
    **fields: Any,
) -> LoadedModel:
    """A ready-to-run model from `ModelOptions` (or the same fields as keywords), on ``device``.

    Raises `ModelLoadError` (a `SetupError`) with a one-line reason for anything that does not
    fit: unknown architecture, unreadable file, weights of another network, classes that differ.
    """
    options = options or ModelOptions(**fields)
    torch_device = resolve_device(device)
    check_input_size(options.input_size)
    try:
        loaded = _load(options, num_classes)
    except KeyError as error:  # unknown architecture
        raise ModelLoadError(str(error.args[0])) from None
    except (ValueError, OSError) as error:  # unreadable `classes_file` file, unknown normalization
        if isinstance(error, SetupError):
            raise
        raise ModelLoadError(str(error)) from None
    loaded.model.to(torch_device)
    return loaded


def _onnx_model(options: ModelOptions) -> LoadedModel:
    """A `cam-cli export` file: everything comes from it; a class list given must be its own.
    (onnx_runtime is imported here: ONNX Runtime is an extra, loaded only for ``onnx``.)"""
    from cam_cli.models.onnx_runtime import open_onnx_network, pixels_as_float

    others = ("arch", "weights", "checkpoint", "normalize", "input_size")
    given = [name for name in others if getattr(options, name) is not None]
    if given:
        raise ModelLoadError(
            f"`onnx` holds the whole model, its preprocessing and input size: leave out "
            f"{', '.join(f'`{name}`' for name in given)}"
        )
    path = options.onnx
    assert path is not None  # `_load` comes here for it
    network, description = open_onnx_network(path)
    if options.classes_file is not None:
        given_classes = read_synset_mapping(options.classes_file)
        if [c.wnid for c in given_classes] != [c.wnid for c in description.classes]:
            raise ModelLoadError(
                f"{options.onnx}: its class order differs from the `classes_file` file "
                f"({len(description.classes)} vs {len(given_classes)} classes); its own list "
                "is used when `classes_file` is left out"
            )
    return LoadedModel(
        arch=description.arch,
        model=network,  # type: ignore[arg-type]  # it presents what inference asks of a CAMNet
        classes=description.classes,
        preprocessing=pixels_as_float(description),
        input_size=description.input_size,
        cam_threshold=description.cam_threshold,
    )


def _load(options: ModelOptions, num_classes: int | None) -> LoadedModel:
    if options.onnx is not None:
        return _onnx_model(options)
    arch, weights, classes_file = options.arch, options.weights, options.classes_file
    if options.checkpoint is not None:
        if weights is not None:
            raise ModelLoadError("give either `checkpoint` or `weights`, not both")
        loaded = _checkpoint_model(options.checkpoint)
        if arch is not None and get_arch(arch).name != loaded.arch:
            raise ModelLoadError(f"{options.checkpoint}: holds a {loaded.arch}, not a {arch}")
        if classes_file is not None:
            _check_same_classes(loaded.classes, read_synset_mapping(classes_file), options)
        return LoadedModel(
            loaded.arch,
            loaded.model,
            loaded.classes,
            get_preprocessing(options.normalize) if options.normalize else loaded.preprocessing,
            options.input_size or loaded.input_size,
            loaded.cam_threshold,
        )

    if arch is None:
        raise ModelLoadError("give `arch` NAME (see `cam-cli models`) or `checkpoint` FILE")
    spec = get_arch(arch, options.cam_exact)
    file_classes = read_synset_mapping(classes_file) if classes_file is not None else None
    names: list[str] | None = None
    if weights is None:
        state_dict = None
        logger.info(  # a note: shown with -q too, by rank 0 only under torchrun
            "note: `arch` %s without `weights` or `checkpoint`: its parameters are random "
            "(untrained), so its classes, scores and boxes mean nothing",
            spec.name,
        )
    elif weights == "imagenet" and spec.hub_weights is not None:
        state_dict = download_hf_hub_state_dict(spec.hub_weights)
    elif weights == "imagenet":
        if spec.torchvision_weights is None:
            raise ModelLoadError(
                f"{spec.name} has no torchvision ImageNet weights; train it with `cam-cli train`"
                " and pass `checkpoint`, or pass `weights` FILE"
            )
        state_dict = download_torchvision_state_dict(spec.torchvision_weights, spec.name)
        names = list(torchvision_weights(spec.torchvision_weights).meta["categories"])
    elif weights.startswith(HF_HUB):
        state_dict = download_hf_hub_state_dict(weights)
    else:
        state_dict = unwrap_state_dict(read_state_file(weights), weights)

    count = num_classes
    if count is None and state_dict is not None:
        count = _num_classes_in(state_dict, spec)
        if count == 0:
            raise ModelLoadError(f"{weights}: its classifier has 0 classes (0 output rows)")
    if count is None:
        count = len(file_classes) if file_classes else IMAGENET_CLASSES
    model = spec.build(count)
    if state_dict is not None:
        load_weights_into(model, state_dict, str(weights))

    if file_classes is not None:
        if len(file_classes) != count:
            raise ModelLoadError(
                f"{classes_file}: lists {len(file_classes)} classes but the model has {count}"
            )
        classes = file_classes
    elif state_dict is not None and count == IMAGENET_CLASSES:
        classes = classes_from_names(names or imagenet_class_names())
    else:
        classes = anonymous_classes(count)
    return LoadedModel(
        arch=spec.name,
        model=model.eval(),
        classes=classes,
        preprocessing=get_preprocessing(options.normalize)
        if options.normalize
        else (spec.preprocessing or IMAGENET),
        input_size=options.input_size or spec.default_input_size,
    )


def _check_same_classes(
    own: list[ClassInfo], given: list[ClassInfo], options: ModelOptions
) -> None:
    own_wnids = [c.wnid for c in own]
    given_wnids = [c.wnid for c in given]
    if own_wnids != given_wnids:
        raise ModelLoadError(
            f"{options.checkpoint}: its class order differs from the `classes_file` file "
            f"({len(own_wnids)} vs {len(given_wnids)} classes); the checkpoint's own list is used "
            "when `classes_file` is left out"
        )
