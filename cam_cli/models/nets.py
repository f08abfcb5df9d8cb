"""The networks cam-cli defines itself: the paper's GAP head on a truncated backbone, and a small
GAP network that trains on two CPU cores in a minute. Both expose ``features(x)`` (the maps the
CAM is built from), ``fc`` (the linear classifier) and ``new_layers()`` (the layers the paper
adds, trained at a higher learning rate)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn


class PaperGAPNet(nn.Module):
    """A truncated ImageNet backbone + added conv 3x3/1/1 layers (1024 units, ReLU) + linear.

    ``trunk`` is the whole torchvision model with the layers after the cut removed, so its
    state_dict keys are torchvision's and `backbone_weights` files load into it directly.
    """

    def __init__(
        self,
        trunk: nn.Module,
        trunk_forward: Callable[[nn.Module, Tensor], Tensor],
        trunk_channels: int,
        num_classes: int,
        added_convs: int = 1,
        width: int = 1024,
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self._trunk_forward = trunk_forward
        layers: list[nn.Module] = []
        channels = trunk_channels
        for _ in range(added_convs):
            layers += [nn.Conv2d(channels, width, 3, stride=1, padding=1), nn.ReLU(inplace=True)]
            channels = width
        self.cam_conv = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)
        for module in [*self.cam_conv.modules(), self.fc]:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:  # always here: the CAM layers have biases
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def trunk_features(self, x: Tensor) -> Tensor:
        """The truncated backbone's maps: what a frozen trunk gives, cached once for every
        epoch of the added layers (`training.cached_inputs`)."""
        return self._trunk_forward(self.trunk, x)

    def features(self, x: Tensor) -> Tensor:
        return self.cam_conv(self.trunk_features(x))

    def new_layers(self) -> list[nn.Module]:
        """The layers the paper adds (trained with a higher learning rate)."""
        return [self.cam_conv, self.fc]


class SmallGAPNet(nn.Module):
    """Four 3x3 conv blocks (BN optional), stride 4 overall, then the CAM conv layer.

    Small enough to train on two CPU cores in a minute; same CAM structure as the paper's nets.
    Stride 4 keeps the CAM fine (16x16 at 64 px): on the synthetic benchmark an 8x8 CAM gave
    boxes of about 71% top-1 localization error against about 30% for 16x16.
    """

    def __init__(self, num_classes: int, width: int = 32, batch_norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for i, out in enumerate((width, width * 2, width * 4, width * 4)):
            layers.append(nn.Conv2d(channels, out, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            if i < 2:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.trunk = nn.Sequential(*layers)
        self.cam_conv = nn.Sequential(nn.Conv2d(channels, width * 4, 3, padding=1), nn.ReLU(True))
        self.fc = nn.Linear(width * 4, num_classes)

    def trunk_features(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def features(self, x: Tensor) -> Tensor:
        return self.cam_conv(self.trunk_features(x))

    def new_layers(self) -> list[nn.Module]:
        return [self.cam_conv, self.fc]
