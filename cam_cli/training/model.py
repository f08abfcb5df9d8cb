"""The model side of training: starting weights, Caffe-style parameter groups, the lr schedule.

The paper fine-tunes each network from its ImageNet weights; only the backbone has such weights
(the added CAM conv and classifier start fresh), so starting weights go into the truncated
torchvision trunk and are checked key by key: every trunk tensor must be there, and extra keys
may only be those of the layers the paper removed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from cam_cli.common.distributed import is_main_process
from cam_cli.models.registry import ArchSpec, CAMNet, build_model, get_arch
from cam_cli.models.weights import (
    ModelLoadError,
    check_weight_dtypes,
    download_hf_hub_state_dict,
    download_torchvision_state_dict,
    read_state_file,
    unwrap_state_dict,
)
from cam_cli.training.config import TrainConfig, TrainError

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
    try:
        check_weight_dtypes(state_dict, source)
    except ModelLoadError as error:
        raise TrainError(str(error)) from None
    trunk = getattr(model.net, "trunk", None)
    if spec.paper and trunk is not None and not any(k.startswith("net.") for k in state_dict):
        fitting = _check_trunk_weights(trunk, state_dict, source)
        trunk.load_state_dict(fitting, strict=False)
        ignored = len(state_dict) - len(fitting)
        return f"backbone: {len(fitting)} tensors ({ignored} of removed layers ignored)"
    return _load_whole_net(model, state_dict, source)


def starting_weights(config: TrainConfig, spec: ArchSpec) -> tuple[dict | None, str]:
    """The state_dict a run starts from (a local file, or torchvision's download) and its name.

    Fetched before the network is built, so an offline ``--pretrained`` fails at once.
    """
    if config.backbone_weights is not None:
        try:
            return read_state_file(config.backbone_weights), config.backbone_weights
        except ModelLoadError as error:
            raise TrainError(str(error)) from None
    if not config.pretrained:
        return None, ""
    if spec.hub_weights is not None:  # a timm entry: its default weights from the hub
        try:
            return download_hf_hub_state_dict(spec.hub_weights), spec.hub_weights
        except ModelLoadError as error:
            raise TrainError(str(error)) from None
    weights_name = spec.backbone_weights or spec.torchvision_weights
    if weights_name is None:
        raise TrainError(f"{spec.name} has no ImageNet weights; use --no-pretrained")
    with _quiet_stderr():  # torch.hub prints "Downloading ..." before failing offline
        try:
            state_dict = download_torchvision_state_dict(weights_name, spec.name)
        except ModelLoadError as error:
            raise TrainError(str(error)) from None
    return state_dict, f"torchvision {weights_name.partition('.')[0]}"


def initial_model(config: TrainConfig, num_classes: int) -> CAMNet:
    """The registry's network with its starting weights (seeded, so every rank is identical)."""
    spec = get_arch(config.arch)
    state_dict, source = starting_weights(config, spec)
    torch.manual_seed(config.seed)
    model = build_model(spec.name, num_classes)
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


def new_layer_modules(model: CAMNet) -> list[nn.Module]:
    """The layers trained at ``new_layers_lr_mult``: the paper's added layers, else the
    classifier (the one layer fine-tuning replaces)."""
    if hasattr(model.net, "new_layers"):
        return list(model.net.new_layers())
    return [model.classifier] if model.classifier is not None else []


def freeze_backbone(model: CAMNet) -> list[nn.Module]:
    """Fix the backbone: no gradients, and kept in eval mode by the loop so its batch-norm
    statistics stay the ImageNet ones. Only the new layers then train, which costs a forward
    pass through the backbone and no backward pass.

    The backbone is ``net.trunk`` for the paper's -gap nets; for a network that already ends
    in GAP + linear (mobilenet_v2, resnet50, ...) it is every part of the network but the one
    holding the classifier, so fine-tuning trains the new linear layer alone.
    """
    trunk = getattr(model.net, "trunk", None)
    if trunk is not None:
        frozen = [trunk]
    elif model.classifier is None:
        raise TrainError(
            "freeze_backbone needs a network with a linear classifier to train "
            "(its class maps are part of the backbone)"
        )
    else:
        classifier = model.classifier
        frozen = [
            child
            for child in model.net.children()
            if not any(module is classifier for module in child.modules())
        ]
    for module in frozen:
        module.requires_grad_(False)
        module.eval()
    return frozen


def param_groups(model: CAMNet, config: TrainConfig) -> list[dict[str, Any]]:
    """Caffe-style groups: (backbone | new layers) x (weights | biases and norm parameters).

    ``lr_scale`` multiplies the scheduled base lr; it is stored in the group, so the optimizer's
    own state_dict says how every group was trained.
    """
    new_ids = {id(p) for m in new_layer_modules(model) for p in m.parameters()}
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            key = (id(parameter) in new_ids, parameter.ndim <= 1)
            buckets.setdefault(key, []).append(parameter)
    groups = []
    for (is_new, is_bias), params in sorted(buckets.items()):
        scale = (config.new_layers_lr_mult if is_new else 1.0) * (
            config.bias_lr_mult if is_bias else 1.0
        )
        decay = config.weight_decay * (config.bias_decay_mult if is_bias else 1.0)
        name = f"{'new' if is_new else 'backbone'}/{'biases' if is_bias else 'weights'}"
        groups.append(
            {"params": params, "name": name, "lr_scale": scale, "weight_decay": decay,
             "lr": config.lr * scale}
        )  # fmt: skip
    return groups


def build_optimizer(model: CAMNet, config: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(param_groups(model, config), lr=config.lr, momentum=config.momentum)


def lr_factor(config: TrainConfig, iteration: int, steps_per_epoch: int) -> float:
    """The schedule's multiplier of every group's lr at a global iteration (epochs may be
    fractional: decays happen at the iteration where that epoch point is reached)."""
    epoch = iteration / max(steps_per_epoch, 1)
    factor = 1.0
    warmup = config.warmup_epochs
    if warmup > 0 and epoch < warmup:
        factor = (iteration + 1) / max(round(warmup * steps_per_epoch), 1)
    if config.lr_schedule == "step":
        factor *= config.lr_gamma ** math.floor(epoch / config.lr_step_size + 1e-9)
    elif config.lr_schedule == "multistep":
        factor *= config.lr_gamma ** sum(epoch + 1e-9 >= m for m in config.lr_milestones)
    elif config.lr_schedule == "cosine":
        span = max(config.epochs - warmup, 1e-9)
        progress = min(max(epoch - warmup, 0.0) / span, 1.0)
        factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def set_lr(optimizer: torch.optim.Optimizer, config: TrainConfig, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = config.lr * group["lr_scale"] * factor
