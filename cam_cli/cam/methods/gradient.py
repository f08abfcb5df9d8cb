"""The gradient methods, one rank at a time and batched over images: each turns the layer's
activations ``A [B, C, h, w]`` and the gradient ``G = dS_c / dA`` of the target logit ``S_c``
into a map ``[B, h, w]``, with the formulas, constants and order of pytorch-grad-cam 1.5.7
(``get_cam_weights`` / ``get_cam_image`` of each method; the ReLU that its ``BaseCAM`` applies
after them is applied by the caller, `cam_cli.cam.methods.registry`).

Every function is elementwise or a reduction over the channel or spatial axes, so it runs on
the whole batch at once on the device that holds the tensors.
"""

from __future__ import annotations

from torch import Tensor

SPATIAL = (2, 3)


def weighted_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """``sum_k w_k A_k``: ``weights [B, C]``, ``activations [B, C, h, w]`` -> ``[B, h, w]``."""
    return (weights[:, :, None, None] * activations).sum(dim=1)


def gradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017): channel weights are the spatial mean of the
    gradient. On a GAP + linear network read at the CAM layer, ``dS_c/dA_k(x, y) = w_k^c / hw``,
    so the map is CAM divided by ``hw``: CAM up to a positive scale."""
    return weighted_sum(gradients.mean(dim=SPATIAL), activations)


def gradcam_plusplus(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al., "Grad-CAM++: Generalized Gradient-Based Visual
    Explanations for Deep Convolutional Networks", WACV 2018, eq. 19): the higher derivatives
    of an exponential of the score are written with powers of the first gradient, so
    ``alpha = g^2 / (2 g^2 + sum(A) g^3 + eps)``, zero where ``g = 0``, and
    ``w = sum relu(g) alpha``."""
    squared = gradients**2
    cubed = squared * gradients
    sum_activations = activations.sum(dim=SPATIAL, keepdim=True)
    alpha = squared / (2 * squared + sum_activations * cubed + 0.000001)
    alpha = alpha.where(gradients != 0, 0.0)
    return weighted_sum((gradients.clamp(min=0) * alpha).sum(dim=SPATIAL), activations)


def xgradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """XGrad-CAM (Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and
    Explanation of CNNs", BMVC 2020): channel weights are the gradient averaged with the
    activations' own spatial distribution, ``w = sum g A / (sum A + eps)``."""
    sum_activations = activations.sum(dim=SPATIAL, keepdim=True)
    weights = (gradients * activations / (sum_activations + 1e-7)).sum(dim=SPATIAL)
    return weighted_sum(weights, activations)


def layercam(activations: Tensor, gradients: Tensor) -> Tensor:
    """LayerCAM (Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
    Localization", IEEE TIP 2021): every position keeps its own positive gradient as weight,
    ``sum_k relu(g_k) A_k``, which keeps detail in earlier layers."""
    return (gradients.clamp(min=0) * activations).sum(dim=1)


def hirescam(activations: Tensor, gradients: Tensor) -> Tensor:
    """HiResCAM (Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations
    of convolutional neural networks", arXiv:2011.08891, 2020): the gradient and the activation
    are multiplied elementwise before summing over channels, ``sum_k g_k A_k``, which for a
    network ending in a linear layer is exactly the score's contribution of each position."""
    return (gradients * activations).sum(dim=1)
