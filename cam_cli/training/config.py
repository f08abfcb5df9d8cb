"""Training configuration: one flat set of keys, merged from layers, validated once.

Precedence (highest first): command-line option > `config` ``FILE`` > the run's own saved config
(on `resume`) > the architecture's default recipe (`ARCH_DEFAULTS`) > built-in defaults (the
`TrainConfig` field defaults). Keeping every layer a plain ``{key: value}`` dict makes that
precedence one loop, lets a TOML file use exactly the names of the dataclass fields, and lets
``config.toml`` written into a run directory be passed back as `config`.

Nothing here imports torch at module level, so the command line's help answers at once.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cam_cli.errors import ConfigError, SetupError
from cam_cli.files.checks import check_input_size
from cam_cli.settings import AnnotationsFormat, choices

SCHEDULES = ("step", "multistep", "cosine", "constant")
ANNOTATIONS_FORMATS = choices(AnnotationsFormat)  # what `val_annotations` may be
MAX_CONFIG_BYTES = 1 << 20  # a config of every key is under 2 KB


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the data and run directories excepted).

    ``batch_size`` is the GLOBAL batch: under torchrun with N processes each process takes
    ``batch_size / N`` images per step, so a recipe means the same thing on 1 or 8 GPUs and the
    learning rate never needs rescaling. Schedules are in epochs but applied per iteration (as
    Caffe's ``lr_policy: step`` is), so a mid-epoch resume continues on the exact learning rate.
    """

    arch: str = ""
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01  # backbone learning rate ("base_lr")
    new_layers_lr_mult: float = 10.0  # the layers the paper adds (CAM conv + fc) train faster
    bias_lr_mult: float = 1.0  # Caffe's blobs_lr 2 for biases -> 2.0
    bias_decay_mult: float = 1.0  # Caffe's weight_decay 0 for biases -> 0.0
    lr_schedule: str = "step"
    lr_step_size: float = 30.0  # epochs between decays ("step")
    lr_milestones: list[float] = field(default_factory=list)  # epochs of decays ("multistep")
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0  # linear warm-up from 0 over this many epochs
    weight_decay: float = 5e-4
    momentum: float = 0.9
    image_size: int | None = None  # None -> the architecture's default input size
    augment: bool = True  # random resized crop + horizontal flip; off -> resize whole image
    crop_scale_min: float = 0.08  # smallest crop area fraction of the random resized crop
    workers: int = 4
    device: str = "auto"
    pretrained: bool | None = None  # None -> True when the architecture has ImageNet weights
    backbone_weights: str | None = None  # a local state_dict file instead of the download
    amp: bool = False
    seed: int = 0
    checkpoint_every: int = 0  # also write last.pt every N steps (0: at epoch ends only)
    freeze_backbone: bool = False  # train only the new layers (backbone fixed, its BN in eval)
    train_images_per_class: int = 0  # the first N images (sorted) of every class; 0: all
    threshold_images_per_class: int = 0  # choose the CAM threshold on N boxed train images
    val_images: int = 0  # validate on the first N val images (sorted by path); 0: all
    zero_init_head: bool = False  # the new classifier starts at zero: first loss exactly ln C
    threshold_boxes: str | None = None  # choose the CAM threshold on the boxes of this file
    val_annotations: str | None = None  # the val images' classes from this ground-truth file
    val_annotations_format: str | None = None  # its format (`data.interchange`); None: detected
    # With freeze_backbone: the backbone's outputs computed once into an on-disk cache
    # (`training.feature_cache`), the head trained on them every epoch.
    feature_cache: bool = True
    feature_cache_views: int = 1  # augmented views per image; epoch e reads view e % views
    feature_cache_dir: str | None = None  # None: RUN_DIR/feature-cache
    feature_cache_max_gb: float = 20.0  # refuse to build a larger cache
    feature_cache_dtype: str = "float16"  # or "float32"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lr_milestones"] = list(self.lr_milestones)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        checked = {key: _check_value(key, value, source) for key, value in data.items()}
        config = cls(**checked)
        config.validate(source)
        return config

    def replace(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)

    def validate(self, source: str = "config") -> None:
        """Cross-field checks; single values were type-checked on the way in."""
        if self.lr_schedule == "multistep" and not self.lr_milestones:
            raise ConfigError(f"{source}: lr_schedule 'multistep' needs lr_milestones")
        if sorted(self.lr_milestones) != list(self.lr_milestones):
            raise ConfigError(f"{source}: lr_milestones must be increasing")
        if not self.arch:
            raise ConfigError(f"{source}: no arch given")
        if self.val_annotations_format is not None and self.val_annotations is None:
            raise ConfigError(f"{source}: val_annotations_format without val_annotations")


