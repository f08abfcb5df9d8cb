"""One forward pass that keeps a layer's output, and the gradients of the selected logits with
respect to it: one backward per rank, through the part of the network after the layer only.

Why this way, and why it is exact:
- The forward runs under ``no_grad`` until the layer; a forward hook then switches gradients on
  and hands the rest of the network a fresh leaf holding the layer's output. Nothing before the
  layer is recorded, so the backward cannot go further back than the layer, and no weight
  gradient is computed (``torch.autograd.grad`` asks for the leaf only). The values are those of
  an ordinary forward: the same operations on the same inputs.
- For rank ``r`` the selected logits of the whole batch are summed and differentiated once:
  in eval mode the images of a batch do not interact (batch norm uses its running statistics),
  so the gradient of the sum with respect to image ``b``'s activations is that of image ``b``'s
  own logit, which is what pytorch-grad-cam computes with one call per image and class. The
  graph after the layer is kept (``retain_graph``) between ranks instead of recomputed: a
  backward costs about what the forward of that part costs, and keeping it saves running it K
  times.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cam_cli.cam.maps import top_classes
from cam_cli.cam.methods.layers import LayerChoice, LayerError, apply_reshape, check_map, logits_of

# (activations [B, C, h, w], gradients [B, C, h, w]) -> maps [B, h, w] of one rank
RankMap = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Captured:
    """A forward pass: logits ``[B, classes]``, the selected classes ``[B, K]`` and the layer's
    output as a map ``[B, C, h, w]`` (float32, detached)."""

    logits: Tensor
    classes: Tensor
    activations: Tensor


def _select(logits: Tensor, classes: Tensor | int) -> Tensor:
    if isinstance(classes, int):
        return top_classes(logits.detach(), classes)[1]
    if classes.ndim != 2 or classes.shape[0] != logits.shape[0]:
        raise ValueError(
            f"`classes` must be [B, K] with B = {logits.shape[0]}, got {list(classes.shape)}"
        )
    return classes.to(logits.device)


def _plain(images: Tensor) -> Tensor:
    # an inference-mode tensor cannot enter a graph; its values can
    return images.clone() if images.is_inference() else images


def capture(
    model: nn.Module,
    layer: LayerChoice,
    images: Tensor,
    classes: Tensor | int,
    rank_map: RankMap | None = None,
) -> tuple[Captured, Tensor | None]:
    """Run ``model`` once on ``images``; with ``rank_map``, also one backward per rank, giving
    ``rank_map(activations, gradients)`` for every rank as maps ``[B, K, h, w]``.

    ``classes`` is ``[B, K]`` or an int k: the top-k classes of this very forward, as
    `cam_cli.cam.maps.top_classes` picks them."""
    store: list[Tensor] = []
    want_grad = rank_map is not None
    owner = threading.get_ident()

    def hook(module: nn.Module, args: object, output: object) -> Tensor | None:
        # the module is shared: another thread's forward of the same model (the CPU lanes of
        # the pipeline) passes through this hook too, and is left alone
        if threading.get_ident() != owner:
            return None
        if store:
            raise LayerError(
                f"`layer` {layer.name} runs more than once in a forward pass; pick a layer "
                "that runs once"
            )
        check_map(layer, output)
        assert isinstance(output, Tensor)
        if not want_grad:
            store.append(output.detach())
            return None
        torch.set_grad_enabled(True)  # restored when the no_grad block below ends
        leaf = output.detach().requires_grad_(True)
        store.append(leaf)
        return leaf.clone()  # a layer followed by an in-place op must not modify the leaf

    handle = layer.module.register_forward_hook(hook)
    try:
        with torch.inference_mode(False), torch.no_grad():
            output = model(_plain(images))
            if not store:
                raise LayerError(f"`layer` {layer.name} is not called by the forward pass")
            logits = logits_of(output)
            chosen = _select(logits, classes)
            raw = store[0]
            activations = apply_reshape(layer, raw.detach()).float()
            if rank_map is None:
                return Captured(logits.detach(), chosen, activations), None
            maps = []
            ranks = chosen.shape[1]
            for rank in range(ranks):
                with torch.enable_grad():
                    target = logits.gather(1, chosen[:, rank : rank + 1]).sum()
                    (grad,) = torch.autograd.grad(
                        target, raw, retain_graph=rank < ranks - 1, allow_unused=True
                    )
                if grad is None:
                    raise LayerError(
                        f"no gradient flows from the logits back to `layer` {layer.name}"
                    )
                maps.append(rank_map(activations, apply_reshape(layer, grad).float()))
    finally:
        handle.remove()
    stacked = (
        torch.stack(maps, dim=1)
        if maps
        else activations.new_zeros(activations.shape[0], 0, *activations.shape[2:])
    )
    return Captured(logits.detach(), chosen, activations), stacked
