"""timm networks through the registry (`--arch timm/<name>`), with random weights (no download):
the CAM identity and size, the refusals with their reasons, weights files, preprocessing, train."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from conftest import invoke

from cam_cli.cam.maps import compute_cams
from cam_cli.errors import SetupError
from cam_cli.models.registry import build_model, cam_size, get_arch
from cam_cli.synthetic.dataset import generate_dataset

timm = pytest.importorskip("timm")

EXACT = {  # model -> CAM size at 224
    "timm/resnet18": 7,
    "timm/resnet50d": 7,
    "timm/efficientnet_b0": 7,
    "timm/regnetx_002": 7,
    "timm/mobilenetv2_050": 7,
}
REFUSED = {
    "timm/convnext_atto": "head.norm \\(LayerNorm2d\\) runs after pooling",
    "timm/mobilenetv3_small_050": "conv_head \\(Conv2d\\) runs after pooling",
    "timm/vit_tiny_patch16_224": "forward_features gives tokens \\[1, 197, 192\\]",
    "timm/resnet50_clip.openai": "head \\(AttentionPool2d\\) pools by attention",
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_timm_cam_identity_and_size(name):
    torch.manual_seed(0)
    spec = get_arch(name)
    assert spec.name == name
    assert spec.cam_size_at_224 == EXACT[name]
    model = build_model(name, num_classes=5).eval()
    size = EXACT[name]
    assert cam_size(model, 224) == (size, size)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits, features = model(x)
        reference = model.net(x)  # timm's own forward gives the same logits
        weight, bias = model.class_weights()
        cams = compute_cams(features, weight, torch.arange(5).expand(2, -1))
    assert cams.shape == (2, 5, size, size)
    assert torch.allclose(logits, reference, atol=1e-4, rtol=1e-4)
    expected = (logits - bias).double()
    assert torch.allclose(cams.double().mean(dim=(2, 3)), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_timm_heads_that_are_not_cam_exact_are_refused(name):
    with pytest.raises(SetupError, match=REFUSED[name]) as info:
        get_arch(name)
    message = str(info.value)
    assert "mean(M_c) = S_c - b_c" in message
    assert "\n" not in message


def test_timm_refusal_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "img" / "a.png")
    result = invoke("bbox", "--arch", "timm/convnext_atto", "--images", tmp_path / "img")
    assert result.exit_code == 2, result.output
    assert "head.norm" in result.output
    assert "mean(M_c) = S_c - b_c" in result.output


def test_unknown_timm_model_and_missing_timm_say_what_to_do(monkeypatch):
    from cam_cli.errors import ModelLoadError
    from cam_cli.models.loading import load_model
    from cam_cli.models.timm_models import timm_spec

    with pytest.raises(ModelLoadError, match="unknown timm model 'resnet1000'"):
        load_model(arch="timm/resnet1000")
    timm_spec.cache_clear()
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    with pytest.raises(SetupError, match='pip install "cam-cli\\[timm\\]"'):
        get_arch("timm/resnet18")
    timm_spec.cache_clear()


def test_timm_preprocessing_comes_from_the_models_config():
    from cam_cli.models.loading import load_model

    loaded = load_model(arch="timm/inception_v3")  # mean = std = 0.5, 299 px
    assert loaded.preprocessing.mean == (0.5, 0.5, 0.5)
    assert loaded.preprocessing.std == (0.5, 0.5, 0.5)
    assert loaded.preprocessing.name == "timm:bicubic"
    assert loaded.input_size == 299
    # registry networks keep ImageNet's
    assert load_model(arch="resnet18").preprocessing.name == "imagenet"


def test_timm_train_on_the_synthetic_set(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, num_classes=3, train_per_class=4, val_images=4, image_size=32, seed=0)
    run = tmp_path / "run"
    result = invoke("train", "--arch", "timm/resnet18", "--no-pretrained", "--data", data,
                 "--out", run, "--epochs", 1, "--image-size", 32, "--batch-size", 4,
                 "--workers", 0, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    assert saved["arch"] == "timm/resnet18"
    boxes = invoke("bbox", "--checkpoint", run / "best.pt", "--images", data / "val",
                "--workers", 0)  # fmt: skip
    assert boxes.exit_code == 0, boxes.output
    records = [json.loads(line) for line in boxes.stdout.splitlines()]
    assert len(records) == 4


def _timm_reference(name: str, num_classes: int = 4):
    torch.manual_seed(3)
    reference = timm.create_model(name, pretrained=False, num_classes=num_classes).eval()
    for module in reference.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return reference


@pytest.mark.parametrize("layout", ["timm.pth", "timm.safetensors", "hf.safetensors"])
def test_timm_weights_files_round_trip(layout, tmp_path):
    """timm's own state_dict (.pth or .safetensors) and Hugging Face transformers' TimmWrapper
    layout (``timm_model.`` keys) load unchanged and give timm's own logits."""
    from safetensors.torch import save_file

    from cam_cli.models.loading import load_model

    reference = _timm_reference("resnet18")
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    path = tmp_path / f"weights.{layout.split('.')[1]}"
    if layout == "timm.pth":
        torch.save(state, path)
    elif layout == "timm.safetensors":
        save_file(state, str(path))
    else:
        save_file({f"timm_model.{k}": v for k, v in state.items()}, str(path))
    loaded = load_model(arch="timm/resnet18", weights=str(path))
    assert len(loaded.classes) == 4  # class count read from the file
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ours, _ = loaded.model(x)
        theirs = reference(x)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_broken_safetensors_file_is_one_line(tmp_path):
    from cam_cli.errors import ModelLoadError
    from cam_cli.models.loading import load_model

    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{notjson")
    with pytest.raises(ModelLoadError, match="not a loadable .safetensors file") as info:
        load_model(arch="timm/resnet18", weights=str(path))
    assert "\n" not in str(info.value)


def test_hf_hub_weights_offline_say_how_to_pass_a_file(monkeypatch):
    import huggingface_hub

    from cam_cli.errors import ModelLoadError
    from cam_cli.models.loading import load_model

    def offline(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    for reachable in (True, False):  # the download fails / the hub does not answer at all
        monkeypatch.setattr("cam_cli.models.weights._hub_reachable", lambda r=reachable: r)
        for weights in ("hf-hub:timm/resnet18.a1_in1k", "imagenet"):
            with pytest.raises(ModelLoadError, match="`weights` FILE") as info:
                load_model(arch="timm/resnet18", weights=weights)
            assert "\n" not in str(info.value)
            assert "timm/resnet18" in str(info.value)


def test_hf_hub_weights_from_the_hub_cache(monkeypatch, tmp_path):
    """Where the hub answers (here: its download function returns a local file), the weights
    load, and 1000 classes are ImageNet's names."""
    import huggingface_hub
    from safetensors.torch import save_file

    from cam_cli.models.loading import load_model

    reference = _timm_reference("resnet18", num_classes=1000)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    asked = []

    def download(repo, filename, **kwargs):
        asked.append((repo, filename))
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr("cam_cli.models.weights._hub_reachable", lambda: True)
    loaded = load_model(arch="timm/resnet18", weights="hf-hub:timm/resnet18.a1_in1k")
    assert asked == [("timm/resnet18.a1_in1k", "model.safetensors")]
    assert len(loaded.classes) == 1000
    assert loaded.classes[0].name


def test_models_timm_lists_only_cam_exact_models():
    result = invoke("models", "--timm", "mobilenetv*_050")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "CAM", "input", "params"]
    names = {line.split()[0] for line in lines[1:]}
    assert "timm/mobilenetv2_050" in names
    assert "timm/mobilenetv3_small_050" not in names  # conv_head after pooling
    row = next(line.split() for line in lines if line.startswith("timm/mobilenetv2_050 "))
    assert row[1:3] == ["7x7", "224"]
    assert row[3].endswith("M")
    too_many = invoke("models", "--timm", "*")
    assert too_many.exit_code == 2
    assert "narrower pattern" in too_many.output


@pytest.mark.parametrize("name", ["timm/resnet18", "timm/efficientnet_b0"])
def test_folding_batch_norm_keeps_timm_logits(name):
    """--fast folds only plain BatchNorm2d after plain Conv2d: timm's BatchNormAct2d (a batch
    norm with its activation inside) is kept, so the results stay the same."""
    import copy

    from cam_cli.models.speedups import fold_batch_norms

    torch.manual_seed(2)
    model = build_model(name, num_classes=5).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    folded = copy.deepcopy(model)
    fold_batch_norms(folded)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        (logits, features), (folded_logits, folded_features) = model(x), folded(x)
    assert torch.allclose(logits, folded_logits, atol=1e-4, rtol=1e-4)
    assert torch.allclose(features, folded_features, atol=1e-3, rtol=1e-3)


def test_models_timm_bare_word_means_names_containing_it():
    result = invoke("models", "--timm", "mobilenetv2_05")  # no wildcard: *mobilenetv2_05*
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == ["timm/mobilenetv2_050"]
