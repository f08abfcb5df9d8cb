"""The feature cache of a frozen backbone (`training.feature_cache`, `training.cached_inputs`):
what it stores is what the backbone computes, a change of size or data is another cache, a
kill -9 while it is written resumes to the same cache, and one step on it trains the head
exactly as one step on the images does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from test_trainer import subprocess_cli

from cam_cli.models.preprocess import IMAGENET
from cam_cli.models.registry import build_model
from cam_cli.runtime.distributed import Dist
from cam_cli.synthetic.dataset import generate_dataset
from cam_cli.training.cached_inputs import (
    BuildContext,
    CacheRequest,
    backbone_outputs,
    build_cache,
    cache_kind,
)
from cam_cli.training.config import resolve_config
from cam_cli.training.data import LabeledImages, scan_data
from cam_cli.training.feature_cache import CacheLayout, FeatureCache
from cam_cli.training.optim import freeze_backbone
from cam_cli.training.trainer import train

SIZE = 32
WEIGHTS = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "weights" / "mobilenet_v2-imagenet.pth"
)
needs_weights = pytest.mark.skipif(
    not WEIGHTS.is_file(), reason="needs ../shared/weights/mobilenet_v2-imagenet.pth"
)
MOBILENETS = [pytest.param(a, marks=needs_weights) for a in ("mobilenet_v2", "mobilenet_v2-max")]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """3 classes x 8 train images (non-square photos are not needed: sizes are fixed), 6 val."""
    out = tmp_path_factory.mktemp("synthetic") / "data"
    generate_dataset(out, num_classes=3, train_per_class=8, val_images=6, image_size=SIZE, seed=0)
    return out


def frozen(arch: str):
    """A backbone with features to cache: ImageNet's for MobileNetV2 (a random one gives all
    zeros after its last ReLU6 on these images), a seeded random one for small-gap."""
    torch.manual_seed(0)
    model = build_model(arch, 3)
    if arch.startswith("mobilenet"):
        state = torch.load(WEIGHTS, weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("classifier")}
        model.net.load_state_dict(state, strict=False)
    return model, freeze_backbone(model)


def request(items, root: Path, **changes) -> CacheRequest:
    settings = dict(image_size=SIZE, augment=True, seed=0, crop_scale_min=0.35, views=2,
                    dtype="float16", root=root, max_bytes=10**9, workers=0, batch=8,
                    name="training")  # fmt: skip
    return CacheRequest(items, **{**settings, **changes})


def context(model, frozen_modules) -> BuildContext:
    from contextlib import nullcontext

    return BuildContext(model, "test", frozen_modules, IMAGENET, torch.device("cpu"),
                        nullcontext, Dist())  # fmt: skip


@pytest.mark.parametrize("arch", ["small-gap", *MOBILENETS])
def test_the_cache_holds_the_backbone_outputs_of_each_view(data, tmp_path, arch):
    model, modules = frozen(arch)
    items = scan_data(data).train
    notes: list[str] = []
    cache = build_cache(context(model, modules), request(items, tmp_path), notes.append)
    assert "computing 2 of 2 chunks" in notes[0]
    kind = cache_kind(model)
    assert kind == {"small-gap": "trunk", "mobilenet_v2": "pooled-avg",
                    "mobilenet_v2-max": "pooled-max"}[arch]  # fmt: skip
    dataset = LabeledImages(items, SIZE, True, 0, 0.35)
    model.eval()
    for view in (0, 1):
        pixels = torch.stack([torch.from_numpy(dataset[(view, i)].pixels) for i in range(24)])
        expected = backbone_outputs(model, kind, IMAGENET.apply(pixels)).numpy()
        stored = np.asarray(cache.features[view], dtype=np.float32)
        assert stored.shape == expected.shape
        # float16: 11 significant bits, so within 2**-11 of each value (plus subnormals)
        np.testing.assert_allclose(stored, expected, rtol=2**-11, atol=1e-6)
        assert np.asarray(cache.valid[view]).all()
    assert not np.allclose(cache.features[0], cache.features[1])  # two different crops
    again: list[str] = []
    reread = build_cache(context(model, modules), request(items, tmp_path), again.append)
    assert reread.folder == cache.folder
    assert again[0].endswith("(complete, reused)")


def test_a_changed_size_data_or_backbone_is_another_cache(data, tmp_path):
    model, modules = frozen("small-gap")
    items = scan_data(data).train
    log: list[str] = []
    base = build_cache(context(model, modules), request(items, tmp_path), log.append).folder
    larger = build_cache(context(model, modules), request(items, tmp_path, image_size=40),
                         log.append).folder  # fmt: skip
    fewer = build_cache(context(model, modules), request(items[:-1], tmp_path), log.append)
    path = Path(items[0][0])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the image rewritten
    touched = build_cache(context(model, modules), request(items, tmp_path), log.append).folder
    with torch.no_grad():
        modules[0][0].weight.add_(1.0)  # other backbone weights
    other = build_cache(context(model, modules), request(items, tmp_path), log.append).folder
    folders = {base, larger, fewer.folder, touched, other}
    assert len(folders) == 5
    assert all("computing" in line for line in log)  # none reused a stale cache
    assert fewer.features.shape == (2, 23, 128, 8, 8)
    assert larger.name != base.name
    assert larger.parent == base.parent == tmp_path


def test_the_cache_size_is_bounded_by_a_setting(data, tmp_path):
    from cam_cli.errors import TrainError

    model, modules = frozen("small-gap")
    items = scan_data(data).train
    with pytest.raises(TrainError, match="feature_cache_max_gb"):
        build_cache(context(model, modules), request(items, tmp_path, max_bytes=10_000), print)
    assert not any(tmp_path.iterdir())


def test_a_partial_cache_recomputes_only_the_chunks_not_marked_done(tmp_path):
    layout = CacheLayout(count=5, views=2, shape=(3,), dtype="float16", chunk=2)
    cache = FeatureCache(tmp_path, "key", layout)
    todo = cache.prepare()
    assert todo == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    cache.write_chunk(0, 1, np.full((2, 3), 7.0), np.ones(2, bool))
    cache.features[1, 0:2] = 99.0  # written but never marked done: a kill mid-chunk
    cache.features.flush()
    again = FeatureCache(tmp_path, "key", layout)
    assert again.prepare() == [(0, 0), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert not again.complete()
    for view, chunk in [(0, 0), (0, 2), (1, 0), (1, 1), (1, 2)]:
        span = again.chunk_indices(chunk)
        again.write_chunk(view, chunk, np.full((len(span), 3), view), np.ones(len(span), bool))
    again.finish()
    assert again.complete()
    assert FeatureCache(tmp_path, "key", layout).prepare() == []
    np.testing.assert_array_equal(again.features[0, :, 0], [0, 0, 7, 7, 0])
    np.testing.assert_array_equal(again.features[1, :, 0], [1, 1, 1, 1, 1])
    other = FeatureCache(tmp_path, "key", CacheLayout(5, 2, (4,), "float16", chunk=2))
    assert not other.complete()  # another layout under the same name is not taken as done


def frozen_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--arch", "small-gap", "--data", data, "--out", out, "--no-pretrained",
            "--image-size", "32", "--batch-size", "8", "--workers", "0", "--device", "cpu",
            "--epochs", "2", "--config", out.parent / "frozen.toml", *extra]  # fmt: skip


@pytest.mark.slow
def test_kill_during_caching_resumes_to_the_same_cache_and_run(data, tmp_path):
    (tmp_path / "frozen.toml").write_text(
        "freeze_backbone = true\nfeature_cache_views = 3\nseed = 1\n"
    )
    whole = subprocess_cli(*frozen_args(data, tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    killed = subprocess_cli(*frozen_args(data, tmp_path / "run"), kill_at="chunk:2")
    assert killed.returncode == -9, killed.stderr
    assert not (tmp_path / "run" / "last.pt").exists()
    resumed = subprocess_cli(*frozen_args(data, tmp_path / "run", "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert "computing 2 of 3 chunks (1 done before)" in resumed.stderr
    caches = {
        name: {
            p.name: np.load(p / "features.npy")
            for p in (tmp_path / name / "feature-cache").iterdir()
        }
        for name in ("whole", "run")
    }
    assert caches["whole"].keys() == caches["run"].keys()
    for key, array in caches["whole"].items():
        np.testing.assert_array_equal(caches["run"][key], array)
    runs = [
        [json.loads(line) for line in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
        for n in ("whole", "run")
    ]
    for a, b in zip(*runs, strict=True):
        assert a["train_loss"] == b["train_loss"]
        assert a["val_acc"] == b["val_acc"]


@pytest.mark.parametrize("arch", ["small-gap", *MOBILENETS[:1]])
def test_one_step_on_the_cache_trains_the_head_as_one_step_on_the_images(
    data, tmp_path, arch, monkeypatch
):
    # The image path's DataLoader draws its seed from the global generator, so the two paths'
    # dropout masks differ by design; with dropout as identity the step is compared exactly.
    monkeypatch.setattr(torch.nn.Dropout, "forward", lambda self, x: x)
    small = arch == "small-gap"
    weights = dict(pretrained=not small, backbone_weights=None if small else str(WEIGHTS))
    base = dict(arch=arch, epochs=1, batch_size=24, image_size=SIZE, workers=0, device="cpu",
                lr=0.05, freeze_backbone=True, feature_cache_dtype="float32",
                seed=3, **weights)  # fmt: skip
    states, losses = [], []
    for cached in (True, False):
        config = resolve_config(overrides={**base, "feature_cache": cached}).config
        result = train(config, data, tmp_path / f"run-{cached}", progress=False)
        losses.append(result.history[0]["train_loss"])
        states.append(torch.load(result.last_checkpoint, weights_only=True)["model"])
        assert (tmp_path / f"run-{cached}" / "feature-cache").exists() == cached
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for key, value in states[1].items():
        torch.testing.assert_close(states[0][key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_gloo_processes_on_the_cache_match_one_process(data, tmp_path):
    """Under torchrun the ranks share the cache folder (each computes its share of the chunks)
    and train on it to the same losses as one process with the same global batch."""
    (tmp_path / "frozen.toml").write_text("freeze_backbone = true\nfeature_cache_views = 2\n")
    one = subprocess_cli(*frozen_args(data, tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = subprocess_cli(*frozen_args(data, tmp_path / "two"), torchrun=2)
    assert two.returncode == 0, two.stderr
    rows = [
        [json.loads(line) for line in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
        for n in ("one", "two")
    ]
    for a, b in zip(*rows, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_acc"] == b["val_acc"]
