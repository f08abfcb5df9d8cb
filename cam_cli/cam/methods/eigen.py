"""Eigen-CAM (Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components",
IJCNN 2020): the projection of the layer's activations on their first principal component.

As pytorch-grad-cam 1.5.7 computes it (``utils/svd_on_activations.get_2d_projection``): the
activations of one image as ``[hw, C]`` (NaN set to 0), centred per channel over the positions,
projected on the first right singular vector. No gradient and no class: the same map for every
rank. The sign of a singular vector is not defined by the decomposition; like the peer, the map
takes the one the SVD routine returns (torch's, batched over images), and the ReLU applied
after it keeps the side that sign points to.
"""

from __future__ import annotations

import torch
from torch import Tensor


def eigencam(activations: Tensor) -> Tensor:
    """Maps ``[B, h, w]`` of activations ``[B, C, h, w]``, every image in one batched SVD."""
    batch, _, height, width = activations.shape
    values = activations.where(~activations.isnan(), 0.0)
    matrix = values.flatten(2).transpose(1, 2)  # [B, hw, C]
    matrix = matrix - matrix.mean(dim=1, keepdim=True)
    _, _, right = torch.linalg.svd(matrix, full_matrices=False)
    projection = matrix @ right[:, 0, :, None]  # [B, hw, 1]
    return projection.reshape(batch, height, width)
