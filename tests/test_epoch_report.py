"""`train`'s report.html, rewritten after each epoch (`training.epoch_report`): the curves of
metrics.jsonl and the CAMs of a fixed handful of val images per epoch; ``--tensorboard``."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke

from cam_cli.cam.maps import compute_cams
from cam_cli.synthetic.dataset import generate_dataset
from cam_cli.training.epoch_report import EpochReport, grid_images

pytest.importorskip("matplotlib", reason="the report extra (pip install 'cam-cli[report]')")
TINY = ["--arch", "small-gap", "--image-size", "32", "--batch-size", "8", "--workers", "0",
        "--device", "cpu", "--lr", "0.05"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    generate_dataset(out, num_classes=3, train_per_class=8, val_images=6, image_size=32, seed=0)
    return out


def test_the_handful_is_one_image_per_class_in_path_order() -> None:
    val = [("b/2.jpg", 1), ("a/1.jpg", 0), ("a/0.jpg", 0), ("c/9.jpg", 2), ("b/1.jpg", 1)]
    assert grid_images(val, 2) == [("a/0.jpg", 0), ("b/1.jpg", 1)]
    assert grid_images(val) == [("a/0.jpg", 0), ("b/1.jpg", 1), ("c/9.jpg", 2)]


def test_each_epoch_rewrites_the_page(data, tmp_path) -> None:
    run = tmp_path / "run"
    result = invoke("train", "--data", data, "--out", run, "--epochs", "2", *TINY)
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "epoch 2 of 2" in page
    for row in rows:  # the table as the trainer's log formats it
        assert f"{row['train_loss']:.4f}" in page
    heads = re.findall(r"<th>epoch (\d+)</th>", page)
    assert heads == ["1", "2"]
    assert page.count('alt="') >= 2 * 3  # 3 classes' images x 2 epochs
    assert not list(run.glob("*.tmp*"))
    more = invoke("train", "--data", data, "--out", run, "--resume", "--epochs", "3")
    assert more.exit_code == 0, more.output
    assert "epoch 3 of 3" in (run / "report.html").read_text()


def test_the_grid_cams_are_the_networks_own(data, tmp_path) -> None:
    """The map of each followed image is the CAM of its class by the network as it is now."""
    from cam_cli.models.preprocess import IMAGENET
    from cam_cli.models.registry import build_model
    from cam_cli.training.data import scan_data

    scanned = scan_data(data)
    model = build_model("small-gap", len(scanned.classes))
    report = EpochReport(tmp_path, scanned.val, scanned.classes, 32, IMAGENET, {"epochs": "1"})
    metrics = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_acc": 0.5, "lr": 0.1,
                "images": 24, "seconds": 1.0}]  # fmt: skip
    report.after_epoch(model, torch.device("cpu"), metrics)
    assert (tmp_path / "report.html").is_file()
    assert len(report.cams) == 1
    assert len(report.cams[0]) == len(report.images) == 3
    model.eval()
    with torch.no_grad():
        _, features = model(IMAGENET.apply(report.pixels))
        labels = torch.tensor([[label] for _, label in report.images])
        weight, _ = model.class_weights()
        expected = compute_cams(features, weight, labels)[:, 0].numpy()
    np.testing.assert_allclose(np.stack(report.cams[0]), expected, rtol=1e-5, atol=1e-6)


def test_tensorboard_without_the_package_says_how_to_install(data, tmp_path, monkeypatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(  # the package as absent as on a machine without it
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else find_spec(name, *a),
    )
    result = invoke("train", "--data", data, "--out", tmp_path / "run", "--epochs", "1",
                    "--tensorboard", *TINY)  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "cam-cli: error: --tensorboard writes TensorBoard's files: "
        "pip install 'cam-cli[tensorboard]'"
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None,
    reason="tensorboard is not installed (pip install 'cam-cli[tensorboard]')",
)
def test_tensorboard_event_files(data, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = invoke("train", "--data", data, "--out", run, "--epochs", "2", "--tensorboard", *TINY)
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    loss = [(e.step, e.value) for e in events.Scalars("train_loss")]
    assert [s for s, _ in loss] == [1, 2]
    np.testing.assert_allclose([v for _, v in loss], [r["train_loss"] for r in rows], rtol=1e-6)
