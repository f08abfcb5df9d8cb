"""Training configuration: layer precedence, validation, the shipped TOML files, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from cam_cli.errors import ConfigError
from cam_cli.models.registry import get_arch
from cam_cli.training.config import (
    ARCH_DEFAULTS,
    TrainConfig,
    dump_toml,
    read_config_file,
    resolve_config,
    resume_differences,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PAPER_ARCHS = ("alexnet-gap", "alexnet-star-gap", "vgg16-gap", "googlenet-gap")


def test_precedence_cli_over_file_over_arch_recipe_over_builtin(tmp_path):
    file = tmp_path / "run.toml"
    file.write_text('arch = "small-gap"\nlr = 0.2\nepochs = 3\nlr_schedule = "step"\n')
    resolved = resolve_config(overrides={"lr": 0.3, "momentum": None}, config_file=file)
    config, sources = resolved.config, resolved.sources
    assert config.lr == 0.3
    assert sources["lr"] == "command line"
    assert config.epochs == 3
    assert sources["epochs"] == str(file)
    assert config.lr_schedule == "step"  # the file beats the recipe's cosine
    assert config.crop_scale_min == ARCH_DEFAULTS["small-gap"]["crop_scale_min"] != 0.08
    assert sources["crop_scale_min"] == "small-gap default recipe"  # recipe beats built-in
    assert config.bias_lr_mult == TrainConfig().bias_lr_mult  # untouched: built-in
    assert sources["bias_lr_mult"] == "built-in default"
    assert config.momentum == 0.9  # None on the command line means "not given"
    assert config.image_size == get_arch("small-gap").default_input_size  # from the arch
    assert config.pretrained is False  # small-gap has no ImageNet weights

    # no file: the arch recipe shows through; the CLI arch beats the file's arch
    assert resolve_config(overrides={"arch": "small-gap"}).config.lr == 0.05
    other = resolve_config(overrides={"arch": "small-gap-nobn"}, config_file=file).config
    assert other.arch == "small-gap-nobn"
    assert other.lr == 0.2


def test_resume_base_replaces_the_arch_recipe(tmp_path):
    saved = TrainConfig(arch="small-gap", epochs=2, lr=0.123, image_size=32).to_dict()
    resolved = resolve_config(overrides={"epochs": 5}, base=saved)
    assert resolved.config.lr == 0.123
    assert resolved.config.epochs == 5
    assert resolved.config.crop_scale_min == 0.08  # saved value, not the small-gap recipe's
    assert resolved.sources["lr"] == "saved run config"


def test_paper_recipes_and_arch_aliases():
    for arch in PAPER_ARCHS:
        config = resolve_config(overrides={"arch": arch, "pretrained": False}).config
        assert (config.lr, config.momentum, config.weight_decay) == (0.001, 0.9, 5e-4)
        assert config.lr_schedule == "step"
        assert config.image_size == 224
        assert (config.bias_lr_mult, config.bias_decay_mult) == (2.0, 0.0)
    assert resolve_config(overrides={"arch": "vggnet-gap"}).config.arch == "vgg16-gap"
    assert resolve_config(overrides={"arch": "vgg16-gap"}).config.pretrained is True


@pytest.mark.parametrize("arch", PAPER_ARCHS)
def test_shipped_paper_config_is_the_arch_recipe(arch):
    path = CONFIGS / f"{arch}.toml"
    from_file = read_config_file(path)
    assert from_file["arch"] == arch
    config = resolve_config(config_file=path, overrides={"pretrained": False}).config
    recipe = resolve_config(overrides={"arch": arch, "pretrained": False}).config
    assert config == recipe


def test_small_cpu_config_resolves():
    config = resolve_config(config_file=CONFIGS / "small-cpu.toml").config
    assert config.arch == "small-gap"
    assert config.pretrained is False
    assert config.image_size == 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("arch = 'small-gap'\nlr_shedule = 'step'\n", "did you mean 'lr_schedule'"),
        ("arch = 'small-gap'\nepochs = 0\n", "epochs must be >= 1"),
        ("arch = 'small-gap'\nepochs = 2.5\n", "epochs must be an integer"),
        ("arch = 'small-gap'\nlr = -1\n", "lr must be > 0"),
        ("arch = 'small-gap'\nlr_schedule = 'poly'\n", "lr_schedule must be one of"),
        ("arch = 'small-gap'\nlr_schedule = 'multistep'\n", "needs lr_milestones"),
        ("arch = 'small-gap'\npretrained = true\n", "`no_pretrained`"),
        ("arch = 'no-such-net'\n", "unknown architecture"),
        ("[train]\nlr = 1\n", "top level"),
        ("lr = \n", "not valid TOML"),
        # issue 19 (8): the input-size range holds in a config too (100000 tried 30 GB)
        ("arch = 'small-gap'\nimage_size = 100000\n", "image_size 100000: must be between 32"),
        ("arch = 'small-gap'\nimage_size = 0\n", "image_size 0: must be between 32 and 4096"),
        ("arch = 'small-gap'\nimage_size = -5\n", "image_size -5: must be between 32"),
    ],
)
def test_bad_configs_say_what_is_wrong(tmp_path, text, message):
    file = tmp_path / "bad.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        resolve_config(config_file=file)


def test_no_arch_anywhere():
    with pytest.raises(ConfigError, match="`arch`"):
        resolve_config(overrides={"lr": 0.1})


def test_dump_toml_round_trips(tmp_path):
    config = resolve_config(
        overrides={"arch": "small-gap", "lr_schedule": "multistep", "lr_milestones": [2, 4.5]}
    ).config
    file = tmp_path / "config.toml"
    file.write_text(dump_toml(config.to_dict(), header="a header"))
    assert resolve_config(config_file=file).config == config


def test_resume_differences_allow_more_epochs_only():
    saved = TrainConfig(arch="small-gap", epochs=2, image_size=32).to_dict()
    same = TrainConfig(arch="small-gap", epochs=9, image_size=32, workers=0, device="cpu")
    assert resume_differences(saved, same.to_dict()) == []
    changed = TrainConfig(arch="small-gap-nobn", epochs=2, image_size=48).to_dict()
    differences = resume_differences(saved, changed)
    assert any(d.startswith("arch:") for d in differences)
    assert "image_size: 32 -> 48" in differences


def test_a_config_that_is_a_fifo_or_nested_too_deep_is_one_error(tmp_path):
    import time

    from conftest import fifo, takes_under

    with fifo(tmp_path / "c.toml") as path:
        started = time.monotonic()
        with pytest.raises(ConfigError, match=r"c.toml: not a regular file \(a FIFO\)"):
            read_config_file(path)
        takes_under(5, started)
    deep = tmp_path / "deep.toml"
    deep.write_text("lr = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match=r"deep.toml: not a flat config"):
        read_config_file(deep)
