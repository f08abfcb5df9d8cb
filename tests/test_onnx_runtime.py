"""`--onnx FILE`: ONNX Runtime computes the logits and CAMs, the rest of the run is the same.

Checked against PyTorch on real images of the shared sample: mobilenet_v2 (ImageNet weights),
resnet50 (random weights) and a checkpoint of `cam-cli train`; scripts/tools/check_onnx.py does the
same on all of the sample's images and reports the figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import WNIDS, invoke, model_args, one_line_error

from cam_cli.data.images import load_resized
from cam_cli.models.loading import load_model
from cam_cli.settings import ModelOptions
from cam_cli.synthetic.dataset import generate_dataset

ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
pytest.importorskip("onnxscript", reason="the [onnx] extra (onnxscript) is not installed")
from cam_cli.models.onnx_export import export_onnx  # noqa: E402 - after the skip

TOLERANCE = 1e-4  # of each map's (each image's logits') range
FEW = 4  # sample images per model


def few_images(sample_dir, count: int = FEW) -> list[str]:
    return [str(p) for p in sorted((sample_dir / "val").iterdir())[:count]]


def both_outputs(options: ModelOptions, onnx_file, paths: list[str]):
    """(PyTorch logits, PyTorch CAMs of every class, ONNX logits, ONNX CAMs) on ``paths``."""
    torch.manual_seed(0)  # random weights: the same as the export's
    ours, theirs = load_model(options), load_model(ModelOptions(onnx=onnx_file))
    assert theirs.input_size == ours.input_size
    assert theirs.classes == ours.classes
    pixels = torch.from_numpy(np.stack([load_resized(p, ours.input_size)[0] for p in paths]))
    with torch.inference_mode():
        logits, features = ours.model(ours.preprocessing.apply(pixels))
        weight = ours.model.class_weights()[0]
        cams = features if weight is None else torch.einsum("ck,bkhw->bchw", weight, features)
        onnx_logits, onnx_cams = theirs.model(theirs.preprocessing.apply(pixels))
    return logits, cams, onnx_logits, onnx_cams


def assert_close_to_range(reference: torch.Tensor, other: torch.Tensor, dims) -> None:
    span = reference.amax(dim=dims) - reference.amin(dim=dims)
    assert (span > 0).all()
    error = (reference - other).abs().amax(dim=dims) / span
    assert error.max().item() <= TOLERANCE, error.max().item()


def export(options: ModelOptions, path) -> str:
    torch.manual_seed(0)
    export_onnx(options, path)
    return str(path)


def boxes(result) -> list:
    assert result.exit_code == 0, result.output
    return [[(p["class_index"], p["box"], p["score"]) for p in json.loads(line)["predictions"]]
            for line in result.stdout.splitlines()]  # fmt: skip


def assert_same_boxes(torch_run, onnx_run) -> None:
    ours, theirs = boxes(torch_run), boxes(onnx_run)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert [(c, box) for c, box, _ in a] == [(c, box) for c, box, _ in b]
        assert np.allclose([s for *_, s in a], [s for *_, s in b], atol=2e-6)


# --- mobilenet_v2 with its ImageNet weights ------------------------------------------------------


@pytest.fixture(scope="module")
def mobilenet(mobilenet_weights, sample_dir, tmp_path_factory):
    options = ModelOptions(arch="mobilenet_v2", weights=str(mobilenet_weights),
                           classes_file=str(sample_dir / "LOC_synset_mapping.txt"))  # fmt: skip
    return options, export(options, tmp_path_factory.mktemp("onnx") / "mobilenet_v2.onnx")


@pytest.mark.slow
def test_mobilenet_v2_logits_and_cams_equal_pytorch(mobilenet, sample_dir):
    logits, cams, onnx_logits, onnx_cams = both_outputs(*mobilenet, few_images(sample_dir))
    assert cams.shape == onnx_cams.shape == (FEW, 1000, 7, 7)
    assert_close_to_range(logits, onnx_logits, (1,))
    assert_close_to_range(cams, onnx_cams, (2, 3))
    assert (logits.argmax(1) == onnx_logits.argmax(1)).all()


def test_bbox_onnx_gives_bbox_boxes_on_the_sample(mobilenet, sample_dir):
    options, onnx_file = mobilenet
    images = few_images(sample_dir, 6)
    common = ["--topk", 5, "--no-fast", "--workers", 0, "-q", *images]
    torch_run = invoke("bbox", "--arch", "mobilenet_v2", "--weights", options.weights,
                       "--classes", options.classes_file, *common)  # fmt: skip
    assert_same_boxes(torch_run, invoke("bbox", "--onnx", onnx_file, *common))


def test_the_paper_rule_on_the_cams_of_a_given_class_and_ten_crop_agree_too(mobilenet, sample_dir):
    options, onnx_file = mobilenet
    images = few_images(sample_dir, 2)
    for extra in (["--class", "n01440764"], ["--ten-crop", "--topk", 2]):
        common = [*extra, "--no-fast", "--workers", 0, "-q", *images]
        torch_run = invoke("bbox", "--arch", "mobilenet_v2", "--weights", options.weights,
                           "--classes", options.classes_file, *common)  # fmt: skip
        assert_same_boxes(torch_run, invoke("bbox", "--onnx", onnx_file, *common))


@pytest.mark.slow
def test_squeezenet_caffe_weights_bgr_and_per_class_maps_equal_pytorch(
    squeezenet_weights, sample_dir, tmp_path
):
    """Caffe's preprocessing (BGR, 0..255 minus the mean) inside the graph, and a conv
    classifier, whose features are the maps."""
    options = ModelOptions(arch="squeezenet1_1", weights=str(squeezenet_weights),
                           normalize="caffe")  # fmt: skip
    onnx_file = export(options, tmp_path / "squeezenet.onnx")
    logits, cams, onnx_logits, onnx_cams = both_outputs(options, onnx_file, few_images(sample_dir))
    assert_close_to_range(logits, onnx_logits, (1,))
    assert_close_to_range(cams, onnx_cams, (2, 3))
    props = load_model(ModelOptions(onnx=onnx_file)).preprocessing
    assert props.name == "caffe (inside the ONNX graph)"


# --- resnet50 with random weights ---------------------------------------------------------------


@pytest.mark.slow
def test_resnet50_with_random_weights_equals_pytorch(sample_dir, tmp_path):
    options = ModelOptions(arch="resnet50")
    onnx_file = export(options, tmp_path / "resnet50.onnx")
    logits, cams, onnx_logits, onnx_cams = both_outputs(options, onnx_file, few_images(sample_dir))
    assert onnx_cams.shape == (FEW, 1000, 7, 7)
    assert_close_to_range(logits, onnx_logits, (1,))
    assert_close_to_range(cams, onnx_cams, (2, 3))


# --- a checkpoint of `cam-cli train` -------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch small-gap run on synthetic data (3 classes, 32 px), with a CAM threshold as
    `train --threshold-images-per-class` writes one; the checkpoint and its export."""
    root = tmp_path_factory.mktemp("trained")
    generate_dataset(root / "data", num_classes=3, train_per_class=8, val_images=6,
                     image_size=32, seed=0)  # fmt: skip
    result = invoke("train", "--arch", "small-gap", "--data", root / "data", "--out", root / "run",
                    "--epochs", 2, "--image-size", 32, "--batch-size", 8, "--workers", 0,
                    "--device", "cpu", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    checkpoint = root / "run" / "best.pt"
    data = torch.load(checkpoint, weights_only=True)
    data["cam_threshold"] = 0.35
    torch.save(data, checkpoint)
    options = ModelOptions(checkpoint=str(checkpoint))
    return options, export(options, root / "best.onnx"), root / "data"


@pytest.mark.slow
def test_a_checkpoint_equals_pytorch_and_its_threshold_travels(trained, sample_dir):
    options, onnx_file, _ = trained
    logits, cams, onnx_logits, onnx_cams = both_outputs(options, onnx_file, few_images(sample_dir))
    assert_close_to_range(logits, onnx_logits, (1,))
    assert_close_to_range(cams, onnx_cams, (2, 3))
    loaded = load_model(ModelOptions(onnx=onnx_file))
    assert loaded.cam_threshold == 0.35
    assert loaded.input_size == 32
    assert loaded.arch == "small-gap"


def test_bbox_and_eval_with_onnx_equal_the_checkpoint(trained, tmp_path):
    options, onnx_file, data = trained
    common = ["--no-fast", "--workers", 0, "-q"]
    images = ["--images", data / "val"]
    assert_same_boxes(invoke("bbox", "--checkpoint", options.checkpoint, *images, *common),
                      invoke("bbox", "--onnx", onnx_file, *images, *common))  # fmt: skip
    reports = []
    for model in (["--checkpoint", options.checkpoint], ["--onnx", onnx_file]):
        out = tmp_path / f"{model[0][2:]}.json"
        result = invoke("eval", *model, *images, "--annotations", data / "annotations",
                        "--maxboxacc", "--json", out, *common)  # fmt: skip
        assert result.exit_code == 0, result.output
        reports.append(json.loads(out.read_text()))
    ours, theirs = (report.pop("settings") for report in reports)
    assert reports[0] == reports[1]  # every figure
    assert theirs.pop("onnx") == str(onnx_file)
    assert ours.pop("checkpoint") == options.checkpoint
    assert theirs.pop("preprocessing") == "imagenet (inside the ONNX graph)"
    assert ours.pop("preprocessing") == "imagenet"
    assert theirs == ours


def test_cam_with_onnx_writes_the_maps_of_the_checkpoint(trained, tmp_path):
    options, onnx_file, data = trained
    images = sorted((data / "val").iterdir())[:2]
    for name, model in (("torch", ["--checkpoint", options.checkpoint]),
                        ("onnx", ["--onnx", onnx_file])):  # fmt: skip
        result = invoke("cam", *model, *images, "--out", tmp_path / name, "--npy", "feature",
                        "--no-fast", "--workers", 0, "-q")  # fmt: skip
        assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "torch").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "onnx").iterdir())
    assert written
    for name in (n for n in written if n.endswith(".npy")):
        ours, theirs = np.load(tmp_path / "torch" / name), np.load(tmp_path / "onnx" / name)
        assert np.abs(ours - theirs).max() <= TOLERANCE * (ours.max() - ours.min())


