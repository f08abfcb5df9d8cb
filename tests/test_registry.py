"""Every registry entry: builds, has the advertised CAM size, and obeys mean(M_c) = S_c - b_c."""

from __future__ import annotations

import pytest
import torch

from cam_cli.cam.maps import compute_cams
from cam_cli.errors import ModelLoadError
from cam_cli.models.loading import load_model
from cam_cli.models.registry import build_model, cam_size, get_arch, list_archs

ARCHS = [spec.name for spec in list_archs()]


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHS)
def test_cam_identity_and_shapes(name):
    """The CAM is the spatial decomposition of the class score (paper section 2)."""
    torch.manual_seed(0)
    spec = get_arch(name)
    model = build_model(name, num_classes=7).eval()
    size = spec.cam_size_at_224
    assert cam_size(model, 224) == (size, size)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits, features = model(x)
        weight, bias = model.class_weights()
        all_classes = torch.arange(7).expand(2, -1)
        cams = compute_cams(features, weight, all_classes)
    assert logits.shape == (2, 7)
    assert cams.shape == (2, 7, size, size)
    bias = torch.zeros(7) if bias is None else bias
    expected = (logits - bias).double()
    if model.pooling == "max":  # GMP (the paper's ablation): the score is of the max-pooled maps
        pooled = features.amax(dim=(2, 3)).double()
        assert torch.allclose(pooled @ weight.double().T, expected, atol=1e-4, rtol=1e-4)
        return
    assert torch.allclose(cams.double().mean(dim=(2, 3)), expected, atol=1e-4, rtol=1e-4)


TORCHVISION_FACTORIES = {
    "resnet18": lambda tvm: tvm.resnet18(num_classes=10),
    "resnet50": lambda tvm: tvm.resnet50(num_classes=10),
    "googlenet": lambda tvm: tvm.googlenet(
        num_classes=10, aux_logits=False, transform_input=True, init_weights=True
    ),
    "mobilenet_v2": lambda tvm: tvm.mobilenet_v2(num_classes=10),
    "squeezenet1_1": lambda tvm: tvm.squeezenet1_1(num_classes=10),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TORCHVISION_FACTORIES))
def test_torchvision_state_dict_gives_torchvisions_own_logits(name, tmp_path):
    """A torchvision state_dict loads unchanged, and our forward is torchvision's forward."""
    import torchvision.models as tvm

    torch.manual_seed(1)
    reference = TORCHVISION_FACTORIES[name](tvm).eval()
    for module in reference.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "weights.pth"
    torch.save(reference.state_dict(), path)
    loaded = load_model(arch=name, weights=str(path))
    assert len(loaded.classes) == 10  # class count read from the file
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        ours, _ = loaded.model(x)
        theirs = reference(x)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_paper_backbones_keep_torchvision_keys():
    """Paper nets keep the truncated torchvision model under `trunk`, new layers beside it."""
    import torchvision.models as tvm

    model = build_model("vgg16-gap", 1000)
    trunk_keys = set(model.net.trunk.state_dict())
    assert trunk_keys <= set(tvm.vgg16().state_dict())
    assert "features.28.weight" in trunk_keys  # conv5_3 kept
    assert model.net.cam_conv[0].out_channels == 1024
    assert (model.net.cam_conv[0].kernel_size, model.net.cam_conv[0].padding) == ((3, 3), (1, 1))
    assert (
        len(
            [
                m
                for m in build_model("alexnet-star-gap", 10).net.cam_conv
                if type(m).__name__ == "Conv2d"
            ]
        )
        == 2
    )


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    import torchvision.models as tvm

    path = tmp_path / "resnet18.pth"
    torch.save(tvm.resnet18(num_classes=10).state_dict(), path)
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model(arch="mobilenet_v2", weights=str(path))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ModelLoadError, match="not a loadable weights file"):
        load_model(arch="resnet18", weights=str(garbage))
    with pytest.raises(ModelLoadError, match="no such weights file"):
        load_model(arch="resnet18", weights=str(tmp_path / "missing.pth"))


def test_imagenet_weights_offline_say_how_to_pass_a_file(monkeypatch):
    import torch.hub

    def offline(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(ModelLoadError, match="`weights` FILE") as info:
        load_model(arch="resnet18", weights="imagenet")
    assert "\n" not in str(info.value)


def test_unknown_arch_lists_known_ones():
    with pytest.raises(ModelLoadError, match="known: .*mobilenet_v2"):
        load_model(arch="resnet1000")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "googlenet", "small-gap"])
