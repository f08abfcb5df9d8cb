"""timm networks as registry entries: `arch` ``timm/<model_name>``, built generically.

Any timm model whose head is CAM-exact works: the head must be global average pooling followed
by one linear layer (dropout allowed), so that ``mean(M_c) = S_c - b_c``. The features are
``model.forward_features(x)`` (``[B, C, h, w]``), the classifier ``model.get_classifier()``.
The head is checked by running ``forward_head`` once on the meta device and recording every
layer it calls: a norm, activation, hidden layer, conv after pooling, or any pooling other than
the average is refused in one line naming that layer. Models whose features are tokens
(``[B, N, C]``: ViT class tokens, attention pooling) have no spatial map and are refused too.

timm is imported only here, and only when a ``timm/`` name is asked for.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import torch
from torch import Tensor, nn

from cam_cli.errors import NotCAMExact, SetupError
from cam_cli.models.camnet import AnyHeadNet, ArchSpec, CAMNet
from cam_cli.models.preprocess import ChannelValues, Preprocessing

PREFIX = "timm/"
INSTALL_HINT = 'pip install "cam-cli[timm]"'

# Leaf layers a CAM-exact head may call besides its one linear classifier.
_NEUTRAL = ("Identity", "Flatten", "Dropout", "Dropout1d", "Dropout2d", "FastAdaptiveAvgPool")


def is_timm_name(name: str) -> bool:
    return name.lower().startswith(PREFIX)


def model_name(name: str) -> str:
    return name[len(PREFIX) :]


def import_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise SetupError(
            f"`arch` timm/...: timm is not installed; install it with: {INSTALL_HINT}"
        ) from None
    return timm


def _timm(model: nn.Module) -> Any:
    """``model`` with timm's own methods (``forward_features``, ``get_classifier``,
    ``forward_head``), which torch's type of a module's attributes (``Tensor | Module``) hides."""
    return model


def _features(net: nn.Module, x: Tensor) -> Tensor:
    return _timm(net).forward_features(x)


def _classifier(net: nn.Module) -> nn.Linear | None:
    # one linear layer for a CAM-exact head (`head_problem`); an `AnyHeadNet`'s may be any
    # module, passed on as timm gives it
    return _timm(net).get_classifier()


def _is_avg_pool(module: nn.Module) -> bool:
    kind = type(module).__name__
    if kind == "SelectAdaptivePool2d":
        return getattr(module, "pool_type", "") == "avg"
    if kind == "AdaptiveAvgPool2d":
        size = module.output_size
        return size in (1, (1, 1))
    return kind in ("FastAdaptiveAvgPool", "GlobalAvgPool2d")


def _is_pool_parent(module: nn.Module) -> bool:
    kind = type(module).__name__
    return kind == "SelectAdaptivePool2d" or "Attention" in kind or "AttnPool" in kind


def head_problem(model: nn.Module, input_size: int = 224) -> str | None:
    """Why ``model``'s head is not CAM-exact (one line), or None when it is GAP + one linear.

    ``model`` may live on the meta device: only shapes and the layers called are looked at.
    """
    name = type(model).__name__
    classifier = _timm(model).get_classifier()
    if not isinstance(classifier, nn.Linear):
        return f"its classifier is a {type(classifier).__name__}, not one linear layer"
    device = next(model.parameters()).device
    with torch.no_grad():
        features = _timm(model).forward_features(
            torch.zeros(1, 3, input_size, input_size, device=device)
        )
    if features.ndim != 4:
        return (
            f"forward_features gives tokens {list(features.shape)}, not a spatial map "
            f"[B, C, h, w] ({name} pools a class token or attention, not a global average)"
        )
    names = {id(m): n for n, m in model.named_modules()}
    called: list[nn.Module] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: called.append(mod))
        for m in model.modules()
        if not list(m.children()) or _is_pool_parent(m)
    ]
    try:
        with torch.no_grad():
            _timm(model).forward_head(features)
    finally:
        for hook in hooks:
            hook.remove()
    pooled = linear = False
    for module in called:
        kind, where = type(module).__name__, names.get(id(module), "?")
        if module is classifier:
            if not pooled:
                return f"its classifier {where} runs before any global average pooling"
            linear = True
        elif "Attention" in kind or "AttnPool" in kind:
            return f"{where} ({kind}) pools by attention, not by a global average"
        elif kind in ("SelectAdaptivePool2d", "AdaptiveAvgPool2d") or _is_avg_pool(module):
            if not _is_avg_pool(module):
                kind = f"{kind}(pool_type={getattr(module, 'pool_type', '?')!r})"
                return f"{where} ({kind}) pools by something other than the average"
            pooled = True
        elif kind in ("AdaptiveMaxPool2d", "AdaptiveAvgMaxPool2d", "AdaptiveCatAvgMaxPool2d"):
            continue  # inside a SelectAdaptivePool2d already refused above
        elif kind.startswith(_NEUTRAL) or kind in _NEUTRAL:
            continue
        else:
            if linear:
                return f"{where} ({kind}) runs after the classifier"
            if pooled:
                return f"{where} ({kind}) runs after pooling"
            return f"{where} ({kind}) runs in the head instead of a global average pooling"
    if not pooled:
        return "its head has no global average pooling layer"
    if not linear:
        return "its head never calls its classifier"
    if features.shape[1] != classifier.in_features:
        return (
            f"its features have {features.shape[1]} channels but the classifier takes "
            f"{classifier.in_features} (a layer between them)"
        )
    return None


def _meta_model(timm: Any, name: str, num_classes: int = 1000) -> nn.Module:
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, num_classes=num_classes).eval()


def default_input_size(model: nn.Module) -> int:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") or (3, 224, 224)
    return int(size[-1])


def preprocessing_of(model: nn.Module) -> Preprocessing:
    """The weights' own normalisation (timm's pretrained config), as torchvision's weights
    carry theirs. timm's interpolation is part of the name, for the record: images are resized
    the one way cam-cli resizes them."""
    import timm.data

    config = timm.data.resolve_data_config({}, model=model)
    # one value per channel, as `Preprocessing` checks when it reads them back
    mean = cast(ChannelValues, tuple(float(v) for v in config["mean"]))
    std = cast(ChannelValues, tuple(float(v) for v in config["std"]))
    interpolation = config.get("interpolation", "bilinear")
    return Preprocessing(f"timm:{interpolation}", mean, std, "rgb", 255.0)


def hub_weights_of(model: nn.Module) -> str | None:
    """``hf-hub:<repo>`` of the model's default ImageNet weights, when timm knows one."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return f"hf-hub:{cfg['hf_hub_id']}" if cfg.get("hf_hub_id") else None


