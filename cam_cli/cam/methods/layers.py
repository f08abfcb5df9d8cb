"""Which layer a map method reads, and how that layer's output becomes a map ``[B, C, h, w]``.

A layer is named as ``network.named_modules()`` names it, where ``network`` is the classifier
itself: the torchvision or timm model, i.e. ``CAMNet.net`` for a registry entry (so
``features.18`` on MobileNetV2, as a pytorch-grad-cam user writes ``model.features[-1]``).

Defaults, so that a user need not know a network's module tree:
- a registry entry (`CAMNet`): the layer whose output *is* the map CAM is built from (found by
  identity in one forward pass), so Grad-CAM and CAM read the same tensor and agree up to a
  positive scale on every GAP + linear network;
- timm ConvNeXt and MobileNetV3: the last stage (``stages.<last>``, ``blocks.<last>``);
  EfficientNet: ``bn2``, the last conv (+BN+act) before pooling;
- ViT/DeiT: the last block's ``norm1``, its class (and distillation) tokens dropped and the patch
  tokens reshaped to their grid (the ``reshape_transform`` pytorch-grad-cam documents for ViT);
- Swin: the last stage, whose channels-last ``[B, h, w, C]`` output is permuted to ``[B, C, h, w]``;
- any other network with a spatial ``forward_features`` (timm CNNs): the layer giving it.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cam_cli.errors import SetupError

Reshape = Callable[[Tensor], Tensor]

# The input size the default-layer probe runs at (one image, no gradient): every registry entry
# and every timm family above accepts it, ViT/DeiT/Swin at their fixed 224 included.
PROBE_SIZE = 224


class LayerError(SetupError):
    """A `layer` that does not exist or cannot give a map; the message is one line."""


@dataclass(frozen=True)
class TokenGrid:
    """ViT/DeiT tokens ``[B, N, C]`` -> patch map ``[B, C, h, w]``: the first ``prefix`` tokens
    (class, distillation) are dropped and the rest laid on the patch grid, as pytorch-grad-cam's
    documented ViT ``reshape_transform`` does (``tensor[:, 1:, :].reshape(B, h, w, C)`` then
    channels first). Linear, so applying it to the gradient gives the gradient of the map."""

    prefix: int
    grid: tuple[int, int] | None = None

    def __call__(self, tokens: Tensor) -> Tensor:
        patches = tokens[:, self.prefix :, :]
        count = patches.shape[1]
        if self.grid is not None and self.grid[0] * self.grid[1] == count:
            h, w = self.grid
        else:
            h = w = int(round(count**0.5))
            if h * w != count:
                raise LayerError(
                    f"`layer`: {count} patch tokens do not lie on a square grid; give a layer "
                    "with a spatial output"
                )
        return patches.reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)


def channels_last_to_first(x: Tensor) -> Tensor:
    """Swin's ``[B, h, w, C]`` stage output as ``[B, C, h, w]``."""
    return x.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class LayerChoice:
    """The layer a method reads: its name, the module, how its output becomes ``[B, C, h, w]``
    (None: it already is) and why it was chosen (printed for the user)."""

    name: str
    module: nn.Module
    reshape: Reshape | None
    why: str


def is_camnet(model: nn.Module) -> bool:
    """A registry network (`cam_cli.models.camnet.CAMNet`), known by its wrapped ``net`` and its
    ``class_weights``: recognised by shape, so that `cam` does not import `models` (which
    imports `data`, which imports `boxes`, which imports `cam`)."""
    return isinstance(getattr(model, "net", None), nn.Module) and callable(
        getattr(model, "class_weights", None)
    )


def network_of(model: nn.Module) -> nn.Module:
    """The classifier whose module names a `layer` uses: ``CAMNet.net``, or the model itself."""
    return model.net if is_camnet(model) else model  # type: ignore[return-value]


def logits_of(output: object) -> Tensor:
    """The logits of a forward pass: a `CAMNet` returns ``(logits, features)``."""
    return output[0] if isinstance(output, tuple) else output  # type: ignore[return-value]


def _is_timm(network: nn.Module) -> bool:
    return type(network).__module__.startswith("timm.")


def _last_index(network: nn.Module, container: str) -> int:
    return len(getattr(network, container)) - 1


def _family_default(network: nn.Module) -> tuple[str, Reshape | None, str] | None:
    """The documented default of a timm family, or None when the family has no entry."""
    if not _is_timm(network):
        return None
    kind = type(network).__name__
    if kind.startswith("VisionTransformer") and hasattr(network, "blocks"):
        prefix = int(getattr(network, "num_prefix_tokens", 1))
        grid = getattr(getattr(network, "patch_embed", None), "grid_size", None)
        grid = tuple(int(v) for v in grid) if grid is not None else None
        name = f"blocks.{_last_index(network, 'blocks')}.norm1"
        why = f"ViT/DeiT default: the last block's norm1, {prefix} prefix token(s) dropped"
        return name, TokenGrid(prefix, grid), why
    if kind == "SwinTransformer":
        name = f"layers.{_last_index(network, 'layers')}"
        return name, channels_last_to_first, "Swin default: the last stage, channels last permuted"
    if kind == "ConvNeXt":
        return f"stages.{_last_index(network, 'stages')}", None, "ConvNeXt default: the last stage"
    if kind == "MobileNetV3":
        name = f"blocks.{_last_index(network, 'blocks')}"
        return name, None, "MobileNetV3 default: the last stage"
    if kind == "EfficientNet":
        return "bn2", None, "EfficientNet default: the last conv (conv_head + bn2) before pooling"
    return None


