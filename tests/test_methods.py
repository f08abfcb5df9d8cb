"""The Grad-CAM family (`cam_cli.cam.methods`) against pytorch-grad-cam 1.5.7 itself, on real
ImageNet images of ../shared: for each method, network, layer and target class, our map after
pytorch-grad-cam's min-max scaling equals its map at the layer's size (its resize disabled) to
1e-4. Networks: the shared ImageNet MobileNetV2, random timm ConvNeXt-atto, DeiT-tiny and
Swin-tiny. Also: Grad-CAM is CAM up to the positive scale 1/hw on a GAP + linear network.

CNN inputs are 192 x 224 (not square: a transposed map would fail); ViT/Swin take 224 x 224.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SAMPLE

from cam_cli.cam.maps import compute_cams, top_classes
from cam_cli.cam.methods import METHODS, LayerError, make_method, minmax
from cam_cli.errors import ArgumentError
from cam_cli.models.registry import build_model
from cam_cli.models.weights import read_state_file

timm = pytest.importorskip("timm")

try:  # the peer: the comparisons skip without it, the rest of this file does not need it
    import pytorch_grad_cam as pgc
    import pytorch_grad_cam.base_cam as grad_cam_base
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
except ImportError:
    pgc = None

PEERS = {  # our name -> pytorch-grad-cam's class
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "scorecam": "ScoreCAM",
    "eigencam": "EigenCAM",
}
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
# Score-CAM runs one forward per channel and image: a narrow layer keeps the test short.
SCORE_LAYER = {"mobilenet_v2": "features.1", "convnext": "stages.0", "deit": None}


def vit_reshape(tensor, height=14, width=14):
    """pytorch-grad-cam's documented ViT reshape_transform (tutorials/vision_transformers)."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def swin_reshape(tensor):
    """timm 1.x Swin stages are channels last: [B, h, w, C] -> [B, C, h, w]."""
    return tensor.permute(0, 3, 1, 2)


def load_images(size: tuple[int, int], count: int) -> torch.Tensor:
    from PIL import Image

    files = sorted((SAMPLE / "val").glob("*.JPEG"))[:count]
    batch = []
    for file in files:
        image = Image.open(file).convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
        batch.append((pixels - MEAN) / STD)
    return torch.stack(batch)


@pytest.fixture(scope="module")
def cnn_images(sample_dir: Path) -> torch.Tensor:
    return load_images((192, 224), 2)


@pytest.fixture(scope="module")
def square_images(sample_dir: Path) -> torch.Tensor:
    return load_images((224, 224), 2)


@pytest.fixture(scope="module")
def mobilenet(mobilenet_weights: Path):
    model = build_model("mobilenet_v2").eval()
    model.load_weights(read_state_file(mobilenet_weights))
    return model


def random_timm(name: str):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


@pytest.fixture(scope="module")
def convnext():
    return random_timm("convnext_atto")


@pytest.fixture(scope="module")
def deit():
    return random_timm("deit_tiny_patch16_224")


@pytest.fixture
def unscaled_peer(monkeypatch):
    """pytorch-grad-cam with its min-max scaling kept and its resize to the input left out."""
    if pgc is None:
        pytest.skip("pytorch-grad-cam (pip package grad-cam, in cam-cli[dev]) is not installed")
    monkeypatch.setattr(
        grad_cam_base, "scale_cam_image", lambda cam, size=None: scale_cam_image(cam)
    )


def peer_maps(name, network, module, images, classes, reshape=None) -> np.ndarray:
    """pytorch-grad-cam's maps [B, K, h, w]: one call per rank, as a user writes it."""
    ranks = []
    for rank in range(classes.shape[1]):
        targets = [ClassifierOutputTarget(int(c)) for c in classes[:, rank]]
        with getattr(pgc, PEERS[name])(network, [module], reshape_transform=reshape) as cam:
            if name == "scorecam":
                cam.batch_size = 16
            ranks.append(cam(images, targets))
    return np.stack(ranks, axis=1)


def check_against_peer(name, model, network, images, layer, ranks, reshape=None):
    method = make_method(name, model, layer)
    logits, maps = method(images, ranks)
    classes = top_classes(logits, ranks)[1]
    assert maps.dtype == torch.float32
    assert maps.shape[:2] == classes.shape
    expected = peer_maps(name, network, method.layer.module, images, classes, reshape)
    # the peer scales twice: per layer (compute_cam_per_layer), then after averaging the
    # layers (aggregate_multi_layers); the second pass shows where a map's max is near its 1e-7
    ours = minmax(minmax(maps)).numpy()
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
    assert ours.max() > 0.99  # a real map, not two blank ones


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PEERS))
def test_mobilenet_v2_imagenet_equals_pytorch_grad_cam(name, mobilenet, cnn_images, unscaled_peer):
    layer = SCORE_LAYER["mobilenet_v2"] if name == "scorecam" else None
    check_against_peer(name, mobilenet, mobilenet.net, cnn_images[:1], layer, 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PEERS))
