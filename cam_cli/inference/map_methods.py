"""Where a batch's class maps come from: one object with one method (`MapMethod.maps`), so
another way of making maps (a gradient method such as Grad-CAM) plugs into the pipeline as
one class and one line in `MAP_METHODS`, and everything after the maps (boxes, scores,
evaluation) stays as it is.

The default is the paper's Class Activation Mapping (`ClassActivationMaps`): the classifier's
weights of each class over the last feature maps, read from the forward the pipeline already
ran, so it costs no second pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from cam_cli.cam import ten_crop as tc
from cam_cli.cam.maps import compute_cams
from cam_cli.models.camnet import CAMNet


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

    def __init__(self, model: CAMNet, input_size: int, ten_crop: bool) -> None:
        self.model, self.input_size, self.ten_crop = model, input_size, ten_crop

    def maps(self, forward: ForwardPass, class_indices: torch.Tensor) -> torch.Tensor:
        weight, _ = self.model.class_weights()
        weight = None if weight is None else weight.float()
        if self.ten_crop:
            return tc.ten_crop_cams(forward.features, weight, class_indices, self.input_size)
        return compute_cams(forward.features, weight, class_indices)  # [B, n, h, w]


# The map methods by name: a new one is its class and one line here.
MAP_METHODS: dict[str, Callable[[CAMNet, int, bool], MapMethod]] = {
    "cam": ClassActivationMaps,
}
DEFAULT_MAP_METHOD = "cam"


def map_method(name: str, model: CAMNet, input_size: int, ten_crop: bool) -> MapMethod:
    """The map method ``name`` for ``model`` (already prepared for the run: on its device)."""
    return MAP_METHODS[name](model, input_size, ten_crop)
