"""Map methods beside CAM, batched: Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM,
Score-CAM and Eigen-CAM, each as pytorch-grad-cam 1.5.7 defines it, on any network whose layer
gives a spatial map (ViT/DeiT tokens and Swin's channels-last maps reshaped).

``make_method(name, model, layer=None)(images, classes)`` -> ``(logits, maps [B, K, h, w])``:
one forward pass for the batch, one backward per rank through the part after the layer only.
"""

from cam_cli.cam.methods.layers import LayerChoice, LayerError, default_layer, resolve_layer
from cam_cli.cam.methods.registry import (
    METHODS,
    LayerMapMethod,
    MethodSpec,
    MethodSupport,
    make_method,
    method_spec,
    methods_for,
    minmax,
)

__all__ = [
    "METHODS",
    "LayerChoice",
    "LayerError",
    "LayerMapMethod",
    "MethodSpec",
    "MethodSupport",
    "default_layer",
    "make_method",
    "method_spec",
    "methods_for",
    "minmax",
    "resolve_layer",
]