@functools.lru_cache(maxsize=64)
def timm_spec(name: str, cam_exact: bool = True) -> ArchSpec:
    """The registry entry of ``timm/<model_name>``: checked CAM-exact once, on meta.
    ``cam_exact=False``: any head is built (`AnyHeadNet`), for the map methods that read a
    layer; a CAM-exact head still gives its `CAMNet`."""
    timm = import_timm()
    short = model_name(name)
    if not short or not timm.is_model(short):
        raise KeyError(
            f"unknown timm model {short!r}; list CAM-exact ones with `cam-cli models `timm` "
            "PATTERN`"
        )
    meta = _meta_model(timm, short)
    size = default_input_size(meta)
    problem = head_problem(meta, size)
    if problem is not None and not cam_exact:
        return _any_head_spec(timm, short, meta, size, problem)
    if problem is not None:
        raise NotCAMExact(
            f"{PREFIX}{short} is not CAM-exact: {problem}, which breaks mean(M_c) = S_c - b_c "
            "(a CAM needs global average pooling followed by one linear layer)"
        )
    with torch.no_grad():
        at_224 = _timm(meta).forward_features(torch.zeros(1, 3, 224, 224, device="meta"))
    dropout = float(getattr(meta, "drop_rate", 0.0) or 0.0)

    def build(num_classes: int) -> CAMNet:
        net = timm.create_model(short, pretrained=False, num_classes=num_classes)
        return CAMNet(net, _features, _classifier, dropout=dropout)

    return ArchSpec(
        f"{PREFIX}{short}",
        build,
        int(at_224.shape[-1]),
        f"timm {short}: ends in GAP + linear",
        default_input_size=size,
        preprocessing=preprocessing_of(meta),
        hub_weights=hub_weights_of(meta),
    )


def _any_head_spec(timm: Any, short: str, meta: nn.Module, size: int, problem: str) -> ArchSpec:
    def build(num_classes: int) -> CAMNet:
        net = timm.create_model(short, pretrained=False, num_classes=num_classes)
        return AnyHeadNet(net, _features, _classifier)

    return ArchSpec(
        f"{PREFIX}{short}",
        build,
        0,  # no CAM
        f"timm {short}: not CAM-exact ({problem})",
        default_input_size=size,
        preprocessing=preprocessing_of(meta),
        hub_weights=hub_weights_of(meta),
    )


def meta_network(name: str) -> nn.Module:
    """``timm/<model_name>`` built on the meta device (no memory), whatever its head."""
    return _meta_model(import_timm(), model_name(name))


MAX_LISTED = 300


def timm_names(pattern: str) -> list[str]:
    """The timm model names matching ``pattern`` (a bare word: the names containing it), at
    most `MAX_LISTED`."""
    timm = import_timm()
    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    names = timm.list_models(pattern)
    if len(names) > MAX_LISTED:
        raise SetupError(
            f"`timm` {pattern!r} matches {len(names)} timm models; give a narrower pattern "
            f"(at most {MAX_LISTED}), e.g. '*resnet*' or 'efficientnet_b*'"
        )
    return list(names)


def describe_timm(pattern: str) -> list[tuple[str, str, str, str]]:
    """Rows ``(name, CAM size at the default input, input size, params)`` of the CAM-exact timm
    models matching ``pattern`` (timm's wildcard syntax; a bare word, with no ``*``, ``?`` or
    ``[``, means the names containing it: ``resnet`` is ``*resnet*``); built on meta, so no
    memory is used. Models that are not CAM-exact, or cannot be built on meta, are left out."""
    timm = import_timm()
    names = timm_names(pattern)
    rows = []
    for name in names:
        try:
            meta = _meta_model(timm, name)
            size = default_input_size(meta)
            if head_problem(meta, size) is not None:
                continue
            with torch.no_grad():
                zeros = torch.zeros(1, 3, size, size, device="meta")
                features = _timm(meta).forward_features(zeros)
        except Exception:  # noqa: BLE001 - a model timm cannot build on meta: not listed
            continue
        count = sum(p.numel() for p in meta.parameters())
        h, w = features.shape[-2:]
        rows.append((f"{PREFIX}{name}", f"{h}x{w}", f"{size}", f"{count / 1e6:.1f}M"))
    return rows