# --- per-key validation ---------------------------------------------------------------------

_INT_KEYS = {"epochs": 1, "batch_size": 1, "workers": 0, "seed": 0, "checkpoint_every": 0,
             "train_images_per_class": 0, "threshold_images_per_class": 0,
             "val_images": 0, "feature_cache_views": 1}  # fmt: skip
_POSITIVE_FLOATS = {"lr", "lr_step_size", "feature_cache_max_gb"}
_NONNEG_FLOATS = {
    "new_layers_lr_mult", "bias_lr_mult", "bias_decay_mult", "lr_gamma", "warmup_epochs",
    "weight_decay", "momentum",
}  # fmt: skip
_BOOL_KEYS = {"augment", "amp", "freeze_backbone", "zero_init_head", "feature_cache"}
CACHE_DTYPES = ("float16", "float32")
KNOWN_KEYS = tuple(f.name for f in fields(TrainConfig))


def _check_value(key: str, value: Any, source: str) -> Any:
    """One key's value -> its canonical Python type, or a ConfigError naming key and source."""
    where = f"{source}: {key}"
    if key not in KNOWN_KEYS:
        close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{source}: unknown key {key!r}{hint}; known: {', '.join(KNOWN_KEYS)}")
    if key in _INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if value < _INT_KEYS[key]:
            raise ConfigError(f"{where} must be >= {_INT_KEYS[key]}, got {value}")
        return value
    if key in _POSITIVE_FLOATS or key in _NONNEG_FLOATS or key == "crop_scale_min":
        number = _as_float(value, where)
        if key in _POSITIVE_FLOATS and not number > 0:
            raise ConfigError(f"{where} must be > 0, got {value}")
        if key in _NONNEG_FLOATS and not number >= 0:
            raise ConfigError(f"{where} must be >= 0, got {value}")
        if key == "crop_scale_min" and not 0 < number <= 1:
            raise ConfigError(f"{where} must be in (0, 1], got {value}")
        return number
    if key in _BOOL_KEYS or key == "pretrained":
        if value is None and key == "pretrained":
            return None
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if key == "lr_milestones":
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list of epochs, got {value!r}")
        return [_as_float(v, where) for v in value]
    if key == "lr_schedule":
        if value not in SCHEDULES:
            raise ConfigError(f"{where} must be one of {', '.join(SCHEDULES)}, got {value!r}")
        return value
    if key == "image_size":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        try:
            check_input_size(value, where)  # the range of every input size (`files.checks`)
        except SetupError as error:
            raise ConfigError(str(error)) from None
        return value
    if key == "val_annotations_format":
        if value is None or value == "":
            return None
        if value not in ANNOTATIONS_FORMATS:
            raise ConfigError(
                f"{where} must be one of {', '.join(ANNOTATIONS_FORMATS)}, got {value!r}"
            )
        return value
    if key in ("backbone_weights", "threshold_boxes", "val_annotations", "feature_cache_dir"):
        if value is None or value == "":
            return None
        return str(value)
    if key == "feature_cache_dtype" and value not in CACHE_DTYPES:
        raise ConfigError(f"{where} must be one of {', '.join(CACHE_DTYPES)}, got {value!r}")
    if not isinstance(value, str):  # arch, device
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def _as_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{where} must be finite, got {value!r}")
    return number


