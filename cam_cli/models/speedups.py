"""Folding batch norm into the convolution before it: an inference speed-up that keeps results
(to float rounding), applied by `inference.pipeline.Localizer` to its own copy of the model.

Found with scripts/bench_bbox.py on a 2-core CPU, together with channels_last memory format
(the pipeline) and keeping freed memory in the heap (`common.device.keep_freed_memory`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d into the Conv2d that alone feeds it; returns the count.

    Inference-only (the model must be in eval mode); a model fx cannot trace is left as it is.
    """
    if model.training:
        raise ValueError("fold_batch_norms is for eval-mode models only")
    if not any(isinstance(module, nn.BatchNorm2d) for module in model.modules()):
        return 0  # nothing to fold: no need to trace (a fifth of a second for a big network)
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # untraceable forward: no folding, same results, a little slower
        return 0
    modules = dict(model.named_modules())
    folded = 0
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0]
        if (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and isinstance(modules.get(source.target), nn.Conv2d)
            and len(source.users) == 1
        ):
            conv, batch_norm = modules[source.target], modules[node.target]
            model.set_submodule(source.target, fuse_conv_bn_eval(conv, batch_norm))
            model.set_submodule(node.target, nn.Identity())
            folded += 1
    return folded
