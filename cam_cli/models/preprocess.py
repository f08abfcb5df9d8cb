"""Preprocessing belongs to the weights: how pixels must be prepared for a set of weights.

Images arrive as uint8 RGB batches (decoded and resized in DataLoader workers, 4x cheaper to
move than floats); `Preprocessing.apply` turns them into the network's input on its device as one
per-channel affine map.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import cast

import torch
from torch import Tensor

from cam_cli.runtime.streams import to_device
from cam_cli.settings import Normalization

ChannelValues = tuple[float, float, float]  # one value per colour channel


@dataclass(frozen=True)
class Preprocessing:
    name: str
    mean: ChannelValues  # in the channel order below, after dividing by `divide_by`
    std: ChannelValues
    channel_order: str  # "rgb" or "bgr"
    divide_by: float  # 255 for [0, 1] inputs, 1 for Caffe's 0..255

    def apply(self, images: Tensor) -> Tensor:
        """uint8 RGB ``[B, 3, H, W]`` -> float32 network input."""
        x = images.float()
        if self.channel_order == "bgr":
            x = x.flip(1)
        # pinned and non_blocking on CUDA: no host wait per batch (`runtime.streams`)
        mean = to_device(torch.tensor(self.mean), x.device).view(1, 3, 1, 1)
        std = to_device(torch.tensor(self.std), x.device).view(1, 3, 1, 1)
        scale = 1.0 / (std * self.divide_by)
        return torch.addcmul(-mean / std, x, scale)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """As a checkpoint stores it; ValueError for values that cannot normalise an RGB image
        (the network would fail on every image, or give NaN)."""
        preprocessing = cls(
            name=str(data["name"]),
            # three of each: checked below, with the other values
            mean=cast(ChannelValues, tuple(float(v) for v in data["mean"])),
            std=cast(ChannelValues, tuple(float(v) for v in data["std"])),
            channel_order=str(data["channel_order"]),
            divide_by=float(data["divide_by"]),
        )
        for key in ("mean", "std"):
            values = getattr(preprocessing, key)
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise ValueError(
                    f"preprocessing {key} must be 3 finite numbers, got {list(values)}"
                )
        if not all(v != 0 for v in preprocessing.std):
            raise ValueError(f"preprocessing std must not be 0, got {list(preprocessing.std)}")
        if preprocessing.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"preprocessing channel_order must be rgb or bgr, "
                             f"got {preprocessing.channel_order!r}")  # fmt: skip
        if not (math.isfinite(preprocessing.divide_by) and preprocessing.divide_by > 0):
            raise ValueError(f"preprocessing divide_by must be > 0, got {preprocessing.divide_by}")
        return preprocessing


IMAGENET = Preprocessing(
    Normalization.imagenet.value, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "rgb", 255.0
)
# Caffe: BGR, 0..255, minus the per-channel mean (B 104, G 117, R 123), no std scaling.
CAFFE = Preprocessing(Normalization.caffe.value, (104.0, 117.0, 123.0), (1.0, 1.0, 1.0), "bgr", 1.0)
# every choice named
PRESETS: dict[str, Preprocessing] = {Normalization.imagenet: IMAGENET, Normalization.caffe: CAFFE}


def get_preprocessing(name: str) -> Preprocessing:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown normalization {name!r}; choose from {sorted(PRESETS)}") from None
