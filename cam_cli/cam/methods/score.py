"""Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional
Neural Networks", CVPR Workshops 2020): each channel of the layer, upsampled to the input and
min-max normalised, masks the input; the target logit of the masked input, softmaxed over the
channels, weighs the channel.

As pytorch-grad-cam 1.5.7 computes it (``score_cam.py``): bilinear upsampling with
``align_corners=True`` (``nn.UpsamplingBilinear2d``), ``(m - min) / (max - min + 1e-8)``, the
raw logit as the score (``ClassifierOutputTarget``), softmax over channels.

Batched: the ``B x C`` masked images of a batch run through the network ``score_batch`` at a
time, taken in order over (image, channel) pairs, so memory is bounded by ``score_batch`` masked
images (and their forward pass) whatever ``B`` and ``C`` are. One forward of a masked image
gives the scores of all K ranks at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cam_cli.cam.methods.layers import logits_of


def channel_scores(
    model: nn.Module, images: Tensor, activations: Tensor, classes: Tensor, score_batch: int
) -> Tensor:
    """Scores ``[B, K, C]``: the logit of class ``classes[b, k]`` on image ``b`` masked by
    channel ``c``."""
    batch, channels = activations.shape[:2]
    size = images.shape[-2:]
    scores = torch.empty(batch, classes.shape[1], channels, device=images.device)
    total = batch * channels
    with torch.no_grad():
        for start in range(0, total, score_batch):
            index = torch.arange(start, min(start + score_batch, total), device=images.device)
            image, channel = index // channels, index % channels
            maps = activations[image, channel][:, None]  # [n, 1, h, w]
            masks = F.interpolate(maps, size=size, mode="bilinear", align_corners=True)
            flat = masks.flatten(1)
            low = flat.min(dim=1).values[:, None, None, None]
            high = flat.max(dim=1).values[:, None, None, None]
            masks = (masks - low) / (high - low + 1e-8)
            masked = images[image] * masks.to(images.dtype)
            logits = logits_of(model(masked)).float()
            scores[image, :, channel] = logits.gather(1, classes[image])
    return scores


def scorecam(
    model: nn.Module, images: Tensor, activations: Tensor, classes: Tensor, score_batch: int
) -> Tensor:
    """Maps ``[B, K, h, w]`` of the ``classes [B, K]`` (before the ReLU of the caller)."""
    weights = channel_scores(model, images, activations, classes, score_batch).softmax(dim=-1)
    return torch.einsum("bkc,bchw->bkhw", weights, activations)
