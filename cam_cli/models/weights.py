"""Weights files and torchvision's weights: reading them safely and fitting them to a network.

Every file is read with ``torch.load(..., weights_only=True)``: a checkpoint cannot run code.
torchvision's weights are named as `torchvision.models.get_weight` names them
(``"ResNet18_Weights.IMAGENET1K_V1"``), and carry their class names, as a user expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cam_cli.errors import ModelLoadError
from cam_cli.models.camnet import CAMNet

_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")
# DistributedDataParallel, torch.compile, Hugging Face transformers' TimmWrapper
_PREFIXES = ("module.", "_orig_mod.", "timm_model.")
HF_HUB = "hf-hub:"


def torchvision_weights(name: str) -> Any:
    """``"ResNet18_Weights.IMAGENET1K_V1"`` -> torchvision's weights enum member."""
    from torchvision.models import get_weight

    return get_weight(name)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in torchvision's (sorted-wnid) order, shipped with it."""
    return list(torchvision_weights("ResNet18_Weights.IMAGENET1K_V1").meta["categories"])


def download_torchvision_state_dict(name: str, what: str) -> dict[str, torch.Tensor]:
    """torchvision's weights (from torch's cache or the network); offline -> one clear error."""
    weights = torchvision_weights(name)
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as error:  # noqa: BLE001 - URLError, socket and HTTP errors, partial files
        reason = str(getattr(error, "reason", error)).splitlines()[0][:120]
        raise ModelLoadError(
            f"cannot get torchvision's ImageNet weights for {what} ({weights.url}): {reason}. "
            "Offline? Download that file elsewhere and pass it as a local state_dict "
            "(e.g. `weights` FILE, or `backbone_weights` FILE for training)."
        ) from None


def read_state_file(path: str | Path) -> dict[str, Any]:
    """A weights or checkpoint file as a dict, read without running any code in it."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such weights file")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a regular file (a weights file is one)")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: not a loadable weights file (empty file (0 bytes))")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load's many errors: one message
        raise ModelLoadError(f"{path}: {_load_failure(error)}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a state_dict or a checkpoint dict")
    return data


def _read_safetensors(path: Path) -> dict[str, Any]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ModelLoadError(
            f'{path}: reading .safetensors needs safetensors: pip install "cam-cli[timm]"'
        ) from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # noqa: BLE001 - safetensors' many errors: one message
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelLoadError(f"{path}: not a loadable .safetensors file ({first_line})") from None


def _hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face hub answers at all (so an offline run fails at once, not after
    huggingface_hub's retries)."""
    import os
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host or "huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def download_hf_hub_state_dict(name: str) -> dict[str, torch.Tensor]:
    """``hf-hub:<repo>`` (timm's hub names, e.g. ``hf-hub:timm/resnet50.a1_in1k``): its
    ``model.safetensors`` (or ``pytorch_model.bin``) from the hub's cache or the network;
    offline -> one line saying how to pass a local file."""
    import logging

    repo = name[len(HF_HUB) :]
    try:
        import huggingface_hub
    except ImportError:
        raise ModelLoadError(
            f'{name}: needs huggingface_hub: pip install "cam-cli[timm]"'
        ) from None
    for filename in _HUB_FILES:
        cached = huggingface_hub.try_to_load_from_cache(repo, filename)
        if isinstance(cached, str):
            return unwrap_state_dict(read_state_file(cached), cached)
    failure: Exception | str = "the hub cannot be reached"
    if _hub_reachable():
        hub_logger = logging.getLogger("huggingface_hub")
        level = hub_logger.level
        hub_logger.setLevel(logging.ERROR)  # its retry messages; the one line below says it all
        try:
            for filename in _HUB_FILES:
                try:
                    path = huggingface_hub.hf_hub_download(repo, filename)
                except Exception as error:  # noqa: BLE001 - offline, no such repo or file
                    failure = error
                    if "EntryNotFound" not in type(error).__name__:
                        break
                    continue
                return unwrap_state_dict(read_state_file(path), path)
        finally:
            hub_logger.setLevel(level)
    reason = " ".join(str(failure).split())[:120]
    raise ModelLoadError(
        f"cannot get {name} from the Hugging Face hub ({reason}). Offline? Download its "
        f"model.safetensors elsewhere (https://huggingface.co/{repo}) and pass it as "
        "`weights` FILE."
    )


_TORCH_ADVICE = ("weights_only", "pytorch 2.6", "please file an issue", "check the documentation")


def _load_failure(error: Exception) -> str:
    """torch's refusal in one line, without its advice to load with ``weights_only=False``
    (the unsafe thing: it runs whatever code the file holds)."""
    text = str(error).strip()
    if "weights only load failed" not in text.lower():
        first_line = text.splitlines()[0] if text else type(error).__name__
        return f"not a loadable weights file ({first_line})"
    details = [line.strip() for line in text.splitlines()[1:] if line.strip()]
    details = [d for d in details if not any(a in d.lower() for a in _TORCH_ADVICE)]
    if any("global" in d.lower() or "class" in d.lower() for d in details):
        return (
            "refused: it holds code or objects that cannot be loaded safely (only tensors and "
            "plain containers are read; nothing in it was run)"
        )
    detail = details[0] if details else "unreadable pickle data"
    return f"not a loadable weights file ({detail})"


def check_state_dict(data: Any, source: str) -> dict[str, torch.Tensor]:
    """A state_dict as a network takes it, names to tensors, or a `ModelLoadError` naming the
    file: a list, a number or an int key would otherwise fail deep inside torch."""
    if not isinstance(data, dict):
        raise ModelLoadError(f"{source}: its weights are a {type(data).__name__}, not a state_dict")
    for key, value in data.items():
        if not isinstance(key, str):
            raise ModelLoadError(
                f"{source}: not a state_dict (the key {key!r} is not a string; tensor names are)"
            )
        if not isinstance(value, torch.Tensor):
            raise ModelLoadError(
                f"{source}: not a state_dict ({key} is a {type(value).__name__}, not a tensor)"
            )
    return data


def unwrap_state_dict(data: dict[str, Any], source: str = "weights") -> dict[str, torch.Tensor]:
    """Accept a bare state_dict, a cam-cli checkpoint, or the common {"state_dict": ...} form;
    ``source`` names the file in the error for anything that is not names to tensors."""
    for key in _WRAPPER_KEYS:
        if isinstance(data.get(key), dict):
            data = data[key]
            break
    data = check_state_dict(data, source)
    return {
        next((k[len(p) :] for p in _PREFIXES if k.startswith(p)), k): v for k, v in data.items()
    }


def check_weight_dtypes(state_dict: dict[str, Any], source: str) -> None:
    """Weights are real floating-point numbers: ``load_state_dict`` would silently cast int,
    bool or complex tensors into the network (complex ones losing their imaginary part), which
    is never what a file of trained weights means. The one integer tensor torch's modules
    hold, BatchNorm's ``num_batches_tracked`` counter, is let through."""
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or value.is_floating_point():
            continue
        integer = not value.is_complex() and value.dtype != torch.bool
        if integer and str(key).endswith("num_batches_tracked"):
            continue
        raise ModelLoadError(
            f"{source}: {key} holds {str(value.dtype).removeprefix('torch.')} values; weights "
            "must be floating-point tensors"
        )


def load_weights_into(model: CAMNet, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """`CAMNet.load_weights`, with a shape or key mismatch said in one line."""
    check_weight_dtypes(state_dict, source)
    try:
        model.load_weights(state_dict)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise ModelLoadError(f"{source}: weights do not fit this architecture: {detail}") from None
