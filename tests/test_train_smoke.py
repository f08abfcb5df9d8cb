"""scripts/device_checks/train_smoke.py: the fine-tuning recipe (every layer trained) runs its
first steps here, on 2 cores, as the GPU check runs them on the device (there with the
recipe's sizes)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location(
        "train_smoke", REPO / "scripts/device_checks/train_smoke.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_finetune_recipe_trains_every_layer_for_its_first_steps(tmp_path, capsys):
    script = load_script()
    out = tmp_path / "run"
    code = script.main(["--config", str(REPO / "configs/tiny-imagenet-finetune.toml"),
                        "--device", "cpu", "--steps", "2", "--batch-size", "4",
                        "--image-size", "64", "--classes", "3", "--workers", "0",
                        "--out", str(out)])  # fmt: skip
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert report["arch"] == "mobilenet_v2-gap"
    assert report["steps"] == 2
    assert report["images"] == 8
    assert report["img_s"] > 0
    assert math.isfinite(report["first_loss"])
    assert math.isfinite(report["last_loss"])
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["config"]["freeze_backbone"] is False
    assert not (out / "feature-cache").exists()  # not frozen: no cache
    # every layer trained: the trunk's momentum buffers exist (it had gradients)
    groups = {g["name"] for g in saved["optimizer"]["param_groups"]}
    assert {"backbone/weights", "new/weights"} <= groups