# --- what goes wrong -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_onnx(fake, tmp_path_factory):
    options = ModelOptions(arch="small-gap", weights=str(fake / "weights.pth"),
                           classes_file=str(fake / "classes.txt"), input_size=48)  # fmt: skip
    return export(options, tmp_path_factory.mktemp("small") / "small.onnx")


def test_a_file_that_is_not_onnx_is_one_line(fake, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model\n")
    one_line_error(invoke("bbox", "--onnx", bad, fake / "imgs"), str(bad), "not an ONNX model")
    one_line_error(invoke("bbox", "--onnx", tmp_path / "none.onnx", fake / "imgs"), "none.onnx")
    one_line_error(invoke("bbox", "--onnx", tmp_path, fake / "imgs"), "not a regular file")


def test_an_onnx_file_not_made_by_export_is_one_line(fake, tmp_path):
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "foreign",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
    )  # fmt: skip
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), foreign)
    one_line_error(invoke("bbox", "--onnx", foreign, fake / "imgs"), "not a cam-cli export")


@pytest.mark.slow
def test_onnx_with_model_options_is_one_line(small_onnx, fake):
    result = invoke("bbox", "--onnx", small_onnx, "--arch", "small-gap", fake / "imgs")
    one_line_error(result, "--onnx holds the whole model", "--arch")
    other = fake / "other.txt"
    other.write_text("".join(f"{w} c\n" for w in reversed(WNIDS)))
    one_line_error(invoke("bbox", "--onnx", small_onnx, "--classes", other, fake / "imgs"),
                   "class order differs")  # fmt: skip


def test_without_onnxruntime_the_option_says_how_to_install_it(small_onnx, fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = invoke("bbox", "--onnx", small_onnx, fake / "imgs")
    one_line_error(result, "--onnx", "ONNX Runtime is not installed", 'pip install "cam-cli[onnx]"')


def test_small_images_and_a_name_that_is_not_utf8_give_the_same_boxes(small_onnx, fake):
    """The fake folder's 48x40 images (one named with a byte that is not UTF-8), in lanes."""
    common = ["--workers", 0, "--no-fast", "-q", fake / "imgs"]
    torch_run = invoke("bbox", *model_args(fake), "--input-size", 48, fake / "imgs")
    assert_same_boxes(torch_run, invoke("bbox", "--onnx", small_onnx, *common))


def test_the_onnx_file_is_protected_from_outputs(small_onnx, fake):
    before = Path(small_onnx).read_bytes()
    result = invoke("bbox", "--onnx", small_onnx, fake / "imgs", "--output", small_onnx)
    one_line_error(result, "is an input", "--onnx")
    assert Path(small_onnx).read_bytes() == before
