"""Inference speed-ups that keep results (to float rounding), applied by `pipeline.Localizer`.

Found with scripts/bench_bbox.py on a 2-core CPU: folding batch norm into the convolution before
it, channels_last memory format (also in fp32: oneDNN's fast kernels want NHWC), and keeping freed
memory in the heap so large activations are not page-faulted in again on every batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d into the Conv2d that alone feeds it; returns the count.

    Inference-only (the model must be in eval mode); a model fx cannot trace is left as it is.
    """
    if model.training:
        raise ValueError("fold_batch_norms is for eval-mode models only")
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


def keep_freed_memory() -> bool:
    """glibc: serve allocations from the heap (no mmap) and never trim it back.

    Every batch allocates the same large activations; with glibc's defaults each is a fresh
    mmap that the kernel must zero-fill page by page. Peak memory is unchanged (it does not grow
    with the number of images: see the RSS check of scripts/bench_bbox.py).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False