# --- the recipes ------------------------------------------------------------------------------

# The paper's networks (paper, section 3.1), fine-tuned from ImageNet as zhoubolei/CAM's released
# GoogLeNet-CAM solver + train_val does: SGD, momentum 0.9, weight decay 5e-4, base_lr 0.001,
# lr_policy step (gamma 0.1, stepsize 40k of max_iter 160k iterations at batch 256 = 8 of 32
# ImageNet epochs), biases at 2x lr and no weight decay, crops (224 here; 227 in Caffe), mirror.
_PAPER_RECIPE: dict[str, Any] = {
    "epochs": 32,
    "batch_size": 256,
    "lr": 0.001,
    "new_layers_lr_mult": 10.0,
    "bias_lr_mult": 2.0,
    "bias_decay_mult": 0.0,
    "lr_schedule": "step",
    "lr_step_size": 8.0,
    "lr_gamma": 0.1,
    "weight_decay": 5e-4,
    "momentum": 0.9,
    "image_size": 224,
    "augment": True,
    "crop_scale_min": 0.08,
    "pretrained": True,
    "workers": 8,
}
# Small networks trained from scratch on CPU (the synthetic dataset): no "new" layers to favour.
_SMALL_RECIPE: dict[str, Any] = {
    "epochs": 15,
    "batch_size": 32,
    "lr": 0.05,
    "new_layers_lr_mult": 1.0,
    "lr_schedule": "cosine",
    "weight_decay": 5e-4,
    "momentum": 0.9,
    "crop_scale_min": 0.35,
    "workers": 2,
    "pretrained": False,
}

ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "alexnet-gap": dict(_PAPER_RECIPE),
    "alexnet-star-gap": dict(_PAPER_RECIPE),
    "vgg16-gap": dict(_PAPER_RECIPE),
    # The released GoogLeNet-CAM train_val gives CAM_conv and CAM_fc the backbone's lr (blobs_lr 1).
    "googlenet-gap": {**_PAPER_RECIPE, "new_layers_lr_mult": 1.0},
    "small-gap": dict(_SMALL_RECIPE),
    "small-gap-nobn": dict(_SMALL_RECIPE),
}


def arch_defaults(arch: str) -> dict[str, Any]:
    """The architecture's default recipe (``{}`` when it has none)."""
    from cam_cli.models.registry import get_arch

    return dict(ARCH_DEFAULTS.get(get_arch(arch).name, {}))


