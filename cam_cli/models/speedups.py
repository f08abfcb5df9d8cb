"""Folding batch norm into the convolution before it: an inference speed-up that keeps results
(to float rounding), applied by `inference.localizer.Localizer` to its own copy of the model.

Found with scripts/benchmarks/bench_bbox.py on a 2-core CPU, together with channels_last memory
format (the pipeline) and keeping freed memory in the heap (`runtime.device.keep_freed_memory`).
"""

from __future__ import annotations

import itertools
from typing import TypeGuard

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _plain_batch_norm(module: nn.Module | None) -> TypeGuard[nn.BatchNorm2d]:
    # Exactly BatchNorm2d: subclasses may do more (timm's BatchNormAct2d holds an activation).
    return type(module) is nn.BatchNorm2d


def _plain_conv(module: nn.Module | None) -> TypeGuard[nn.Conv2d]:
    # Exactly Conv2d: subclasses may transform their weight (timm's StdConv2d standardises it).
    return type(module) is nn.Conv2d


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d into the Conv2d that alone feeds it; returns the count.

    Inference-only (the model must be in eval mode); a model fx cannot trace is left as it is.
    """
    if model.training:
        raise ValueError("fold_batch_norms is for eval-mode models only")
    folded = _fold_in_sequentials(model)
    if not any(_plain_batch_norm(module) for module in model.modules()):
        return folded  # nothing left: no need to trace (half a second for MobileNetV2 here)
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - untraceable forward: no folding, same results
        return 0
    modules = dict(model.named_modules())
    for node in graph.nodes:
        if node.op != "call_module" or not _plain_batch_norm(modules.get(node.target)):
            continue
        source = node.args[0]
        if not (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and isinstance(source.target, str)  # a call_module node names its module
            and isinstance(node.target, str)
            and len(source.users) == 1
        ):
            continue
        conv, batch_norm = modules.get(source.target), modules[node.target]
        if _plain_conv(conv) and _plain_batch_norm(batch_norm):
            model.set_submodule(source.target, fuse_conv_bn_eval(conv, batch_norm))
            model.set_submodule(node.target, nn.Identity())
            folded += 1
    return folded


def _fold_in_sequentials(model: nn.Module) -> int:
    """The common case without tracing: a Conv2d followed by a BatchNorm2d in an nn.Sequential
    (torchvision's Conv2dNormActivation, VGG-BN...) feeds that batch norm alone."""
    folded = 0
    for sequence in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        # the registry itself, in order and with repeats (named_children skips a repeat)
        children = sequence._modules  # noqa: SLF001
        for first, second in itertools.pairwise(list(children)):
            conv, batch_norm = children[first], children[second]
            if _plain_conv(conv) and _plain_batch_norm(batch_norm):
                children[first] = fuse_conv_bn_eval(conv, batch_norm)
                children[second] = nn.Identity()
                folded += 1
    return folded
