"""What an SGD step trains and how fast: the fixed backbone, Caffe-style parameter groups (the
paper's added layers at a higher lr), the optimizer and the lr schedule.

Starting weights are `training.initial_weights`' job."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cam_cli.errors import TrainError
from cam_cli.models.camnet import CAMNet
from cam_cli.training.config import TrainConfig


def new_layer_modules(model: CAMNet) -> list[nn.Module]:
    """The layers trained at ``new_layers_lr_mult``: the paper's added layers, else the
    classifier (the one layer fine-tuning replaces)."""
    new_layers = getattr(model.net, "new_layers", None)  # a method of the paper's nets only
    if new_layers is not None:
        return list(new_layers())
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
