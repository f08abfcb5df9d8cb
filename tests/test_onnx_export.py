"""`cam-cli export`: the ONNX file's graph and metadata, the refusals, the file rules."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import WNIDS, invoke, one_line_error

from cam_cli import __version__
from cam_cli.models.onnx_format import FORMAT, KEYS
from cam_cli.models.registry import build_model

onnx = pytest.importorskip("onnx", reason="the [onnx] extra (onnx, onnxscript) is not installed")
pytest.importorskip("onnxscript", reason="the [onnx] extra (onnxscript) is not installed")


@pytest.fixture(scope="module")
def exported(fake, tmp_path_factory):
    """small-gap's seeded weights of `fake`, exported with the CLI: (file, its JSON line)."""
    out = tmp_path_factory.mktemp("export") / "small.onnx"
    model = ["--arch", "small-gap", "--weights", fake / "weights.pth", "--classes",
             fake / "classes.txt", "--input-size", 64]  # fmt: skip
    result = invoke("export", *model, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


@pytest.mark.slow
def test_the_graph_takes_a_uint8_batch_and_gives_logits_and_every_class_map(exported):
    path, line = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    (graph_input,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert graph_input.name == "images"
    assert isinstance(dims[0], str)
    assert dims[1:] == [3, 64, 64]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    logits, cams = model.graph.output
    assert (logits.name, cams.name) == ("logits", "cams")
    assert [d.dim_value for d in logits.type.tensor_type.shape.dim][1:] == [3]
    assert [d.dim_value for d in cams.type.tensor_type.shape.dim][1:] == [3, 16, 16]  # 64 / 4
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    assert line == {"output": str(path), "arch": "small-gap", "num_classes": 3,
                    "input_size": 64, "opset": 18, "bytes": path.stat().st_size}  # fmt: skip


def test_the_metadata_state_the_preprocessing_classes_version_and_exporter(exported, fake):
    props = {p.key: p.value for p in onnx.load(str(exported[0])).metadata_props}
    assert list(props) == [key for key in KEYS if key != "cam_threshold"]  # none carried
    assert props["format"] == FORMAT
    assert props["cam_cli_version"] == __version__
    assert json.loads(props["mean"]) == [0.485, 0.456, 0.406]
    assert json.loads(props["std"]) == [0.229, 0.224, 0.225]
    assert props["channel_order"] == "rgb"
    assert json.loads(props["divide_by"]) == 255.0
    assert props["input_size"] == "64"
    assert props["opset"] == "18"
    assert [wnid for wnid, _ in json.loads(props["classes"])] == WNIDS
    assert json.loads(props["classes"])[1] == [WNIDS[1], "class1"]
    assert props["exporter"].startswith("torch.onnx.export(dynamo=True), torch ")


def test_a_head_that_is_not_gap_plus_linear_is_refused_in_one_line(tmp_path):
    out = tmp_path / "gmp.onnx"
    result = invoke("export", "--arch", "small-gmp", "-o", out, "-q")
    one_line_error(result, "small-gmp: not exported", "pools by max", "not exact")
    assert not out.exists()


def test_the_output_is_never_an_input(fake, tmp_path):
    weights = tmp_path / "w.pth"
    torch.manual_seed(0)
    torch.save(build_model("small-gap", 3).state_dict(), weights)
    before = weights.read_bytes()
    result = invoke("export", "--arch", "small-gap", "--weights", weights, "-o", weights)
    one_line_error(result, "--output", "is an input", "--weights")
    assert weights.read_bytes() == before


def test_export_asks_for_a_model_and_an_output(tmp_path):
    one_line_error(invoke("export", "-o", tmp_path / "x.onnx"), "--arch", "--checkpoint")
    assert invoke("export", "--arch", "small-gap").exit_code == 2  # no --output


def test_without_the_exporter_the_command_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)
    result = invoke("export", "--arch", "small-gap", "-o", tmp_path / "x.onnx")
    one_line_error(result, 'pip install "cam-cli[onnx]"')
