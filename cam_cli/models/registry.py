"""One registry of CAM-capable networks; every command (train, cam, bbox, eval) goes through it.

Every entry builds a `CAMNet`: a module whose single forward pass returns the logits and the
feature maps the CAM is built from, and which exposes the linear classifier's weight and bias.
CAM, boxes and metrics are generic over entries, so adding a network is one small function.

Two families:
- the paper's networks (section 3.1 of the paper): a torchvision backbone truncated after its last
  useful conv layer, plus conv 3x3/1/1 with 1024 units + ReLU (two such convs for AlexNet*),
  GAP, linear. Backbones take torchvision ImageNet weights; the new layers start fresh.
- networks that already end in GAP + linear (ResNet, GoogLeNet, MobileNetV2) or in a 1x1 conv
  classifier + GAP (SqueezeNet, whose class maps are the classifier's own output maps).

The wrapped torchvision model is kept whole under ``CAMNet.net``, so torchvision state_dicts
load unchanged (`weights` ``FILE``) and torchvision's own weight enums still apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor, nn

from cam_cli.models.camnet import ArchSpec, CAMNet
from cam_cli.models.nets import PaperGAPNet, SmallGAPNet
from cam_cli.models.timm_models import is_timm_name, timm_spec

REGISTRY: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    for key in (spec.name, *spec.aliases):
        if key in REGISTRY:
            raise ValueError(f"architecture {key!r} registered twice")
        REGISTRY[key] = spec
    return spec


def get_arch(name: str, cam_exact: bool = True) -> ArchSpec:
    """The entry of ``name``; ``timm/<model_name>`` builds a timm entry (timm imported then).
    ``cam_exact=False``: a timm network whose head is not CAM-exact is built too (for the
    map methods that read a layer, `models.camnet.AnyHeadNet`)."""
    if is_timm_name(name):
        return timm_spec(name, cam_exact)
    key = name.lower().replace("_", "-")
    for candidate in (name, key):
        if candidate in REGISTRY:
            return REGISTRY[candidate]
    known = ", ".join(sorted({spec.name for spec in REGISTRY.values()}))
    raise KeyError(f"unknown architecture {name!r}; known: {known}")


def list_archs() -> list[ArchSpec]:
    seen: dict[str, ArchSpec] = {}
    for spec in REGISTRY.values():
        seen.setdefault(spec.name, spec)
    return list(seen.values())


def build_model(name: str, num_classes: int = 1000) -> CAMNet:
    """A freshly initialised network of the registry (no weights loaded)."""
    return get_arch(name).build(num_classes)


# --------------------------------------------------------------------------------------------
# The paper's GAP networks (the paper, section 3.1; README, "cam-cli models")


def _layer(net: nn.Module, *path: str) -> nn.Module:
    """The submodule of ``net`` at ``path`` (child names): torch types a module's attributes as
    ``Tensor | Module``, so each step is checked to be a module."""
    module = net
    for name in path:
        child = getattr(module, name)
        assert isinstance(child, nn.Module), path
        module = child
    return module


def _linear(net: nn.Module, *path: str) -> nn.Linear:
    layer = _layer(net, *path)
    assert isinstance(layer, nn.Linear), path
    return layer


def _depthwise_conv(stage: nn.Module, block: str) -> nn.Conv2d:
    conv = _layer(stage, block, "conv", "1", "0")  # MobileNetV2's InvertedResidual
    assert isinstance(conv, nn.Conv2d), block
    return conv


def _features(net: nn.Module, x: Tensor) -> Tensor:
    """``net.features(x)``: the paper nets, the small nets, the truncated trunks and MobileNetV2
    all keep their maps there."""
    # a submodule (torchvision's nets) or a method (the paper's): torch types it Tensor | Module
    features = cast(Callable[[Tensor], Tensor], net.features)
    return features(x)


def _paper_classifier(net: nn.Module) -> nn.Linear:
    return _linear(net, "fc")


def _alexnet_trunk() -> tuple[nn.Module, int]:
    from torchvision.models import alexnet

    trunk = alexnet()
    trunk.features = trunk.features[:12]  # up to conv5 + ReLU; pool5 and after removed
    del trunk.avgpool, trunk.classifier
    return trunk, 256


def _vgg16_trunk() -> tuple[nn.Module, int]:
    from torchvision.models import vgg16

    trunk = vgg16()
    trunk.features = trunk.features[:30]  # up to conv5_3 + ReLU; pool5 and after removed
    del trunk.avgpool, trunk.classifier
    return trunk, 512


_GOOGLENET_STEM = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a",
                   "inception3b", "maxpool3", "inception4a", "inception4b", "inception4c",
                   "inception4d", "inception4e")  # fmt: skip
_GOOGLENET_HEAD = ("maxpool4", "inception5a", "inception5b")


def _googlenet_input(net: nn.Module, x: Tensor) -> Tensor:
    # torchvision's GoogLeNet ImageNet weights expect this re-normalisation of ImageNet-normalised
    # input (transform_input=True); kept for every GoogLeNet so those weights load as they are.
    # a method of torchvision's GoogLeNet, which torch's attribute type (Tensor | Module) hides
    transform = cast(Callable[[Tensor], Tensor], net._transform_input)  # noqa: SLF001
    return transform(x)  # torchvision's own step, no public name


def _googlenet_trunk_forward(trunk: nn.Module, x: Tensor) -> Tensor:
    x = _googlenet_input(trunk, x)
    for name in _GOOGLENET_STEM:
        x = getattr(trunk, name)(x)
    return x


def _googlenet_trunk() -> tuple[nn.Module, int]:
    from torchvision.models import googlenet

    trunk = googlenet(aux_logits=False, transform_input=True, init_weights=False)
    for name in (*_GOOGLENET_HEAD, "avgpool", "dropout", "fc"):
        delattr(trunk, name)
    return trunk, 832


def _mobilenet_v2_trunk() -> tuple[nn.Module, int]:
    from torchvision.models import mobilenet_v2

    trunk = mobilenet_v2()
    trunk.features = trunk.features[:14]  # to the last stride-16 block (96 ch; 14x14 at 224)
    del trunk.classifier
    return trunk, 96


def _paper_net(
    trunk_factory: Callable[[], tuple[nn.Module, int]],
    trunk_forward: Callable[[nn.Module, Tensor], Tensor],
    added_convs: int,
    dropout: float,
    pooling: str = "avg",
) -> Callable[[int], CAMNet]:
    def build(num_classes: int) -> CAMNet:
        trunk, channels = trunk_factory()
        net = PaperGAPNet(trunk, trunk_forward, channels, num_classes, added_convs)
        return CAMNet(net, _features, _paper_classifier, dropout=dropout, pooling=pooling)

    return build


register(ArchSpec(
    "alexnet-gap", _paper_net(_alexnet_trunk, _features, 1, 0.0), 13,
    "AlexNet to conv5, + conv3x3 1024 + ReLU, GAP, linear (paper)",
    backbone_weights="AlexNet_Weights.IMAGENET1K_V1", paper=True,
))  # fmt: skip
register(ArchSpec(
    "alexnet-star-gap", _paper_net(_alexnet_trunk, _features, 2, 0.0), 13,
    "AlexNet*-GAP: AlexNet-GAP with two added conv layers (paper)",
    backbone_weights="AlexNet_Weights.IMAGENET1K_V1", paper=True,
    aliases=("alexnet*-gap",),
))  # fmt: skip
register(ArchSpec(
    "vgg16-gap", _paper_net(_vgg16_trunk, _features, 1, 0.5), 14,
    "VGG16 to conv5_3, + conv3x3 1024 + ReLU, GAP, dropout 0.5, linear (paper)",
    backbone_weights="VGG16_Weights.IMAGENET1K_V1", paper=True,
    aliases=("vggnet-gap",),
))  # fmt: skip
register(ArchSpec(
    "googlenet-gap", _paper_net(_googlenet_trunk, _googlenet_trunk_forward, 1, 0.0), 14,
    "GoogLeNet to inception4e, + conv3x3 1024 + ReLU, GAP, linear (paper)",
    backbone_weights="GoogLeNet_Weights.IMAGENET1K_V1", paper=True,
))  # fmt: skip

# The paper's recipe on a small ImageNet backbone: MobileNetV2 cut where the map is 14x14 at 224
# (the resolution the paper cuts its networks for), so Tiny ImageNet's 64-128 px images keep a
# 4x4-8x8 CAM instead of the whole network's 2x2-4x4. The -gmp twin is the paper's ablation.
for _arch, _pool, _what in (
    ("mobilenet_v2-gap", "avg", "GAP"),
    ("mobilenet_v2-gmp", "max", "GMP (global max pooling: the paper's ablation)"),
):
    register(ArchSpec(
        _arch, _paper_net(_mobilenet_v2_trunk, _features, 1, 0.0, _pool), 14,
        f"MobileNetV2 to block 13 (stride 16), + conv3x3 1024 + ReLU, {_what}, linear",
        backbone_weights="MobileNet_V2_Weights.IMAGENET1K_V1", paper=True,
    ))  # fmt: skip

# --------------------------------------------------------------------------------------------
# Networks that already end in GAP + linear, or in a conv classifier + GAP


def _resnet(factory_name: str) -> Callable[[int], CAMNet]:
    def features(net: nn.Module, x: Tensor) -> Tensor:
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            x = getattr(net, name)(x)
        return x

    def build(num_classes: int) -> CAMNet:
        import torchvision.models as tvm

        net = getattr(tvm, factory_name)(num_classes=num_classes)
        return CAMNet(net, features, lambda n: _linear(n, "fc"))

    return build


def _googlenet_features(net: nn.Module, x: Tensor) -> Tensor:
    x = _googlenet_trunk_forward(net, x)
    for name in _GOOGLENET_HEAD:
        x = getattr(net, name)(x)
    return x


def _build_googlenet(num_classes: int) -> CAMNet:
    from torchvision.models import googlenet

    net = googlenet(
        num_classes=num_classes, aux_logits=False, transform_input=True, init_weights=True
    )
    return CAMNet(net, _googlenet_features, lambda n: _linear(n, "fc"), dropout=0.2)


def _mobilenet_v2(pooling: str, output_stride: int = 32) -> Callable[[int], CAMNet]:
    def build(num_classes: int) -> CAMNet:
        from torchvision.models import mobilenet_v2

        net = mobilenet_v2(num_classes=num_classes)
        if output_stride == 16:
            _dilate_last_stage(net)
        return CAMNet(
            net, _features, lambda n: _linear(n, "classifier", "1"), dropout=0.2, pooling=pooling
        )

    return build


def _dilate_last_stage(net: nn.Module) -> None:
    """MobileNetV2 at output stride 16 (DeepLabv3's way): the last stride-2 depthwise conv
    (block 14) keeps stride 1 and the depthwise convs after it dilate by 2, so every layer sees
    the same context as before and the same weights load, with a map twice as fine (14x14 at
    224 px instead of 7x7) for four times the cost of the last stage."""
    features = _layer(net, "features")
    _depthwise_conv(features, "14").stride = (1, 1)
    for block in ("15", "16", "17"):
        depthwise = _depthwise_conv(features, block)
        depthwise.dilation, depthwise.padding = (2, 2), (2, 2)


def _squeezenet_class_maps(net: nn.Module, x: Tensor) -> Tensor:
    # classifier = Dropout, Conv1x1(512 -> C), ReLU, AdaptiveAvgPool: its ReLU output is one
    # map per class, and the logits are their means, so the CAM is that map (b_c = 0).
    x = _layer(net, "features")(x)
    classifier = _layer(net, "classifier")
    assert isinstance(classifier, nn.Sequential)
    for layer in list(classifier)[:3]:
        x = layer(x)
    return x


def _build_squeezenet1_1(num_classes: int) -> CAMNet:
    from torchvision.models import squeezenet1_1

    net = squeezenet1_1(num_classes=num_classes)
    return CAMNet(net, _squeezenet_class_maps, lambda n: None)


for _name, _size in (("resnet18", "ResNet18"), ("resnet34", "ResNet34"), ("resnet50", "ResNet50")):
    register(ArchSpec(
        _name, _resnet(_name), 7, f"torchvision {_size}: ends in GAP + linear",
        torchvision_weights=f"{_size}_Weights.IMAGENET1K_V1",
    ))  # fmt: skip
register(ArchSpec(
    "googlenet", _build_googlenet, 7,
    "torchvision GoogLeNet: ends in GAP + linear (the paper's 7x7 baseline)",
    torchvision_weights="GoogLeNet_Weights.IMAGENET1K_V1",
))  # fmt: skip
register(ArchSpec(
    "mobilenet_v2", _mobilenet_v2("avg"), 7, "torchvision MobileNetV2: ends in GAP + linear",
    torchvision_weights="MobileNet_V2_Weights.IMAGENET1K_V1",
    aliases=("mobilenet-v2",),
))  # fmt: skip
# The same network and weights at output stride 16: a CAM twice as fine (`_dilate_last_stage`).
for _arch, _pool, _what in (
    ("mobilenet_v2-s16", "avg", "GAP"),
    ("mobilenet_v2-s16-max", "max", "GMP"),
):
    register(ArchSpec(
        _arch, _mobilenet_v2(_pool, output_stride=16), 14,
        f"mobilenet_v2 at output stride 16 (last stage dilated; 14x14 at 224), {_what} + linear",
        backbone_weights="MobileNet_V2_Weights.IMAGENET1K_V1",
    ))  # fmt: skip
# Its GMP twin for the paper's ablation: the same layers with global max pooling, so only the
# ImageNet backbone carries over (its classifier was trained on averages, not maxima).
register(ArchSpec(
    "mobilenet_v2-max", _mobilenet_v2("max"), 7,
    "mobilenet_v2 with global max pooling instead of GAP (the paper's GMP ablation)",
    backbone_weights="MobileNet_V2_Weights.IMAGENET1K_V1",
))  # fmt: skip
register(ArchSpec(
    "squeezenet1_1", _build_squeezenet1_1, 13,
    "torchvision SqueezeNet 1.1: 1x1 conv classifier + GAP; class maps are its output maps",
    torchvision_weights="SqueezeNet1_1_Weights.IMAGENET1K_V1",
    aliases=("squeezenet1-1",),
))  # fmt: skip


# --------------------------------------------------------------------------------------------
# A small GAP network for CPU training (the synthetic benchmark and the tests)


def _small_gap(batch_norm: bool, pooling: str = "avg") -> Callable[[int], CAMNet]:
    def build(num_classes: int) -> CAMNet:
        return CAMNet(SmallGAPNet(num_classes, batch_norm=batch_norm), _features,
                      _paper_classifier, pooling=pooling)  # fmt: skip

    return build


register(ArchSpec(
    "small-gap", _small_gap(True), 56, "4 conv blocks + conv 3x3 + GAP + linear, for CPU training",
    default_input_size=64,
))  # fmt: skip
register(ArchSpec(
    "small-gmp", _small_gap(True, "max"), 56,
    "small-gap with global max pooling instead of GAP (the paper's GMP ablation)",
    default_input_size=64,
))  # fmt: skip
register(ArchSpec(
    "small-gap-nobn", _small_gap(False), 56, "small-gap without batch norm (exact DDP checks)",
    default_input_size=64,
))  # fmt: skip


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def cam_size(model: CAMNet, input_size: int = 224) -> tuple[int, int]:
    """Feature (CAM) resolution at a given input size, measured by a forward pass on meta."""
    with torch.no_grad():
        _, features = model(torch.zeros(1, 3, input_size, input_size))
    return tuple(features.shape[-2:])


def describe_archs() -> list[tuple[str, str, str, str, str]]:
    """Rows for `cam-cli models`; models are built on the meta device, so this takes no memory."""
    rows = []
    for spec in list_archs():
        with torch.device("meta"):
            count = parameter_count(build_model(spec.name, 1000))
        size = spec.cam_size_at_224
        if spec.torchvision_weights:
            weights = "yes"
        elif spec.backbone_weights:
            weights = "backbone only"
        else:
            weights = "no"
        rows.append((spec.name, f"{size}x{size}", f"{count / 1e6:.1f}M", weights, spec.description))
    return rows