# --- files ------------------------------------------------------------------------------------


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A flat TOML file of `TrainConfig` keys -> checked ``{key: value}`` (only keys it sets)."""
    from cam_cli.files.reading import read_bytes

    path = Path(path)
    if not os.path.lexists(path):
        raise ConfigError(f"{path}: no such config file")
    try:  # bounded, a FIFO refused at once (`files.reading`)
        data = tomllib.loads(read_bytes(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a flat config (arrays nested too deep)") from None
    except ValueError as error:  # the reader's: not a regular file, too large
        raise ConfigError(str(error)) from None
    for key, value in data.items():
        if isinstance(value, dict):
            raise ConfigError(f"{path}: tables ([{key}]) are not used; put keys at the top level")
    return {key: _check_value(key, value, str(path)) for key, value in data.items()}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, int) or math.isfinite(value) else str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(data: dict[str, Any], header: str = "") -> str:
    """Flat dict -> TOML text (None values become comments: TOML has no null)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in data.items():
        lines.append(f"# {key} = (unset)" if value is None else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


# --- merging ----------------------------------------------------------------------------------


@dataclass
class ResolvedConfig:
    config: TrainConfig
    sources: dict[str, str]  # key -> where its value came from


def resolve_config(
    *,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    base: dict[str, Any] | None = None,
    base_name: str = "saved run config",
    on_cpu: bool = False,
) -> ResolvedConfig:
    """Merge the layers (see the module docstring) into one validated `TrainConfig`.

    ``overrides`` holds only the options given on the command line (None = not given). ``base``
    is a run's saved config on resume: it replaces the architecture's defaults, so resuming needs
    no options at all. The architecture's dependent values (image size, pretrained) are filled in
    here, so the saved config says exactly what ran. ``on_cpu``: the run is on a CPU; without a
    config file or a saved config, the CPU recipe
    (`training.cpu_recipe`, with `mobilenet_v2` when no arch is given) then sits just above the
    architecture's defaults.
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    cli = {k: _check_value(k, v, "command line") for k, v in given.items()}
    from_file = read_config_file(config_file) if config_file is not None else {}
    saved = {k: _check_value(k, v, base_name) for k, v in (base or {}).items()}

    on_cpu = on_cpu and config_file is None and not base
    arch = cli.get("arch") or from_file.get("arch") or saved.get("arch")
    if not arch and on_cpu:
        from cam_cli.training.cpu_recipe import CPU_ARCH

        arch = CPU_ARCH
    if not arch:
        raise ConfigError("no architecture: give `arch` NAME (see `cam-cli models`) or set arch")
    try:
        from cam_cli.models.registry import get_arch

        spec = get_arch(arch)
    except KeyError as error:
        raise ConfigError(str(error.args[0])) from None

    defaults = {} if base else arch_defaults(spec.name)
    has_weights = bool(spec.backbone_weights or spec.torchvision_weights)
    cpu_layer: dict[str, Any] = {}
    if on_cpu:
        from cam_cli.training.cpu_recipe import cpu_recipe

        pretrained = cli.get("pretrained", defaults.get("pretrained"))
        starts_trained = "backbone_weights" in cli or (
            has_weights if pretrained is None else pretrained
        )
        cpu_layer = cpu_recipe(starts_trained)
        if not (cli.get("arch") or saved.get("arch")):
            cpu_layer["arch"] = spec.name
    layers: list[tuple[str, dict[str, Any]]] = [
        ("built-in default", TrainConfig().to_dict()),
        (f"{spec.name} default recipe", defaults),
        ("CPU recipe (no GPU, no config file)", cpu_layer),
        (base_name, saved),
        (str(config_file), from_file),
        ("command line", cli),
    ]
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, layer in layers:
        for key, value in layer.items():
            merged[key] = value
            sources[key] = name
    merged["arch"] = spec.name

    if merged["image_size"] is None:
        merged["image_size"] = spec.default_input_size
        sources["image_size"] = f"{spec.name} input size"
    if merged["pretrained"] is None:
        merged["pretrained"] = has_weights or merged["backbone_weights"] is not None
        sources["pretrained"] = f"{spec.name} has ImageNet weights: {has_weights}"
    if merged["pretrained"] and not has_weights and merged["backbone_weights"] is None:
        raise ConfigError(
            f"{spec.name} has no ImageNet weights to start from; use `no_pretrained`, "
            "or `backbone_weights` FILE"
        )
    return ResolvedConfig(TrainConfig.from_dict(merged, "merged config"), sources)


# Keys that may differ when a run is resumed: they change how it runs, not what it learns
# (the starting weights only matter at the start, and epochs may be raised to train longer).
RESUME_FREE_KEYS = frozenset(
    {"epochs", "workers", "device", "amp", "checkpoint_every", "pretrained", "backbone_weights",
     "threshold_boxes", "feature_cache_dir", "feature_cache_max_gb"}
)  # fmt: skip


def resume_differences(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: saved -> new`` for every key that must match to continue a run. A key a saved
    config lacks (written before the key existed) had its built-in default."""
    differences = []
    built_in = TrainConfig().to_dict()
    for key in KNOWN_KEYS:
        if key in RESUME_FREE_KEYS:
            continue
        old_value, new_value = saved.get(key, built_in[key]), new.get(key, built_in[key])
        if isinstance(old_value, int | float) and isinstance(new_value, int | float):
            same = math.isclose(float(old_value), float(new_value), rel_tol=1e-12)
        else:
            same = old_value == new_value
        if not same:
            differences.append(f"{key}: {old_value!r} -> {new_value!r}")
    return differences
