"""Where a batch's class maps come from: one object with one method (`MapMethod.maps`), so
another way of making maps (a gradient method such as Grad-CAM) plugs into the pipeline as
one class and one line in `MAP_METHODS`, and everything after the maps (boxes, scores,
evaluation) stays as it is.

The default is the paper's Class Activation Mapping (`ClassActivationMaps`): the classifier's
weights of each class over the last feature maps, read from the forward the pipeline already
ran, so it costs no second pass.
"""

from __future__ import annotations

import copy
import difflib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol

import torch

from cam_cli.cam import ten_crop as tc
from cam_cli.cam.maps import compute_cams
from cam_cli.cam.methods import METHODS, LayerMapMethod, make_method, methods_for
from cam_cli.errors import ArgumentError, NotCAMExact
from cam_cli.models.camnet import AnyHeadNet, CAMNet
from cam_cli.models.loading import LoadedModel, load_model
from cam_cli.models.registry import get_arch
from cam_cli.models.timm_models import (
    PREFIX,
    default_input_size,
    head_problem,
    meta_network,
    timm_names,
)
from cam_cli.settings import CamOptions, ModelOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForwardPass:
    """One batch's forward as a map method sees it: the network's input (the ten crops of
    each image with ten-crop), its logits and its last feature maps (float32)."""

    inputs: torch.Tensor  # [B, 3, S, S] (ten-crop: [10 B, 3, S, S]), preprocessed
    logits: torch.Tensor  # [B, classes] (ten-crop: [10 B, classes])
    features: torch.Tensor  # [B, C, h, w] (ten-crop: [10 B, C, h, w])


class MapMethod(Protocol):
    """Maps ``[B, n, h, w]`` of the classes ``class_indices`` ``[B, n]`` of each image of a
    batch, on the batch's device, at any resolution (the pipeline resizes them to the input
    size for boxing). Called under ``torch.inference_mode``, in several threads at once on a
    CPU of several lanes: it must not change shared state."""

    def maps(self, forward: ForwardPass, class_indices: torch.Tensor) -> torch.Tensor: ...


class ClassActivationMaps:
    """The paper's CAM (`cam.maps.compute_cams`), or with ``ten_crop`` the released ten-crop
    CAM (`cam.ten_crop.ten_crop_cams`: the crops' maps put back and merged)."""

    def __init__(
        self, model: CAMNet, input_size: int, ten_crop: bool, layer: str | None = None
    ) -> None:
        if layer is not None:
            raise ArgumentError(
                "layer", "is read by the gradient methods; `method` cam uses the classifier's maps"
            )
        if isinstance(model, AnyHeadNet):
            raise ArgumentError("method", "cam needs a CAM-exact head (GAP + one linear layer)")
        self.model, self.input_size, self.ten_crop = model, input_size, ten_crop

    def maps(self, forward: ForwardPass, class_indices: torch.Tensor) -> torch.Tensor:
        weight, _ = self.model.class_weights()
        weight = None if weight is None else weight.float()
        if self.ten_crop:
            return tc.ten_crop_cams(forward.features, weight, class_indices, self.input_size)
        return compute_cams(forward.features, weight, class_indices)  # [B, n, h, w]


class LayerMaps:
    """A method of `cam.methods` (Grad-CAM and the others) as a `MapMethod`: its own forward
    with gradients on (the pipeline's runs under ``torch.inference_mode``, which records
    nothing) and one backward per rank from the layer to the logits, for the classes the
    pipeline chose. In float32 whatever the run's precision.

    The library hooks the layer's module during a call, so neither two lanes nor the
    pipeline's own forward may share a model with it: each thread gets its own copy, taken from
    a template that is never run (a copy of a model in use would carry another thread's
    hook)."""

    def __init__(
        self, model: CAMNet, input_size: int, ten_crop: bool, layer: str | None, name: str
    ) -> None:
        if ten_crop:
            raise ArgumentError("ten_crop", f"works with `method` cam only, not {name}")
        self.method = make_method(name, model, layer)
        self.layer = self.method.layer.name
        logger.info("%s reads layer %s (%s)", name, self.layer, self.method.layer.why)
        self._template = copy.deepcopy(model)
        self._lock = threading.Lock()
        self._own = threading.local()

    def _method(self) -> LayerMapMethod:
        method = getattr(self._own, "method", None)
        if method is None:
            # the pipeline runs under inference_mode: a copy made there could not enter a graph
            with self._lock, torch.inference_mode(False):
                model = copy.deepcopy(self._template)
            method = make_method(self.method.name, model, self.layer)
            self._own.method = method
        return method

    def maps(self, forward: ForwardPass, class_indices: torch.Tensor) -> torch.Tensor:
        method = self._method()
        with torch.inference_mode(False):  # plain copies: inference tensors cannot enter a graph
            inputs, classes = forward.inputs.float().clone(), class_indices.clone()
            _, maps = method(inputs, classes)
        return maps


