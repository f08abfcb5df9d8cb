"""Class activation maps, batched: one forward pass, one matrix product for all requested classes.

``M_c(x, y) = sum_k w_k^c f_k(x, y)`` (paper eq. 2). Since the logits are
``S_c = sum_k w_k^c mean_{x,y} f_k(x, y) + b_c``, ``mean_{x,y} M_c = S_c - b_c`` exactly: the CAM is
the spatial decomposition of the class score (tested for every registry entry).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def top_classes(logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Softmax scores and indices of the k most probable classes: ``([B, k], [B, k])``."""
    probabilities = logits.float().softmax(dim=1)
    return probabilities.topk(min(k, probabilities.shape[1]), dim=1)


def class_scores(logits: Tensor, class_indices: Tensor) -> Tensor:
    """Softmax scores of given classes ``[B, k]``."""
    return logits.float().softmax(dim=1).gather(1, class_indices)


def compute_cams(features: Tensor, weight: Tensor | None, class_indices: Tensor) -> Tensor:
    """CAMs ``[B, n, h, w]`` of ``class_indices [B, n]`` from features ``[B, K, h, w]``.

    ``weight`` is the linear classifier's ``[C, K]``; ``None`` means the features already are one
    map per class (SqueezeNet's conv classifier), so the CAM is a gather.
    """
    if weight is None:
        index = class_indices[:, :, None, None].expand(-1, -1, *features.shape[-2:])
        return features.gather(1, index)
    class_weights = weight[class_indices].to(features.dtype)  # [B, n, K]
    return torch.einsum("bnk,bkhw->bnhw", class_weights, features)  # M_c = sum_k w_k^c f_k


def upsample_cams(cams: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of ``[B, n, h, w]`` maps to ``size`` (the paper's resize to image)."""
    return F.interpolate(cams.float(), size=size, mode="bilinear", align_corners=False)
