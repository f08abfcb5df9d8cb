"""The CPU recipe: what `train` fills in on a machine without a GPU when no config file is
given, and that nothing else (a config file, a resume, a GPU run) changes because of it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cam_cli.errors import ConfigError
from cam_cli.training.config import TrainConfig, resolve_config, resume_differences
from cam_cli.training.cpu_recipe import cpu_recipe, cpu_workers
from cam_cli.training.initial_weights import initial_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_the_loader_leaves_one_core_to_the_network():
    assert [cpu_workers(n) for n in (1, 2, 3, 8, 64)] == [0, 1, 2, 4, 4]


def test_without_a_gpu_and_without_arguments_the_recipe_is_a_frozen_imagenet_mobilenet():
    resolved = resolve_config(overrides={}, on_cpu=True)
    config = resolved.config
    assert config.arch == "mobilenet_v2"
    assert config.pretrained
    assert config.freeze_backbone
    assert config.zero_init_head
    assert config.epochs == 5
    assert config.batch_size == 32
    assert config.lr * config.new_layers_lr_mult == pytest.approx(0.03)
    assert config.train_images_per_class == 0
    assert config.val_images == 0
    assert config.workers == cpu_workers()
    assert resolved.sources["arch"].startswith("CPU recipe")
    assert resolved.sources["freeze_backbone"].startswith("CPU recipe")
    assert resolved.sources["image_size"] == "mobilenet_v2 input size"


def test_every_option_still_wins_over_the_cpu_recipe():
    config = resolve_config(
        overrides={"freeze_backbone": False, "lr": 0.5, "epochs": 2}, on_cpu=True
    ).config
    assert not config.freeze_backbone
    assert config.lr == 0.5
    assert config.epochs == 2
    assert config.zero_init_head  # what was not given still comes from the recipe


def test_a_network_without_imagenet_weights_keeps_its_own_recipe_but_the_workers():
    plain = resolve_config(overrides={"arch": "small-gap"}).config
    cpu = resolve_config(overrides={"arch": "small-gap"}, on_cpu=True).config
    assert cpu == plain.replace(workers=cpu_workers())
    assert cpu_recipe(pretrained=False) == {"workers": cpu_workers()}


def test_a_config_file_a_resume_and_a_gpu_run_are_as_before():
    small = CONFIGS / "small-cpu.toml"
    assert (
        resolve_config(config_file=small, on_cpu=True).config
        == resolve_config(config_file=small).config
    )
    saved = {"arch": "mobilenet_v2", "epochs": 7}
    assert resolve_config(base=saved, on_cpu=True).config == resolve_config(base=saved).config
    with pytest.raises(ConfigError, match="no architecture"):
        resolve_config(overrides={})  # on a GPU, as before: the arch must be given


def test_a_checkpoint_saved_before_the_new_keys_still_resumes():
    old = TrainConfig(arch="small-gap").to_dict()
    del old["zero_init_head"], old["threshold_boxes"]
    assert resume_differences(old, TrainConfig(arch="small-gap").to_dict()) == []
    new = TrainConfig(arch="small-gap", zero_init_head=True).to_dict()
    assert resume_differences(old, new) == ["zero_init_head: False -> True"]


def test_a_zero_classifier_makes_the_first_loss_ln_c():
    config = TrainConfig(arch="small-gap", pretrained=False, zero_init_head=True)
    model = initial_model(config, 7).eval()
    logits, _ = model(torch.rand(4, 3, 48, 40))
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3, 6, 2]))
    assert loss.item() == pytest.approx(math.log(7), abs=1e-6)
    default = initial_model(config.replace(zero_init_head=False), 7).eval()
    assert default.classifier.weight.abs().sum() > 0  # the built-in init is untouched