def test_folding_batch_norm_keeps_logits_and_cams(name):
    """The inference speed-up folds BN into convs; results change only at float rounding."""
    import copy

    from cam_cli.models.speedups import fold_batch_norms

    torch.manual_seed(2)
    model = build_model(name, num_classes=10).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    folded = copy.deepcopy(model)
    assert fold_batch_norms(folded) > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        (logits, features), (folded_logits, folded_features) = model(x), folded(x)
    assert torch.allclose(logits, folded_logits, atol=1e-4, rtol=1e-4)
    assert torch.allclose(features, folded_features, atol=1e-3, rtol=1e-3)


def test_imagenet_weights_know_their_class_names(tmp_path):
    """A 1000-class weights file without --classes is an ImageNet model: torchvision's class
    names come with it, as they do with --weights imagenet. Other class counts stay anonymous."""
    path = tmp_path / "r18.pth"
    torch.save(build_model("resnet18", 1000).state_dict(), path)
    loaded = load_model(arch="resnet18", weights=str(path))
    assert [c.name for c in loaded.classes[:3]] == ["tench", "goldfish", "great white shark"]
    assert loaded.classes[999].name == "toilet tissue"
    assert loaded.classes[0].wnid is None
    small = tmp_path / "r18-10.pth"
    torch.save(build_model("resnet18", 10).state_dict(), small)
    assert all(c.name is None for c in load_model(arch="resnet18", weights=str(small)).classes)


def test_weights_digest_follows_the_content_not_the_file(tmp_path):
    torch.manual_seed(0)
    model = build_model("small-gap", 3)
    first, copy, other = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "c.pth"
    torch.save(model.state_dict(), first)
    torch.save(model.state_dict(), copy)
    torch.save(build_model("small-gap", 3).state_dict(), other)
    digest = load_model(arch="small-gap", weights=str(first)).digest()
    assert load_model(arch="small-gap", weights=str(copy)).digest() == digest
    assert load_model(arch="small-gap", weights=str(other)).digest() != digest


def test_classes_file_splits_wnid_and_names_on_any_whitespace(tmp_path):
    from cam_cli.data.classes import read_synset_mapping

    path = tmp_path / "classes.txt"
    path.write_text("n02951358\tcanoe\nn03873416 \t paddle, boat paddle\nn09332890\n")
    classes = read_synset_mapping(path)
    assert [(c.wnid, c.name) for c in classes] == [
        ("n02951358", "canoe"), ("n03873416", "paddle"), ("n09332890", "n09332890")
    ]  # fmt: skip
    path.write_text("n02951358\tcanoe\nn02951358 canoe again\n")
    with pytest.raises(ValueError, match="classes.txt: duplicate wnid n02951358 \\(class 1\\)"):
        read_synset_mapping(path)
    path.write_bytes("n02951358 caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="classes.txt:1: not UTF-8 text"):
        read_synset_mapping(path)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64, torch.uint8])
def test_weights_that_are_not_floating_point_are_refused(tmp_path, dtype):
    state = build_model("small-gap", 3).state_dict()
    key = next(k for k in state if k.endswith("weight"))
    state[key] = torch.ones(state[key].shape).to(dtype)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    kind = str(dtype).removeprefix("torch.")
    with pytest.raises(ModelLoadError, match=f"w.pth: {key} holds {kind} values; weights must"):
        load_model(arch="small-gap", weights=str(path))


def test_checkpoint_with_duplicate_wnids_is_refused(tmp_path):
    from cam_cli.models.checkpoint_format import CHECKPOINT_FORMAT
    from cam_cli.models.preprocess import IMAGENET

    wnids = ["n01440764", "n01751748", "n01440764"]
    torch.save({"format": CHECKPOINT_FORMAT, "arch": "small-gap", "input_size": 64,
                "classes": [{"index": i, "wnid": w, "name": w} for i, w in enumerate(wnids)],
                "model": build_model("small-gap", 3).state_dict(),
                "preprocessing": IMAGENET.to_dict()}, tmp_path / "c.pt")  # fmt: skip
    with pytest.raises(ModelLoadError, match="c.pt: .*duplicate wnid n01440764 \\(class 2\\)"):
        load_model(checkpoint=tmp_path / "c.pt")


def test_a_model_without_weights_says_it_is_untrained(tmp_path, caplog):
    caplog.set_level("INFO", logger="cam_cli")
    load_model(arch="small-gap", num_classes=3)
    assert [r.getMessage() for r in caplog.records] == [
        "note: `arch` small-gap without `weights` or `checkpoint`: its parameters are random "
        "(untrained), so its classes, scores and boxes mean nothing"
    ]
    caplog.clear()
    torch.save(build_model("small-gap", 3).state_dict(), tmp_path / "w.pth")
    load_model(arch="small-gap", weights=str(tmp_path / "w.pth"))
    assert not caplog.records
