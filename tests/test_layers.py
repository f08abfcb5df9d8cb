"""`cam_cli.cam.methods.layers`: the default layer of each registry entry and timm family (built
on the meta device: no memory, no weights), the ViT/DeiT and Swin reshapes, and one-line errors
naming the nearest module names."""

from __future__ import annotations

import pytest
import torch

from cam_cli.cam.methods import LayerError, methods_for, resolve_layer
from cam_cli.cam.methods.layers import TokenGrid
from cam_cli.models.registry import build_model

REGISTRY_DEFAULTS = {  # the layer whose output CAM is built from
    "mobilenet_v2": "features",
    "resnet18": "layer4",
    "googlenet": "inception5b",
    "vgg16-gap": "cam_conv",
    "small-gap": "cam_conv",
}
TIMM_DEFAULTS = {
    "convnext_atto": ("stages.3", None),
    "mobilenetv3_small_050": ("blocks.5", None),
    "efficientnet_b0": ("bn2", None),
    "deit_tiny_patch16_224": ("blocks.11.norm1", TokenGrid(1, (14, 14))),
    "deit_tiny_distilled_patch16_224": ("blocks.11.norm1", TokenGrid(2, (14, 14))),
    "vit_tiny_patch16_224": ("blocks.11.norm1", TokenGrid(1, (14, 14))),
    "swin_tiny_patch4_window7_224": ("layers.3", "channels_last_to_first"),
}


@pytest.mark.parametrize("arch", sorted(REGISTRY_DEFAULTS))
def test_registry_default_is_the_cam_layer(arch):
    with torch.device("meta"):
        model = build_model(arch).eval()
    support = methods_for(model)
    assert support.default_layer == REGISTRY_DEFAULTS[arch]
    assert support.methods == ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam",
                               "scorecam", "eigencam")  # fmt: skip
    assert support.refused == {}


@pytest.mark.parametrize("name", sorted(TIMM_DEFAULTS))
def test_timm_family_defaults(name):
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False).eval()
    choice = resolve_layer(model)
    layer, reshape = TIMM_DEFAULTS[name]
    assert choice.name == layer
    assert choice.module is model.get_submodule(layer)
    if isinstance(reshape, str):
        assert choice.reshape.__name__ == reshape
    else:
        assert choice.reshape == reshape
    support = methods_for(model)
    assert support.default_layer == layer, support
    assert len(support.methods) == 7, support


def test_token_grid_drops_prefix_tokens_and_lays_patches_on_the_grid():
    tokens = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(2, 8, 3)  # 2 prefix + 2x3
    grid = TokenGrid(2, (2, 3))(tokens)
    assert grid.shape == (2, 3, 2, 3)
    # position (row 1, col 2) is patch 5, token 7; channel 1 of image 1
    assert grid[1, 1, 1, 2] == tokens[1, 7, 1]


def test_a_bad_layer_name_names_the_nearest():
    with torch.device("meta"):
        model = build_model("mobilenet_v2")
    with pytest.raises(LayerError) as info:
        resolve_layer(model, "featurs.18")
    message = str(info.value)
    assert "has no module 'featurs.18'; nearest: features.18" in message
    assert "\n" not in message
    assert message.startswith("`layer`")


def test_a_network_with_no_known_default_says_so():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    support = methods_for(net)
    assert support.default_layer is None
    assert support.methods == ()
    assert "no default `layer` is known for Sequential" in support.refused["gradcam"]
    assert resolve_layer(net, "0").module is net[0]


def test_finding_the_default_changes_nothing_in_a_training_model():
    torch.manual_seed(0)
    model = build_model("small-gap", num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert resolve_layer(model).name == "cam_conv"
    assert model.training
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
