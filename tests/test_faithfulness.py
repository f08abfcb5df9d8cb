"""cam/faithfulness.py: Average Drop, Increase in Confidence and Deletion/Insertion AUC equal
torchcam 0.5's own metrics (`torchcam.metrics`) on the same maps, inputs and network."""

from __future__ import annotations

import contextlib
from functools import partial

import pytest
import torch
from torch import nn

from cam_cli.cam.faithfulness import faithfulness, points

metrics = pytest.importorskip("torchcam.metrics", reason="torchcam (the peer) is not installed")


class _GivenMaps:
    """A torchcam CAM extractor that hands torchcam's metrics our maps (normalised as its
    extractors do), so both sides score the very same maps."""

    def __init__(self, model: nn.Module, maps: torch.Tensor) -> None:
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs) -> list:
        # torchcam's `_CAM._normalize`, step for step
        cams = self.maps.clone()
        cams.sub_(cams.amin(dim=(1, 2), keepdim=True))
        cams.div_(cams.amax(dim=(1, 2), keepdim=True) + 1e-8)
        return [cams]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()


def test_figures_equal_torchcams_on_the_same_maps():
    model = _network()
    torch.manual_seed(1)
    inputs = torch.randn(5, 3, 40, 56)  # not square: the maps are resized to 40 x 56
    maps = torch.rand(5, 5, 7) - 0.3  # feature resolution, some negative
    softmax = partial(torch.softmax, dim=-1)
    with torch.no_grad():
        classes = model(inputs).argmax(dim=1)
        ours = faithfulness(lambda x: softmax(model(x)), inputs, maps, classes)

    classification = metrics.ClassificationMetric(_GivenMaps(model, maps), softmax)
    classification.update(inputs)
    deletion = metrics.DeletionInsertionMetric(_GivenMaps(model, maps), softmax)
    deletion.update(inputs)
    theirs = {**classification.summary(), **deletion.summary()}
    mean = ours.mean(dim=0)
    assert mean[0].item() == pytest.approx(theirs["avg_drop"], abs=1e-6)
    assert mean[1].item() == pytest.approx(theirs["conf_increase"], abs=1e-6)
    assert mean[2].item() == pytest.approx(theirs["deletion_auc"], abs=1e-6)
    assert mean[3].item() == pytest.approx(theirs["insertion_auc"], abs=1e-6)
    assert 0 < mean[1] < 1 or mean[1] in (0, 1)


def test_the_curve_points_are_torchcams():
    # 40 x 56 = 2240 pixels in 20 steps of 112, both ends included
    assert points(2240) == list(range(0, 2240, 112)) + [2240]
    assert len(points(224 * 224)) == 21  # 20 steps of 2509, the last one short
