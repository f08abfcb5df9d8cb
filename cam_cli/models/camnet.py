"""The network every command runs: `CAMNet`, one forward pass giving the logits and the maps a
CAM is built from, and `ArchSpec`, the registry entry that builds one.

A leaf: the registry (`models.registry`) and the timm entries (`models.timm_models`) both build
`CAMNet`s, so neither has to import the other for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from torch import Tensor, nn

from cam_cli.models.preprocess import Preprocessing

FeatureFn = Callable[[nn.Module, Tensor], Tensor]
ClassifierFn = Callable[[nn.Module], "nn.Linear | None"]


class CAMNet(nn.Module):
    """``x -> f = features(x) [B,K,h,w] -> GAP -> dropout -> linear -> logits``.

    ``forward`` returns ``(logits, f)``: the one forward pass that gives both the prediction and
    the map every class's CAM is computed from (``M_c = sum_k w_k^c f_k``, paper eq. 2).
    With no linear classifier (SqueezeNet) ``f`` already holds one map per class and the logits
    are their spatial means.
    """

    def __init__(
        self,
        net: nn.Module,
        features: FeatureFn,
        classifier: ClassifierFn,
        *,
        dropout: float = 0.0,
        pooling: str = "avg",
    ) -> None:
        super().__init__()
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")
        self.net = net
        self._features = features
        self._classifier = classifier
        self.pooling = pooling  # "max": the paper's GMP ablation (section 3, Table 2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def classifier(self) -> nn.Linear | None:
        return self._classifier(self.net)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self._features(self.net, x)
        return self.pooled_logits(self.pool(features)), features

    def pool(self, features: Tensor) -> Tensor:
        """GAP: ``F_k = mean_{x,y} f_k(x, y)``; GMP: ``F_k = max_{x,y} f_k(x, y)``."""
        return features.amax(dim=(2, 3)) if self.pooling == "max" else features.mean(dim=(2, 3))

    def pooled_logits(self, pooled: Tensor) -> Tensor:
        """The logits of pooled features: a frozen backbone's pooled features are cached, and
        the classifier trains on them alone (`training.cached_inputs`)."""
        classifier = self.classifier
        return pooled if classifier is None else classifier(self.dropout(pooled))

    def cam_exact_problem(self) -> str | None:
        """Why this network's CAMs are not the exact decomposition of its scores (one line),
        or None: the head must be the average of the features then one linear layer (or none),
        so that ``mean(M_c) = S_c - b_c``. Global max pooling (the paper's GMP ablation) breaks
        it: its maps still localize, but are not what the scores were computed from."""
        if self.pooling != "avg":
            return f"its head pools by {self.pooling}, not by the average (GAP)"
        classifier = self.classifier
        if classifier is not None and not isinstance(classifier, nn.Linear):
            return f"its classifier is a {type(classifier).__name__}, not one linear layer"
        return None

    def class_weights(self) -> tuple[Tensor | None, Tensor | None]:
        """``(W [C, K], b [C])`` of the classifier; ``(None, None)`` when maps are per class."""
        classifier = self.classifier
        if classifier is None:
            return None, None
        return classifier.weight, classifier.bias

    def load_weights(self, state_dict: dict[str, Tensor]) -> None:
        """Load either our own state_dict (``net.`` keys) or the wrapped model's torchvision one."""
        if not any(key.startswith("net.") for key in state_dict):
            state_dict = {f"net.{key}": value for key, value in state_dict.items()}
        own_keys = set(self.state_dict())
        # torchvision GoogLeNet files carry auxiliary classifiers that inference never uses.
        state_dict = {
            k: v for k, v in state_dict.items() if k in own_keys or not k.startswith("net.aux")
        }
        self.load_state_dict(state_dict, strict=True)


class AnyHeadNet(CAMNet):
    """A network whose head is not CAM-exact (a norm after pooling, a class token, attention
    pooling), for the map methods that read a layer instead of the head (`cam.methods`):
    ``forward`` returns ``(logits, features)`` with the network's own head on its own features
    (``net.forward_head``), so its scores are the network's; there is no CAM of it."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self._features(self.net, x)
        # timm's method; nn.Module's __getattr__ types it as a tensor or a module
        head = cast("Callable[[Tensor], Tensor]", self.net.forward_head)
        return head(features), features

    def class_weights(self) -> tuple[Tensor | None, Tensor | None]:
        raise TypeError("a network whose head is not CAM-exact has no CAM weights")


@dataclass(frozen=True)
class ArchSpec:
    """A registry entry: how to build the network and what is known about it."""

    name: str
    build: Callable[[int], CAMNet]
    cam_size_at_224: int
    description: str
    torchvision_weights: str | None = None  # a `torchvision.models.get_weight` name
    backbone_weights: str | None = None  # for paper nets: the backbone's torchvision weights
    paper: bool = False
    default_input_size: int = 224
    aliases: tuple[str, ...] = field(default_factory=tuple)
    preprocessing: Preprocessing | None = None  # the weights' own; None: ImageNet's
    hub_weights: str | None = None  # for timm entries: ``hf-hub:<repo>`` of `weights` imagenet
