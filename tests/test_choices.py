"""The one-line summary `train` gives before its first step."""

from __future__ import annotations

from cam_cli.data.classes import ClassInfo
from cam_cli.training.choices import choices_summary
from cam_cli.training.config import resolve_config
from cam_cli.training.data import TrainData


def test_the_summary_says_the_recipe_the_images_left_out_and_the_threshold():
    classes = [ClassInfo(i, name, name) for i, name in enumerate(["cat", "dog", "owl"])]
    train = [(f"{i}.jpg", i % 3) for i in range(180)]
    data = TrainData(classes, train, [("v.jpg", 0)] * 60, [])
    resolved = resolve_config(overrides={"threshold_boxes": "my.csv"}, on_cpu=True)
    line = choices_summary(resolved.config, data, resolved.sources, workers=1)
    assert line.startswith("settings: mobilenet_v2 (the CPU recipe: no GPU, no config file)")
    assert "first loss ln 3 = 1.10" in line
    assert "180 training images of 3 classes (all)" in line
    assert "60 val images (all)" in line
    # 180 = 5 x 32 + 20: the 20 of each epoch's last partial batch are said
    assert "5 epochs of 5 steps of 32" in line
    assert "last partial batch: 20 images" in line
    assert "lr 0.003 (0.03 for the new layers)" in line
    assert line.endswith("CAM threshold chosen on the boxes of my.csv")
    assert "\n" not in line


def test_a_recipe_file_run_is_not_called_the_cpu_recipe():
    classes = [ClassInfo(i, str(i), str(i)) for i in range(2)]
    data = TrainData(classes, [("a.jpg", 0)] * 64, [], [])
    resolved = resolve_config(overrides={"arch": "small-gap", "batch_size": 32})
    line = choices_summary(resolved.config, data, resolved.sources, workers=2)
    assert "CPU recipe" not in line
    assert "partial" not in line
    assert "no val images" in line
    assert "every layer trained" in line
    assert "no CAM threshold chosen" in line
