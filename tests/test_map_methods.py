"""inference/map_methods.py: the paper's CAM is the default map method and equals
`cam.maps.compute_cams` on the network's own features; another method plugged into a
`Localizer` makes the maps its boxes come from."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cam_cli.cam.maps import compute_cams
from cam_cli.inference.localizer import Localizer
from cam_cli.inference.map_methods import (
    MAP_METHODS,
    ClassActivationMaps,
    ForwardPass,
    map_method,
)
from cam_cli.models.loading import load_model


def _images(folder, count: int = 3) -> list[str]:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(count):
        width, height = 70 + 9 * i, 50 + 4 * i  # not square
        pixels = rng.integers(0, 255, (height, width, 3)).astype(np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def test_cam_is_the_default_and_equals_compute_cams():
    torch.manual_seed(0)
    loaded = load_model(arch="small-gap", num_classes=5)
    localizer = Localizer(loaded, topk=2, fast=False, lanes=1)
    assert isinstance(localizer.maps, ClassActivationMaps)
    assert MAP_METHODS["cam"] is ClassActivationMaps
    x = torch.rand(2, 3, localizer.input_size, localizer.input_size)
    logits, features = localizer.network(x)
    classes = torch.tensor([[0, 3], [4, 1]])
    made = map_method("cam", localizer.model, localizer.input_size, False)
    with torch.inference_mode():  # as the pipeline calls it
        maps = made.maps(ForwardPass(x, logits, features), classes)
        weight, _ = localizer.model.class_weights()
        expected = compute_cams(features, weight.float(), classes)
        # by hand for one map: the class's classifier weights over the feature channels
        by_hand = torch.einsum("c,chw->hw", weight[3].float(), features[0])
    torch.testing.assert_close(maps, expected)
    torch.testing.assert_close(maps[0, 1], by_hand)


class _Corner:
    """A map method whose every map is hot in the top-left quarter alone."""

    def __init__(self) -> None:
        self.calls = 0

    def maps(self, forward: ForwardPass, class_indices: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        b, n = class_indices.shape
        h, w = forward.features.shape[2:]
        out = torch.zeros(b, n, h, w, device=forward.features.device)
        out[:, :, : h // 2, : w // 2] = 1.0
        return out


def test_a_plugged_in_map_method_makes_the_boxes(tmp_path):
    paths = _images(tmp_path)
    torch.manual_seed(0)
    loaded = load_model(arch="small-gap", num_classes=5)
    localizer = Localizer(loaded, topk=2, fast=False, lanes=1)
    corner = _Corner()
    localizer.maps = corner
    results = list(localizer.localize(paths, batch_size=2, workers=0))
    assert corner.calls == 2  # one call per batch: 3 images in batches of 2
    for result in results:
        for prediction in result.predictions:
            x0, y0, x1, y1 = prediction.box
            # the hot quarter, at the input size, scaled to the image's own pixels
            assert x0 == 0
            assert y0 == 0
            assert x1 < result.width * 0.6
            assert y1 < result.height * 0.6
            assert x1 > result.width * 0.4
            assert y1 > result.height * 0.4