def _probe_input(network: nn.Module) -> Tensor:
    parameter = next(network.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else None
    return torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, device=device, dtype=dtype)


@contextlib.contextmanager
def probing(model: nn.Module) -> Iterator[None]:
    """A forward pass that changes nothing: eval mode (a train-mode batch norm would update its
    running statistics) and no gradient, each module's mode restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def _layer_giving(network: nn.Module, target: Callable[[], Tensor]) -> str | None:
    """The shortest module name whose output is the very tensor ``target()`` returns (a stage
    and its last block give the same object: the stage is named)."""
    outputs: dict[str, object] = {}

    def keep(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, args: object, output: object) -> None:
            outputs.setdefault(name, output)  # kept alive, so identities cannot be reused

        return hook

    hooks = [module.register_forward_hook(keep(name)) for name, module in network.named_modules()]
    try:
        with probing(network):
            wanted = target()
    finally:
        for handle in hooks:
            handle.remove()
    names = [name for name, output in outputs.items() if name and output is wanted]
    return min(names, key=lambda n: (n.count("."), len(n))) if names else None


def default_layer(model: nn.Module) -> LayerChoice:
    """The layer a method reads when none is given (see the module docstring)."""
    network = network_of(model)
    family = _family_default(network)
    if family is not None:
        name, reshape, why = family
        return LayerChoice(name, network.get_submodule(name), reshape, why)
    found: str | None = None
    why = ""
    if is_camnet(model):
        probe = _probe_input(network)
        found = _layer_giving(network, lambda: model(probe)[1])
        why = "the layer whose output CAM is built from"
    elif callable(getattr(network, "forward_features", None)):
        probe = _probe_input(network)
        found = _layer_giving(network, lambda: network.forward_features(probe))  # type: ignore[operator]
        why = "the layer giving forward_features"
    if found is None:
        raise LayerError(
            f"no default `layer` is known for {type(network).__name__}; give one (a module "
            "name as named_modules() names it)"
        )
    return LayerChoice(found, network.get_submodule(found), _reshape_for(network), why)


def _reshape_for(network: nn.Module) -> Reshape | None:
    """How any layer of this network family becomes ``[B, C, h, w]`` (token or channels-last
    layouts); applied only to outputs that are not already maps (see `resolve_layer`)."""
    family = _family_default(network)
    return None if family is None else family[1]


def nearest_names(network: nn.Module, name: str, count: int = 5) -> list[str]:
    names = [n for n, _ in network.named_modules() if n]
    close = difflib.get_close_matches(name, names, n=count, cutoff=0.5)
    return close or names[-count:]


def resolve_layer(model: nn.Module, layer: str | None = None) -> LayerChoice:
    """The `LayerChoice` of ``layer`` (None: the default), or a one-line `LayerError` naming the
    nearest module names (difflib) when no module is called so."""
    if layer is None:
        return default_layer(model)
    network = network_of(model)
    modules = dict(network.named_modules())
    if layer not in modules or not layer:
        near = ", ".join(nearest_names(network, layer))
        raise LayerError(
            f"`layer`: {type(network).__name__} has no module {layer!r}; nearest: {near}"
        )
    family = _family_default(network)
    reshape = _reshape_for(network)
    why = "given"
    if family is not None and family[0] == layer:
        why = family[2]
    return LayerChoice(layer, modules[layer], reshape, why)


def check_map(choice: LayerChoice, output: object) -> Tensor:
    """The layer's output as ``[B, C, h, w]``, or a one-line `LayerError` saying why it is not
    a map (a tuple, a vector, tokens of a network with no known grid)."""
    if not isinstance(output, Tensor):
        raise LayerError(
            f"`layer` {choice.name} returns a {type(output).__name__}, not a tensor; pick one "
            "of its submodules"
        )
    shaped = apply_reshape(choice, output)
    if shaped.ndim != 4:
        raise LayerError(
            f"`layer` {choice.name} gives {list(output.shape)}, not a spatial map [B, C, h, w]"
        )
    return shaped


def apply_reshape(choice: LayerChoice, output: Tensor) -> Tensor:
    """The family's reshape where the output has its layout (tokens for ViT, channels last for
    Swin); any other output as it is."""
    if isinstance(choice.reshape, TokenGrid):
        return choice.reshape(output) if output.ndim == 3 else output
    if choice.reshape is channels_last_to_first:
        return choice.reshape(output) if output.ndim == 4 else output
    return choice.reshape(output) if choice.reshape is not None else output
