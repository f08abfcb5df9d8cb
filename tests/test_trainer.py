"""`cam-cli train`: tiny real runs on the synthetic ILSVRC-layout data (32 px, 24 images).

Covers a run end to end (train -> self-describing checkpoints -> `bbox` from the checkpoint
alone), config precedence through the CLI, resume after kill -9 (mid-epoch and mid-checkpoint
write) matching an uninterrupted run, 2-process gloo DDP matching one process, the paper
configs' models and optimizer groups, backbone weight files, the offline message and NaN stops.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke

from cam_cli.errors import TrainError
from cam_cli.models.checkpoint_format import CHECKPOINT_FORMAT
from cam_cli.models.loading import load_model
from cam_cli.models.registry import build_model as build_registry_model
from cam_cli.models.registry import get_arch
from cam_cli.synthetic.dataset import generate_dataset
from cam_cli.training.config import TrainConfig, read_config_file, resolve_config
from cam_cli.training.data import EpochSampler, LabeledImages, random_resized_crop_box, scan_data
from cam_cli.training.initial_weights import apply_initial_weights
from cam_cli.training.optim import lr_factor, param_groups
from cam_cli.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
KILL_HOOK = Path(__file__).with_name("kill_during_train.py")  # cam-cli, killed -9 at a point
TINY = ["--image-size", "32", "--batch-size", "8", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """3 classes x 8 train images, 6 flat val images with ILSVRC XML + Kaggle CSV."""
    out = tmp_path_factory.mktemp("synthetic") / "data"
    generate_dataset(out, num_classes=3, train_per_class=8, val_images=6, image_size=32, seed=0)
    return out


def subprocess_cli(*args: str, env: dict | None = None, torchrun: int = 0, kill_at: str = ""):
    launcher = [sys.executable, "-m", "cam_cli"]
    if kill_at:  # "step:N" or "save:N" (see kill_during_train.py)
        launcher = [sys.executable, str(KILL_HOOK), kill_at]
    if torchrun:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={torchrun}", "-m", "cam_cli"]  # fmt: skip
    return subprocess.run(
        [*launcher, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def tiny_config(**changes) -> TrainConfig:
    """As the CLI resolves it: the arch's recipe under these options."""
    base = dict(arch="small-gap", epochs=3, batch_size=8, image_size=32, workers=0,
                device="cpu", lr=0.05, lr_schedule="cosine")  # fmt: skip
    return resolve_config(overrides={**base, **changes}).config


# --- end to end ------------------------------------------------------------------------------


def test_train_then_bbox_from_the_checkpoint_alone(data, tmp_path):
    run = tmp_path / "run"
    config = tmp_path / "my.toml"
    config.write_text('arch = "small-gap"\nepochs = 5\nlr = 0.2\nmomentum = 0.5\n')
    result = invoke("train", "--config", config, "--data", data, "--out", run, "--epochs", 2,
                 "--lr", 0.05, *TINY)  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2
    assert summary["best_metric"] == "val_acc"
    assert "epoch 2/2" in result.stderr

    # precedence, as recorded in the run: CLI > --config > small-gap recipe > built-in
    resolved = read_config_file(run / "config.toml")
    assert resolved["epochs"] == 2
    assert resolved["lr"] == 0.05
    assert resolved["momentum"] == 0.5  # file over the recipe (0.9)
    assert resolved["crop_scale_min"] == 0.35  # small-gap recipe over the built-in 0.08
    assert resolved["bias_lr_mult"] == 1.0  # built-in

    rows = metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "train_acc", "val_acc", "lr", "seconds"} <= set(rows[0])
    assert all(0 <= r["val_acc"] <= 1 for r in rows)

    for name in ("last.pt", "best.pt"):
        saved = torch.load(run / name, map_location="cpu", weights_only=True)
        assert saved["format"] == CHECKPOINT_FORMAT
        assert saved["version"] == 1
        assert saved["arch"] == "small-gap"
        assert saved["input_size"] == 32
        assert [c["wnid"] for c in saved["classes"]] == ["n90000000", "n90000001", "n90000002"]
        assert saved["classes"][0]["name"] == "red striped disc"  # from LOC_synset_mapping.txt
        assert all(key.startswith("net.") for key in saved["model"])
        assert saved["config"]["lr"] == 0.05
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert {"optimizer", "scheduler", "scaler", "rng", "epoch", "best_metric"} <= set(last)
    assert last["epoch"] == 2
    assert last["step"] == 0

    loaded = load_model(checkpoint=run / "best.pt")
    assert loaded.arch == "small-gap"
    assert len(loaded.classes) == 3
    assert loaded.input_size == 32

    boxes = invoke("bbox", "--checkpoint", run / "best.pt", "--images", data / "val",
                "--workers", 0, "--topk", 2)  # fmt: skip
    assert boxes.exit_code == 0, boxes.output
    records = [json.loads(line) for line in boxes.stdout.splitlines()]
    assert len(records) == 6
    prediction = records[0]["predictions"][0]
    assert prediction["wnid"].startswith("n9000")
    assert len(prediction["box"]) == 4

    evaluated = invoke("eval", "--checkpoint", run / "best.pt", "--images", data / "val", "--json",
                    "-", "--annotations", data / "annotations", "--workers", 0)  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["images"] == 6
    assert 0 <= report["top1_loc_error"] <= 100

    # more epochs on resume are fine; a different image size is refused, naming the difference
    more = invoke("train", "--data", data, "--out", run, "--resume", "--epochs", 3)
    assert more.exit_code == 0, more.output
    assert [r["epoch"] for r in metrics(run)] == [1, 2, 3]
    changed = invoke("train", "--data", data, "--out", run, "--resume", "--image-size", 40)
    assert changed.exit_code == 2
    assert "image_size: 32 -> 40" in changed.stderr
    again = invoke("train", "--arch", "small-gap", "--data", data, "--out", run, *TINY)
    assert again.exit_code == 2
    assert "--resume" in again.stderr


