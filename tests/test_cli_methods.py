"""--method / --layer on `bbox`, `cam` and `eval`, and `eval --faithfulness`, through the CLI:
one-line errors, records and reports that name the method and layer (none for the default),
Grad-CAM boxes on real images against CAM's (equal up to a positive scale on a GAP + linear
network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke, model_args, one_line_error

from cam_cli.boxes.geometry import iou_inclusive


def _records(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_a_bad_method_names_the_nearest(fake):
    result = invoke("bbox", *model_args(fake), "--images", fake / "imgs", "--method", "gradcamm")
    one_line_error(result, "--method", "did you mean gradcam?")


def test_a_bad_layer_names_the_nearest_layers(fake):
    args = ["--images", fake / "imgs", "--method", "gradcam", "--layer", "cam_convv"]
    result = invoke("bbox", *model_args(fake), *args)
    one_line_error(result, "--layer", "no module 'cam_convv'", "nearest: cam_conv,")


def test_a_layer_with_cam_is_refused(fake):
    result = invoke("bbox", *model_args(fake), "--images", fake / "imgs", "--layer", "cam_conv")
    one_line_error(result, "--layer", "--method cam")


def test_ten_crop_is_for_cam_only(fake):
    args = ["--images", fake / "imgs", "--method", "gradcam", "--ten-crop"]
    one_line_error(invoke("bbox", *model_args(fake), *args), "--ten-crop", "gradcam")


def test_cam_on_a_head_that_is_not_cam_exact_names_the_methods_that_work(fake):
    pytest.importorskip("timm", reason="timm is not installed")
    args = ["--arch", "timm/convnext_atto", "--images", fake / "imgs", "--quiet"]
    result = invoke("bbox", *args)
    one_line_error(result, "is not CAM-exact", "head.norm", "--method gradcam, gradcam++")


def test_the_default_records_are_as_they_were_and_others_name_method_and_layer(fake):
    default = invoke("bbox", *model_args(fake), "--images", fake / "imgs", "--topk", "2")
    explicit = invoke("bbox", *model_args(fake), "--images", fake / "imgs", "--topk", "2",
                      "--method", "cam")  # fmt: skip
    assert default.stdout == explicit.stdout
    assert all("method" not in r and "layer" not in r for r in _records(default.stdout))
    other = invoke("bbox", *model_args(fake), "--images", fake / "imgs", "--topk", "2",
                   "--method", "eigencam", "--layer", "trunk")  # fmt: skip
    for record in _records(other.stdout):
        if record.get("error") is None:
            assert record["method"] == "eigencam"
            assert record["layer"] == "trunk"


def test_gradcam_boxes_on_real_images_match_cams(sample_dir, mobilenet_weights, tmp_path):
    images = tmp_path / "val"
    images.mkdir()
    for path in sorted((sample_dir / "val").glob("*.JPEG"))[:4]:
        shutil.copy(path, images / path.name)
    args = ["--arch", "mobilenet_v2", "--weights", mobilenet_weights,
            "--classes", sample_dir / "LOC_synset_mapping.txt", "--images", images,
            "--topk", "2", "--workers", "0", "--no-fast"]  # fmt: skip
    cam = _records(invoke("bbox", *args, "--quiet").stdout)
    result = invoke("bbox", *args, "--method", "gradcam")
    # the default layer is said on stderr: the one CAM reads
    assert "gradcam reads layer features" in result.stderr
    grad = _records(result.stdout)
    assert len(grad) == len(cam) == 4
    for c, g in zip(cam, grad, strict=True):
        assert g["method"] == "gradcam"
        assert g["layer"] == "features"
        for pc, pg in zip(c["predictions"], g["predictions"], strict=True):
            assert (pc["class_index"], pc["score"]) == (pg["class_index"], pg["score"])
            # Grad-CAM = CAM / (h w) with the negatives cut: the same box but for the pixels
            # where bilinear upsampling crosses zero
            assert iou_inclusive(pc["box"], np.array([pg["box"]]))[0] > 0.9


def test_eval_names_the_method_and_adds_faithfulness(fake, tmp_path: Path):
    base = [*model_args(fake), "--images", fake / "imgs", "--annotations", fake / "xml"]
    default = tmp_path / "default.json"
    assert invoke("eval", *base, "--json", default).exit_code in (0, 1)
    data = json.loads(default.read_text())
    assert "faithfulness" not in data
    assert "method" not in data["settings"]
    other = tmp_path / "other.json"
    result = invoke("eval", *base, "--method", "gradcam++", "--faithfulness", "--json", other)
    assert result.exit_code in (0, 1), result.output
    data = json.loads(other.read_text())
    assert data["settings"]["method"] == "gradcam++"
    assert data["settings"]["layer"] == "cam_conv"  # the default: the map CAM reads
    figures = data["faithfulness"]
    assert figures["images"] + figures["failed_images"] == 3
    assert figures["steps"] == 20
    assert 0.0 <= figures["average_drop"] <= 1.0
    assert 0.0 <= figures["deletion_auc"] <= 1.0
    assert 0.0 <= figures["insertion_auc"] <= 1.0


def test_faithfulness_needs_a_model(fake, tmp_path: Path):
    records = tmp_path / "r.jsonl"
    records.write_text(invoke("bbox", *model_args(fake), "--images", fake / "imgs").stdout)
    result = invoke("eval", "--predictions", records, "--annotations", fake / "xml",
                    "--faithfulness")  # fmt: skip
    one_line_error(result, "--faithfulness", "model run")


def test_models_timm_methods_lists_every_model_with_its_methods_and_layer():
    pytest.importorskip("timm", reason="timm is not installed")
    result = invoke("models", "--timm", "mobilenetv*_050", "--methods")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["timm/mobilenetv2_050"][0].startswith("cam,gradcam,")  # CAM-exact head
    # conv_head after pooling: no CAM, every other method at the last stage
    methods, layer = rows["timm/mobilenetv3_small_050"]
    assert methods.split(",")[0] == "gradcam"
    assert "cam" not in methods.split(",")
    assert layer == "blocks.5"