# The map methods by name: a new one is its class and one line here.
MAP_METHODS: dict[str, Callable[..., MapMethod]] = {
    "cam": ClassActivationMaps,
    **{name: partial(LayerMaps, name=name) for name in METHODS},
}
DEFAULT_MAP_METHOD = "cam"


def map_method(
    name: str, model: CAMNet, input_size: int, ten_crop: bool, layer: str | None = None
) -> MapMethod:
    """The map method ``name`` for ``model`` (already prepared for the run: on its device),
    reading ``layer`` (gradient methods; None: the network's default)."""
    if name not in MAP_METHODS:
        near = difflib.get_close_matches(name, list(MAP_METHODS), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise ArgumentError(
            "method", f"must be one of {', '.join(MAP_METHODS)}, got {name!r}{hint}"
        )
    return MAP_METHODS[name](model, input_size, ten_crop, layer)


def method_settings(maps: MapMethod) -> dict[str, str]:
    """What records and reports say about the maps: nothing for the paper's CAM (its records
    stay as they were), else the method and the layer that made them."""
    if isinstance(maps, LayerMaps):
        return {"method": maps.method.name, "layer": maps.layer}
    return {}


def load_for_method(options: ModelOptions, cam: CamOptions, device: str) -> LoadedModel:
    """The model for ``cam.method``: the paper's CAM needs a CAM-exact head, the other methods
    take any head (`models.camnet.AnyHeadNet`). A head refused for CAM is refused in the one
    line it always was, naming the methods that do work on that network."""
    if cam.method != DEFAULT_MAP_METHOD:
        if options.onnx is not None:
            raise ArgumentError(
                "method", f"{cam.method} needs the PyTorch network's layers, not an `onnx` file"
            )
        options = replace(options, cam_exact=False)
    try:
        return load_model(options, device=device)
    except NotCAMExact as error:
        working = _methods_on(options)
        if not working:
            raise
        raise NotCAMExact(f"{error}; `method` {', '.join(working)} work on it") from None


def _methods_on(options: ModelOptions) -> tuple[str, ...]:
    """The methods of `cam.methods` that run on ``options.arch`` at its default layer (built
    on the meta device: no memory, no weights)."""
    if options.arch is None:
        return ()
    spec = get_arch(options.arch, cam_exact=False)
    with torch.device("meta"):
        network = spec.build(1000)
    return methods_for(network.eval(), spec.default_input_size).methods


def describe_timm_methods(pattern: str) -> list[tuple[str, str, str]]:
    """Rows ``(name, methods, default layer)`` of every timm model matching ``pattern``
    (`models.timm_models.timm_names`), CAM-exact or not: which map methods run on it (``cam``
    where its head is CAM-exact) and the layer the others read by default (or why none).
    Built on the meta device: no memory, no weights."""
    rows = []
    for name in timm_names(pattern):
        try:
            network = meta_network(PREFIX + name)
            size = default_input_size(network)
            exact = head_problem(network, size) is None
            support = methods_for(network, size)
        except Exception:  # noqa: BLE001 - a model timm cannot build on meta: not listed
            continue
        methods = (*(("cam",) if exact else ()), *support.methods)
        layer = support.default_layer or f"none ({support.layer_why})"
        rows.append((PREFIX + name, ",".join(methods) or "none", layer))
    return rows
