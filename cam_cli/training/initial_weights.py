"""A run's starting weights: ImageNet weights (a local file or torchvision's / the hub's
download) put into the network before training.

The paper fine-tunes each network from its ImageNet weights; only the backbone has such weights
(the added CAM conv and classifier start fresh), so starting weights go into the truncated
torchvision trunk and are checked key by key: every trunk tensor must be there, and extra keys
may only be those of the layers the paper removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from cam_cli.errors import TrainError
from cam_cli.models.camnet import ArchSpec, CAMNet
from cam_cli.models.registry import build_model, get_arch
from cam_cli.models.weights import (
    check_weight_dtypes,
    download_hf_hub_state_dict,
    download_torchvision_state_dict,
    read_state_file,
    unwrap_state_dict,
)
from cam_cli.runtime.distributed import is_main_process
from cam_cli.training.config import TrainConfig

logger = logging.getLogger(__name__)


def _check_trunk_weights(trunk: nn.Module, state_dict: dict[str, Tensor], source: str) -> dict:
    """The part of a torchvision state_dict that fits the truncated trunk, or a clear error.

    Every trunk tensor must be present; extra keys are accepted only for the layers the paper
    removed (their module is absent from the trunk), so a wrong network's file is refused.
    """
    own = trunk.state_dict()
    modules = {name for name, _ in trunk.named_modules()}
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    if missing:
        raise TrainError(
            f"{source}: not this backbone's weights: {len(missing)} of its {len(own)} tensors are "
            f"missing (e.g. {', '.join(missing[:3])})"
        )
    foreign = [k for k in state_dict if k not in own and k.rpartition(".")[0] in modules]
    if foreign:
        raise TrainError(f"{source}: unexpected tensors for this backbone: {foreign[:3]}")
    wrong = [k for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if wrong:
        k = wrong[0]
        raise TrainError(
            f"{source}: {k} has shape {list(state_dict[k].shape)}, the backbone needs "
            f"{list(own[k].shape)}"
        )
    return {k: v for k, v in state_dict.items() if k in own}


def _load_whole_net(model: CAMNet, state_dict: dict[str, Tensor], source: str) -> str:
    """A whole network's weights; the classifier is left fresh when its class count differs."""
    if not any(k.startswith("net.") for k in state_dict):
        state_dict = {f"net.{k}": v for k, v in state_dict.items()}
    own = model.state_dict()
    state_dict = {k: v for k, v in state_dict.items() if k in own or not k.startswith("net.aux")}
    resized = [k for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    classifier = model.classifier
    classifier_keys = set()
    if classifier is not None:
        names = {id(p): n for n, p in model.named_parameters()}
        classifier_keys = {names[id(p)] for p in classifier.parameters()}
    if set(resized) - classifier_keys:
        k = sorted(set(resized) - classifier_keys)[0]
        raise TrainError(f"{source}: {k} has shape {list(state_dict[k].shape)}, needs "
                         f"{list(own[k].shape)}")  # fmt: skip
    state_dict = {k: v for k, v in state_dict.items() if k not in resized}
    missing = [k for k in own if k not in state_dict and k not in resized]
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        raise TrainError(
            f"{source}: does not fit this network (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    model.load_state_dict(state_dict, strict=False)
    return "whole network" + (", classifier left fresh (other class count)" if resized else "")


def apply_initial_weights(
    model: CAMNet, spec: ArchSpec, state_dict: dict[str, Tensor], source: str
) -> str:
    """Backbone weights into a paper net's trunk, or a whole net's weights into other nets.

    A paper net's trunk is the torchvision model minus the layers the paper removes, so a plain
    torchvision state_dict (``features.0.weight``...) goes into ``net.trunk``; a file with our own
    ``net.`` keys (a cam-cli checkpoint) is a whole network, for continued fine-tuning.
    """
    state_dict = unwrap_state_dict(state_dict, source)
    check_weight_dtypes(state_dict, source)
    trunk = getattr(model.net, "trunk", None)
    if spec.paper and trunk is not None and not any(k.startswith("net.") for k in state_dict):
        fitting = _check_trunk_weights(trunk, state_dict, source)
        trunk.load_state_dict(fitting, strict=False)
        ignored = len(state_dict) - len(fitting)
        return f"backbone: {len(fitting)} tensors ({ignored} of removed layers ignored)"
    return _load_whole_net(model, state_dict, source)


def starting_weights(config: TrainConfig, spec: ArchSpec) -> tuple[dict | None, str]:
    """The state_dict a run starts from (a local file, or torchvision's download) and its name.

    Fetched before the network is built, so an offline `pretrained` fails at once.
    """
    if config.backbone_weights is not None:
        return read_state_file(config.backbone_weights), config.backbone_weights
    if not config.pretrained:
        return None, ""
    if spec.hub_weights is not None:  # a timm entry: its default weights from the hub
        return download_hf_hub_state_dict(spec.hub_weights), spec.hub_weights
    weights_name = spec.backbone_weights or spec.torchvision_weights
    if weights_name is None:
        raise TrainError(f"{spec.name} has no ImageNet weights; use `no_pretrained`")
    with _quiet_stderr():  # torch.hub prints "Downloading ..." before failing offline
        state_dict = download_torchvision_state_dict(weights_name, spec.name)
    return state_dict, f"torchvision {weights_name.partition('.')[0]}"


def initial_model(config: TrainConfig, num_classes: int) -> CAMNet:
    """The registry's network with its starting weights (seeded, so every rank is identical)."""
    spec = get_arch(config.arch)
    state_dict, source = starting_weights(config, spec)
    torch.manual_seed(config.seed)
    model = build_model(spec.name, num_classes)
    if config.zero_init_head and model.classifier is not None:
        # Zero logits for every image: the first loss is ln C, no class favoured. Set before
        # the weights go in, so a whole network's own classifier (same classes) is kept.
        nn.init.zeros_(model.classifier.weight)
        if model.classifier.bias is not None:
            nn.init.zeros_(model.classifier.bias)
    if state_dict is not None:
        what = apply_initial_weights(model, spec, state_dict, source)
        if is_main_process():
            logger.info("starting weights from %s: %s", source, what)
    return model


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    saved = sys.stderr
    with open(os.devnull, "w") as devnull:
        sys.stderr = devnull
        try:
            yield
        finally:
            sys.stderr = saved
