"""The map methods by name, and the one object a pipeline calls: ``make_method(name, model,
layer)`` -> a `LayerMapMethod` whose ``__call__(images [B, 3, H, W], classes [B, K] | k)``
returns ``(logits [B, classes], maps [B, K, h, w] float32)`` at the layer's resolution.

The maps are those of pytorch-grad-cam 1.5.7 before its last step: the method's map with the
ReLU its ``BaseCAM`` applies, not yet min-max scaled nor resized (`minmax` is its scaling, for
comparisons; cam-cli's box rules and metrics do their own normalising and upsampling, as they
do for CAM).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from cam_cli.cam.methods import eigen, gradient, score
from cam_cli.cam.methods.capture import capture
from cam_cli.cam.methods.layers import (
    LayerChoice,
    LayerError,
    check_map,
    probing,
    resolve_layer,
)
from cam_cli.errors import ArgumentError

# Masked images per forward pass in Score-CAM (its memory bound); pytorch-grad-cam's is 16.
SCORE_BATCH = 64


@dataclass(frozen=True)
class MethodSpec:
    """A method: its name, the paper it comes from, and whether it needs gradients."""

    name: str
    paper: str
    gradients: bool
    rank_map: Callable[[Tensor, Tensor], Tensor] | None = field(default=None, repr=False)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("gradcam", "Selvaraju et al., ICCV 2017", True, gradient.gradcam),
        MethodSpec("gradcam++", "Chattopadhay et al., WACV 2018", True, gradient.gradcam_plusplus),
        MethodSpec("xgradcam", "Fu et al., BMVC 2020", True, gradient.xgradcam),
        MethodSpec("layercam", "Jiang et al., IEEE TIP 2021", True, gradient.layercam),
        MethodSpec("hirescam", "Draelos & Carin, arXiv:2011.08891", True, gradient.hirescam),
        MethodSpec("scorecam", "Wang et al., CVPR Workshops 2020", False),
        MethodSpec("eigencam", "Muhammad & Yeasin, IJCNN 2020", False),
    )
}


def method_spec(name: str) -> MethodSpec:
    """The entry of ``name``, or an `ArgumentError` naming the known methods (nearest first)."""
    if name in METHODS:
        return METHODS[name]
    near = difflib.get_close_matches(name, list(METHODS), n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise ArgumentError("method", f"must be one of {', '.join(METHODS)}, got {name!r}{hint}")


def minmax(maps: Tensor) -> Tensor:
    """pytorch-grad-cam's scaling of each map (``scale_cam_image`` without its resize):
    ``m - min``, then divided by its max + 1e-7. Its ``BaseCAM`` applies it twice (per layer,
    then after averaging the layers), which differs from once only where a map's max is not far
    above 1e-7."""
    flat = maps.flatten(-2)
    shifted = flat - flat.min(dim=-1, keepdim=True).values
    return (shifted / (shifted.max(dim=-1, keepdim=True).values + 1e-7)).reshape(maps.shape)


@dataclass
class LayerMapMethod:
    """A method bound to a model and a layer; see the module docstring for the call."""

    spec: MethodSpec
    model: nn.Module
    layer: LayerChoice
    score_batch: int = SCORE_BATCH

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, images: Tensor, classes: Tensor | int) -> tuple[Tensor, Tensor]:
        spec = self.spec
        if spec.gradients:
            captured, maps = capture(self.model, self.layer, images, classes, spec.rank_map)
            assert maps is not None
        else:
            captured, _ = capture(self.model, self.layer, images, classes)
            activations = captured.activations
            if spec.name == "eigencam":
                one = eigen.eigencam(activations)[:, None]
                maps = one.expand(-1, captured.classes.shape[1], -1, -1)
            else:
                maps = score.scorecam(
                    self.model, images, activations, captured.classes, self.score_batch
                )
        return captured.logits, maps.clamp(min=0).float().contiguous()


def make_method(
    name: str, model: nn.Module, layer: str | None = None, *, score_batch: int = SCORE_BATCH
) -> LayerMapMethod:
    """``name`` on ``model`` at ``layer`` (None: the network's default layer,
    `cam_cli.cam.methods.layers.default_layer`). The model is used as it is: put it in eval
    mode first (every pipeline of cam-cli does), since the batched backward relies on the images
    of a batch not interacting."""
    spec = method_spec(name)
    if score_batch < 1:
        raise ArgumentError("score_batch", f"must be at least 1, got {score_batch}")
    return LayerMapMethod(spec, model, resolve_layer(model, layer), score_batch)


@dataclass(frozen=True)
class MethodSupport:
    """What `methods_for` answers: the default layer (None: none known, with ``reason``), the
    methods that run on the model, and a one-line reason for each that does not."""

    default_layer: str | None
    layer_why: str
    methods: tuple[str, ...]
    refused: dict[str, str]


def methods_for(model: nn.Module, input_size: int = 224) -> MethodSupport:
    """Which methods apply to ``model`` at its default layer, and that layer: one forward pass
    of one blank image (on the model's device, which may be ``meta``), no gradient."""
    try:
        choice = resolve_layer(model, None)
    except LayerError as error:
        reason = str(error)
        return MethodSupport(None, reason, (), dict.fromkeys(METHODS, reason))
    seen: list[object] = []
    handle = choice.module.register_forward_hook(lambda m, a, out: seen.append(out))
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        with probing(model):
            model(torch.zeros(1, 3, input_size, input_size, device=device))
        if len(seen) != 1:
            raise LayerError(f"`layer` {choice.name} runs {len(seen)} times in a forward pass")
        check_map(choice, seen[0])
    except LayerError as error:
        reason = str(error)
        return MethodSupport(choice.name, choice.why, (), dict.fromkeys(METHODS, reason))
    finally:
        handle.remove()
    return MethodSupport(choice.name, choice.why, tuple(METHODS), {})