def test_bad_image_is_named_once_and_skipped(data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    (copy / "train" / "n90000001" / "broken.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    result = invoke("train", "--arch", "small-gap", "--data", copy, "--out", tmp_path / "run",
                 "--epochs", 2, "--batch-size", 5, *TINY[:2], *TINY[4:])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr.count("broken.JPEG") == 1
    assert json.loads(result.stdout.splitlines()[-1])["skipped_images"] == 1


def test_nan_loss_stops_with_a_clear_message(data, tmp_path):
    result = invoke("train", "--arch", "small-gap-nobn", "--data", data, "--out", tmp_path / "run",
                 "--lr", 1e6, "--epochs", 3, *TINY)  # fmt: skip
    assert result.exit_code == 1
    message = result.stderr.strip().splitlines()[-1]
    assert "loss is nan" in message or "loss is inf" in message
    assert "Lower --lr" in message
    assert "Traceback" not in result.output


# --- crash and resume ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> list[dict]:
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    train(tiny_config(), data, run)
    return metrics(run)


@pytest.mark.slow
def test_resume_after_kill_mid_epoch_matches_an_uninterrupted_run(data, tmp_path, uninterrupted):
    run = tmp_path / "run"
    args = ["train", "--arch", "small-gap", "--data", data, "--out", run, "--epochs", 3,
            "--lr", 0.05, "--lr-schedule", "cosine", "--checkpoint-every", 2, *TINY]  # fmt: skip
    # 3 steps per epoch: step 5 is epoch 2's second step, right after its mid-epoch checkpoint
    killed = subprocess_cli(*args, kill_at="step:5")
    assert killed.returncode == -9, killed.stderr
    saved = torch.load(run / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["step"]) == (1, 2)

    resumed = invoke("train", "--data", data, "--out", run, "--resume")  # the saved config
    assert resumed.exit_code == 0, resumed.output
    assert "in epoch 2 after step 2" in resumed.stderr
    rows = metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for got, want in zip(rows, uninterrupted, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)
        assert got["val_acc"] == want["val_acc"]
    assert load_model(checkpoint=run / "best.pt").arch == "small-gap"


@pytest.mark.slow
def test_resume_after_kill_during_a_checkpoint_write(data, tmp_path, uninterrupted):
    run = tmp_path / "run"
    args = ["train", "--arch", "small-gap", "--data", data, "--out", run, "--epochs", 3,
            "--lr", 0.05, "--lr-schedule", "cosine", *TINY]  # fmt: skip
    # writes per epoch end: best.pt (if better), last.pt. Die inside the third write or so.
    killed = subprocess_cli(*args, kill_at="save:3")
    assert killed.returncode == -9, killed.stderr
    assert list(run.glob(".*.cam-cli-tmp-*")), "the hook leaves a half-written temp file"
    torch.load(run / "last.pt", weights_only=True)  # the previous last.pt is intact

    resumed = invoke("train", "--data", data, "--out", run, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert not list(run.glob(".*.cam-cli-tmp-*"))
    rows = metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["train_loss"] for r in rows] == pytest.approx(
        [r["train_loss"] for r in uninterrupted], rel=1e-6
    )
    assert load_model(checkpoint=run / "best.pt").classes[2].wnid == "n90000002"


# --- distributed -----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(data, tmp_path):
    args = ["train", "--arch", "small-gap-nobn", "--data", data, "--epochs", 2, "--lr", 0.2,
            "--lr-schedule", "constant", *TINY]  # fmt: skip
    ddp = subprocess_cli(*args, "--out", tmp_path / "ddp", torchrun=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count('"run_dir"') == 1  # only rank 0 reports
    assert "2 x cpu" in ddp.stderr
    train(tiny_config(arch="small-gap-nobn", epochs=2, lr=0.2, lr_schedule="constant"),
          data, tmp_path / "single")  # fmt: skip

    for got, want in zip(metrics(tmp_path / "ddp"), metrics(tmp_path / "single"), strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
        assert got["train_acc"] == want["train_acc"]
        assert got["val_acc"] == want["val_acc"]
    ddp_weights = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["model"]
    one_weights = torch.load(tmp_path / "single" / "last.pt", weights_only=True)["model"]
    torch.manual_seed(0)
    start = build_registry_model("small-gap-nobn", 3).state_dict()
    for key, value in one_weights.items():
        moved = (value - start[key]).abs().max()
        assert moved > 0  # the run trained
        assert (ddp_weights[key] - value).abs().max() <= 1e-4 * moved + 1e-7, key


def test_sampler_ranks_split_exactly_the_single_process_global_batches():
    n, batch, world = 23, 3, 2
    single = list(EpochSampler(n, batch * world, 0, 1, seed=7))
    ranks = [list(EpochSampler(n, batch, r, world, seed=7)) for r in range(world)]
    steps = n // (batch * world)
    assert len(single) == steps * batch * world
    for step in range(steps):
        want = sorted(single[step * batch * world : (step + 1) * batch * world])
        got = sorted(x for r in ranks for x in r[step * batch : (step + 1) * batch])
        assert got == want
    resumed = EpochSampler(n, batch, 1, world, seed=7)
    resumed.set_epoch(0, start_step=2)
    assert list(resumed) == ranks[1][2 * batch :]
    other = EpochSampler(n, batch, 0, world, seed=7)
    other.set_epoch(1)
    assert list(other) != ranks[0]  # a new permutation every epoch


def test_augmentation_is_a_function_of_seed_epoch_and_index(data):
    items = scan_data(data).train
    dataset = LabeledImages(items, 24, augment=True, seed=3, scale_min=0.2)
    item = dataset[(0, 5)]
    a = item.pixels
    assert item.error is None
    assert a.shape == (3, 24, 24)
    assert a.dtype == np.uint8
    assert item.label == items[5][1]
    assert item.path == items[5][0]
    assert np.array_equal(a, dataset[(0, 5)].pixels)
    assert not np.array_equal(a, dataset[(1, 5)].pixels)
    for seed in range(50):
        left, top, w, h = random_resized_crop_box(40, 30, np.random.default_rng(seed))
        assert 0 < w <= 40
        assert 0 < h <= 30
        assert 0 <= left <= 40 - w
        assert 0 <= top <= 30 - h


def test_lr_schedules():
    step = tiny_config(lr_schedule="step", lr_step_size=2.0, lr_gamma=0.1)
    assert [lr_factor(step, i, 10) for i in (0, 19, 20, 40)] == pytest.approx([1, 1, 0.1, 0.01])
    multi = tiny_config(lr_schedule="multistep", lr_milestones=[1.5, 2.0])
    assert [lr_factor(multi, i, 10) for i in (14, 15, 20)] == pytest.approx([1, 0.1, 0.01])
    cosine = tiny_config(lr_schedule="cosine", epochs=2, warmup_epochs=0.5)
    assert lr_factor(cosine, 0, 10) == pytest.approx(0.2)  # warm-up: (0 + 1) / 5
    assert lr_factor(cosine, 5, 10) == pytest.approx(1.0)
    assert lr_factor(cosine, 20, 10) == pytest.approx(0.0)


# --- the paper's networks --------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["alexnet-gap", "alexnet-star-gap", "vgg16-gap", "googlenet-gap"])
def test_paper_config_builds_model_and_param_groups(arch):
    config = resolve_config(
        config_file=CONFIGS / f"{arch}.toml", overrides={"pretrained": False}
    ).config
    with torch.device("meta"):  # no memory, no init time: the structure is what is checked
        model = build_registry_model(arch, 1000)
    groups = param_groups(model, config)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone/weights", "backbone/biases", "new/weights", "new/biases"}
    new = {id(p) for m in model.net.new_layers() for p in m.parameters()}
    assert {
        id(p) for p in by_name["new/weights"]["params"] + by_name["new/biases"]["params"]
    } == new
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each exactly once
    mult = config.new_layers_lr_mult
    assert by_name["backbone/weights"]["lr"] == pytest.approx(0.001)
    assert by_name["backbone/biases"]["lr"] == pytest.approx(0.002)  # Caffe blobs_lr 2
    assert by_name["new/weights"]["lr"] == pytest.approx(0.001 * mult)
    assert by_name["backbone/weights"]["weight_decay"] == pytest.approx(5e-4)
    assert by_name["new/biases"]["weight_decay"] == 0.0
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    assert len(optimizer.param_groups) == 4


def test_backbone_weights_go_into_the_trunk_and_are_checked():
    from torchvision.models import alexnet

    torch.manual_seed(1)
    full = alexnet().state_dict()  # a torchvision file: includes the removed classifier
    model = build_registry_model("alexnet-gap", 5)
    spec = get_arch("alexnet-gap")
    message = apply_initial_weights(model, spec, full, "alexnet.pth")
    assert "6 of removed layers ignored" in message
    assert torch.equal(model.net.trunk.features[0].weight, full["features.0.weight"])

    missing = {k: v for k, v in full.items() if k != "features.10.weight"}
    with pytest.raises(TrainError, match="features.10.weight"):
        apply_initial_weights(model, spec, missing, "cut.pth")
    foreign = {**full, "features.1.weight": torch.zeros(1)}  # features.1 is a ReLU
    with pytest.raises(TrainError, match="unexpected"):
        apply_initial_weights(model, spec, foreign, "odd.pth")
    with pytest.raises(TrainError, match="missing"):
        apply_initial_weights(model, spec, {"conv1.weight": torch.zeros(1)}, "resnet.pth")


def test_training_starts_from_a_local_backbone_file(data, tmp_path):
    from torchvision.models import alexnet

    state = alexnet().state_dict()
    # the trunk's tensors plus one of a removed layer, kept small
    small = {k: v for k, v in state.items() if k.startswith("features.")}
    small["classifier.6.bias"] = state["classifier.6.bias"]
    weights = tmp_path / "alexnet-backbone.pth"
    torch.save(small, weights)
    result = invoke("train", "--arch", "alexnet-gap", "--pretrained", "--backbone-weights", weights,
                 "--data", data, "--out", tmp_path / "run", "--epochs", 1, "--image-size", 64,
                 "--batch-size", 8, "--workers", 0, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "backbone: 10 tensors (1 of removed layers ignored)" in result.stderr


def test_backbone_weights_with_an_int_key_is_one_line(data, tmp_path):
    """Issue 19 (9): an AttributeError traceback before."""
    weights = tmp_path / "int.pth"
    torch.save({"features.0.weight": torch.zeros(1), 7: torch.zeros(1)}, weights)
    result = invoke("train", "--arch", "alexnet-gap", "--pretrained", "--backbone-weights", weights,
                 "--data", data, "--out", tmp_path / "run", *TINY)  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [f"cam-cli: error: {weights}: not a state_dict (the key 7 is not a string; "
                     "tensor names are)"]  # fmt: skip


@pytest.mark.parametrize("damage", ["groups", "buffer"])
def test_resume_from_a_last_pt_with_a_damaged_optimizer(data, tmp_path, damage):
    """Issue 19 (9): torch's ValueError traceback from ``optimizer.load_state_dict`` before;
    a momentum buffer of the wrong shape loaded fine and failed the first step, a traceback."""
    run = tmp_path / "run"
    args = ["train", "--arch", "small-gap", "--data", data, "--out", run, *TINY]
    assert invoke(*args, "--epochs", 1).exit_code == 0
    saved = torch.load(run / "last.pt", weights_only=True)
    if damage == "groups":
        saved["optimizer"] = {"state": {}, "param_groups": [{"params": [0]}]}
    else:
        state = saved["optimizer"]["state"]
        state[next(iter(state))]["momentum_buffer"] = torch.zeros(3)
    torch.save(saved, run / "last.pt")
    result = invoke(*args, "--epochs", 2, "--resume")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"cam-cli: error: {run / 'last.pt'}: a damaged checkpoint, cannot resume from it ("
    ), result.stderr


def test_a_full_disk_during_train_names_the_file(data, tmp_path, monkeypatch):
    """Issue 19 (9): a checkpoint write on a full disk was torch's RuntimeError
    ``inline_container.cc:672 unexpected pos``, with neither "disk full" nor the path."""
    import errno
    import io

    from cam_cli.files import atomic

    class FullDisk(io.RawIOBase):
        def __init__(self, real) -> None:
            self.real = real

        def writable(self):
            return True

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def fileno(self):
            return self.real.fileno()

        def close(self):
            self.real.close()
            super().close()

    fdopen = os.fdopen

    def fdopen_on_a_full_disk(fd, *args, **kwargs):
        real = fdopen(fd, *args, **kwargs)
        return FullDisk(real) if ".pt.cam-cli-tmp-" in os.readlink(f"/proc/self/fd/{fd}") else real

    monkeypatch.setattr(atomic.os, "fdopen", fdopen_on_a_full_disk)
    run = tmp_path / "run"
    result = invoke("train", "--arch", "small-gap", "--data", data, "--out", run, "--epochs", 1,
                 *TINY)  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1] in (f"cam-cli: error: {run / name}: No space left on device"
                         for name in ("best.pt", "last.pt")), result.stderr  # fmt: skip
    assert not list(run.glob(".*tmp*"))  # no temp file left on the full disk


def test_offline_pretrained_says_to_pass_backbone_weights(data, tmp_path):
    result = invoke("train", "--arch", "vgg16-gap", "--pretrained", "--data", data,
                 "--out", tmp_path / "run", *TINY)  # fmt: skip
    if result.exit_code == 0:  # pragma: no cover - only with network access or a warm cache
        pytest.skip("torchvision's VGG16 weights were available")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--backbone-weights FILE" in lines[0], result.stderr
    assert lines[0].startswith("cam-cli: error:")


def test_a_symlink_back_into_the_data_adds_no_other_class_images(tmp_path):
    from PIL import Image

    def image(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (9, 9, 9)).save(path)

    data, outside = tmp_path / "data", tmp_path / "elsewhere"
    for name in ("a/1.png", "a/2.png", "b/1.png"):
        image(data / "train" / name)
    image(outside / "x.png")
    (data / "train" / "b" / "loop").symlink_to("..")  # train/b/loop -> train/
    (data / "train" / "b" / "up").symlink_to("../../..")  # above the data root
    (data / "train" / "a" / "more").symlink_to(outside)  # outside the data: a real subfolder
    for name in ("a/1.png", "b/1.png"):
        image(data / "val" / name)
    (data / "val" / "a" / "other").symlink_to("../b")
    found = scan_data(data)
    assert [c.wnid for c in found.classes] == ["a", "b"]
    assert [(Path(p).relative_to(tmp_path).as_posix(), i) for p, i in found.train] == [
        ("data/train/a/1.png", 0), ("data/train/a/2.png", 0), ("data/train/a/more/x.png", 0),
        ("data/train/b/1.png", 1),
    ]  # fmt: skip
    assert [(Path(p).name, i) for p, i in found.val] == [("1.png", 0), ("1.png", 1)]
    links = sorted(Path(note.split(" links back")[0]).name for note in found.notes)
    assert links == ["loop", "other", "up"]
    assert all(n.endswith("; not followed") for n in found.notes)


def test_a_malformed_boxes_file_for_the_threshold_stops_before_training(tmp_path):
    """Issue 25 (15): a bad ``<wnid>_boxes.txt`` was found after the whole run, and best.pt was
    left without its CAM threshold."""
    from test_tiny_imagenet import WNIDS, _jpeg

    root = tmp_path / "tiny"
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for wnid in WNIDS:
        for i in range(2):
            _jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
        rows = "".join(f"{wnid}_{i}.JPEG\t1\t1\t9\t9\n" for i in range(2))
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text(rows)
    (root / "train" / WNIDS[1] / f"{WNIDS[1]}_boxes.txt").write_text(f"{WNIDS[1]}_0.JPEG\t1\t1\n")
    config = tiny_config(threshold_images_per_class=1, image_size=32)
    with pytest.raises(TrainError, match=r"images_per_class`: .*_boxes.txt:1: expected 5"):
        train(config, root, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()
    assert not (tmp_path / "run" / "best.pt").exists()
