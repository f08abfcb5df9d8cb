"""The released ten-crop CAM (zhoubolei/CAM ``ILSVRC_generate_heatmap.m`` and
``mergeTenCrop.m``): the image resized to 256x256, ten 224x224 crops (four corners, the centre,
and the mirror image of each), each crop's CAM put back at its place in the 256x256 frame (the
mirrored ones flipped back first), and the absolute values summed.

Batched: the ten crops of B images are one forward pass of 10B images, and the CAMs of the
chosen classes of all crops are one einsum (`crop_cams`). Other input sizes keep the ratio:
a network taking ``s`` pixels sees crops of ``s`` from a frame of ``round(s * 256 / 224)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cam_cli.cam.maps import upsample_cams

CROPS = 10


def frame_size(crop: int) -> int:
    """The side of the resized image the crops are cut from: 256 for 224."""
    return round(crop * 256 / 224)


def crop_offsets(frame: int, crop: int) -> list[tuple[int, int]]:
    """``(y, x)`` of the five crops: top-left, top-right, bottom-left, bottom-right, centre.
    The five mirrored crops (indices 5..9) are cut at the same places."""
    far, mid = frame - crop, (frame - crop) // 2
    return [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]


def ten_crops(x: Tensor, crop: int) -> Tensor:
    """``[B, C, F, F]`` -> ``[10B, C, crop, crop]``, image-major: image b's crops are rows
    ``10b .. 10b + 9``, crop t of each as in `crop_offsets`, then the same five mirrored."""
    frame = x.shape[-1]
    five = [x[..., y : y + crop, x0 : x0 + crop] for y, x0 in crop_offsets(frame, crop)]
    crops = torch.stack(five + [c.flip(-1) for c in five], dim=1)  # [B, 10, C, crop, crop]
    return crops.flatten(0, 1)


def mean_crop_probabilities(logits: Tensor) -> Tensor:
    """``[10B, classes]`` logits -> ``[B, classes]``: the mean of the ten crops' softmax scores,
    from which the classes are chosen."""
    probabilities = logits.float().softmax(dim=1)
    return probabilities.view(-1, CROPS, probabilities.shape[1]).mean(dim=1)


def crop_cams(features: Tensor, weight: Tensor | None, class_indices: Tensor) -> Tensor:
    """CAMs ``[B, 10, n, h, w]`` of ``class_indices [B, n]`` in every crop, from the crops'
    features ``[10B, K, h, w]``: one einsum (a gather for a conv classifier, ``weight=None``)."""
    count, channels, height, width = features.shape
    features = features.view(count // CROPS, CROPS, channels, height, width)
    if weight is None:
        index = class_indices[:, None, :, None, None].expand(-1, CROPS, -1, height, width)
        return features.gather(2, index)
    class_weights = weight[class_indices].to(features.dtype)  # [B, n, K]
    return torch.einsum("bnk,btkhw->btnhw", class_weights, features)


def merge_crops(maps: Tensor, frame: int) -> Tensor:
    """Crop maps ``[B, 10, n, crop, crop]`` (already at crop size) -> ``[B, n, frame, frame]``:
    the mirrored ones flipped back, each put at its crop's place, absolute values summed."""
    batch, crops, count, crop, _ = maps.shape
    if crops != CROPS:
        raise ValueError(f"expected {CROPS} crops, got {crops}")
    merged = maps.new_zeros(batch, count, frame, frame)
    offsets = crop_offsets(frame, crop)
    for t in range(CROPS):
        y, x = offsets[t % 5]
        part = maps[:, t].flip(-1) if t >= 5 else maps[:, t]
        merged[..., y : y + crop, x : x + crop] += part.abs()
    return merged


def ten_crop_cams(
    features: Tensor, weight: Tensor | None, class_indices: Tensor, crop: int
) -> Tensor:
    """The merged ten-crop CAMs ``[B, n, F, F]``: `crop_cams`, each upsampled to the crop size
    (bilinear, as the one-crop path), then `merge_crops`."""
    cams = crop_cams(features, weight, class_indices)
    batch, crops, count, height, width = cams.shape
    upsampled = upsample_cams(cams.flatten(0, 1), (crop, crop))
    return merge_crops(upsampled.view(batch, crops, count, crop, crop), frame_size(crop))