def test_convnext_equals_pytorch_grad_cam(name, convnext, cnn_images, unscaled_peer):
    layer = SCORE_LAYER["convnext"] if name == "scorecam" else None
    check_against_peer(name, convnext, convnext, cnn_images[1:], layer, 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PEERS))
def test_deit_tokens_equal_pytorch_grad_cam(name, deit, square_images, unscaled_peer):
    ranks = 1 if name == "scorecam" else 2
    check_against_peer(name, deit, deit, square_images[:1], None, ranks, vit_reshape)


@pytest.mark.slow
def test_swin_channels_last_equals_pytorch_grad_cam(square_images, unscaled_peer):
    swin = random_timm("swin_tiny_patch4_window7_224")
    check_against_peer("gradcam", swin, swin, square_images[:1], None, 1, swin_reshape)


def test_gradcam_is_cam_over_hw_on_a_gap_linear_network(mobilenet, cnn_images):
    """dS_c/df_k(x, y) = w_k^c / hw, so Grad-CAM = sum_k mean(dS_c/df_k) f_k = CAM / hw, and
    after the ReLU both methods apply to a map, relu(CAM) / hw."""
    logits, maps = make_method("gradcam", mobilenet)(cnn_images, 5)
    with torch.no_grad():
        same_logits, features = mobilenet(cnn_images)
    weight, _ = mobilenet.class_weights()
    classes = top_classes(logits, 5)[1]
    cams = compute_cams(features, weight, classes)
    hw = features.shape[-2] * features.shape[-1]
    assert features.shape[-2:] == (6, 7)
    torch.testing.assert_close(logits, same_logits)
    torch.testing.assert_close(maps * hw, cams.clamp(min=0), atol=1e-4, rtol=1e-4)
    assert (cams > 0).any()
    assert (cams < 0).any()


@pytest.mark.slow
def test_classes_given_are_used_and_ranks_do_not_mix(mobilenet, cnn_images):
    """GT-known maps: classes given per image; the batch of two gives what each image alone
    gives (the summed backward per rank does not mix images)."""
    classes = torch.tensor([[3, 999, 0], [500, 3, 7]])
    method = make_method("gradcam++", mobilenet)
    _, together = method(cnn_images, classes)
    for index in range(2):
        _, alone = method(cnn_images[index : index + 1], classes[index : index + 1])
        torch.testing.assert_close(together[index], alone[0], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(together[:, 0], together[:, 1])


def test_eigencam_is_the_same_map_for_every_rank(mobilenet, cnn_images):
    _, maps = make_method("eigencam", mobilenet)(cnn_images, 3)
    assert torch.equal(maps[:, 0], maps[:, 2])


def test_score_batch_bounds_memory_without_changing_maps(mobilenet, cnn_images):
    images = cnn_images[:1, :, :64, :96]
    _, small = make_method("scorecam", mobilenet, "features.1", score_batch=3)(images, 2)
    _, large = make_method("scorecam", mobilenet, "features.1", score_batch=64)(images, 2)
    torch.testing.assert_close(small, large, atol=1e-5, rtol=1e-4)


def test_every_method_has_its_peer():
    assert set(METHODS) == set(PEERS)


def test_unknown_method_names_the_nearest():
    with pytest.raises(ArgumentError, match="did you mean gradcam\\+\\+"):
        make_method("gradcam+", torch.nn.Linear(2, 2))


def test_a_layer_that_is_not_a_map_says_why_in_one_line(mobilenet, cnn_images):
    method = make_method("gradcam", mobilenet, "classifier.1")
    with pytest.raises(LayerError, match=r"classifier.1 gives \[2, 1000\], not a spatial map"):
        method(cnn_images, 1)


def test_inference_mode_images_still_get_gradients(mobilenet, cnn_images):
    with torch.inference_mode():
        frozen = cnn_images.clone()
    _, maps = make_method("gradcam", mobilenet)(frozen, 1)
    _, plain = make_method("gradcam", mobilenet)(cnn_images, 1)
    torch.testing.assert_close(maps, plain)


def test_two_threads_on_one_model_get_their_own_maps(mobilenet, cnn_images):
    """The pipeline's CPU lanes run one model in several threads: each call's hook keeps only
    its own thread's forward."""
    import threading

    method = make_method("layercam", mobilenet)
    alone = [method(cnn_images[i : i + 1], 2)[1] for i in range(2)]
    results: dict[int, torch.Tensor] = {}
    barrier = threading.Barrier(2)

    def run(index: int) -> None:
        barrier.wait()
        for _ in range(3):
            results[index] = method(cnn_images[index : index + 1], 2)[1]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(2):
        torch.testing.assert_close(results[index], alone[index])
