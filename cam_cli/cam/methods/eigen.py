"""Eigen-CAM (Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components",
IJCNN 2020): the projection of the layer's activations on their first principal component.

As pytorch-grad-cam 1.5.7 computes it (``utils/svd_on_activations.get_2d_projection``): the
activations of one image as ``[hw, C]`` (NaN set to 0), centred per channel over the positions,
projected on the first right singular vector; no gradient and no class, so every rank gets the
same map.

Why numpy on the CPU, and ``full_matrices=True``: a singular vector's sign is not defined by the
decomposition, it is whatever the LAPACK routine's Householder steps give, and the ReLU applied
after the projection keeps only the side the sign points to, so a different routine (torch's
own, cuSOLVER) flips some maps entirely (seen on ConvNeXt). Making the very call the peer makes
(numpy's ``svd``, same job, float32 input) gives its sign; the stacked call runs LAPACK once per
image inside numpy, with no Python loop. The activations are small (``[B, C, h, w]`` at the
layer's resolution), so the trip to the CPU is cheap next to the forward pass.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def eigencam(activations: Tensor) -> Tensor:
    """Maps ``[B, h, w]`` (on the activations' device) of activations ``[B, C, h, w]``."""
    batch, channels, height, width = activations.shape
    values = activations.detach().float().cpu().numpy().copy()
    values[np.isnan(values)] = 0
    matrix = values.reshape(batch, channels, height * width).transpose(0, 2, 1)  # [B, hw, C]
    matrix = matrix - matrix.mean(axis=1, keepdims=True)
    _, _, right = np.linalg.svd(matrix, full_matrices=True)
    projection = matrix @ right[:, 0, :, None]  # [B, hw, 1]
    maps = torch.from_numpy(np.float32(projection).reshape(batch, height, width))
    return maps.to(activations.device)
