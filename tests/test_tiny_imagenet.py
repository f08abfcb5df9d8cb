"""Tiny ImageNet as downloaded: the ground-truth readers, the training layout, GMP networks,
the CAM threshold a checkpoint carries, the baselines' GT-known error, and one short real run
on three classes of ../shared/data/tiny-imagenet-dev."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cam_cli.cli.main import app
from cam_cli.data.annotations import ImageAnnotation, read_annotations
from cam_cli.data.tiny_imagenet import read_train_boxes, read_val_annotations
from cam_cli.errors import TrainError
from cam_cli.evaluation.localization import LocalizationEvaluator
from cam_cli.inference.localizer import Localizer
from cam_cli.models.loading import LoadedModel
from cam_cli.models.preprocess import IMAGENET
from cam_cli.models.registry import build_model
from cam_cli.training.config import TrainConfig
from cam_cli.training.data import LabeledImages, limit_per_class, scan_data
from cam_cli.training.threshold import CANDIDATES
from cam_cli.training.trainer import train

TINY_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet-dev"

WNIDS = ["n02000002", "n01000001"]  # deliberately unsorted, as wnids.txt may be


def _jpeg(path: Path, mode: str = "RGB", size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = 128 if mode == "L" else (200, 30, 30)
    Image.new(mode, (size, size), colour).save(path, "JPEG")


@pytest.fixture
def root(tmp_path) -> Path:
    """Two classes x 3 train images (one greyscale), 3 val images, a CRLF val_annotations.txt
    with no row for val_2.JPEG."""
    root = tmp_path / "tiny-imagenet-200"
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "words.txt").write_text(
        "n00000000\tentity\nn01000001\tgoldfish, Carassius auratus\nn02000002\tbullfrog\n"
    )
    for wnid in WNIDS:
        rows = []
        for i in range(3):
            _jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", "L" if i == 0 else "RGB")
            rows.append(f"{wnid}_{i}.JPEG\t{i}\t1\t{10 + i}\t12")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(rows) + "\n")
    for i in range(3):
        _jpeg(root / "val" / "images" / f"val_{i}.JPEG")
    (root / "val" / "val_annotations.txt").write_bytes(
        b"val_0.JPEG\tn02000002\t0\t32\t44\t62\r\nval_1.JPEG\tn01000001\t3\t4\t5\t6\r\n"
    )
    return root


# --- readers ------------------------------------------------------------------------------------


def test_val_annotations_crlf_inclusive_boxes(root):
    truth = read_val_annotations(root / "val" / "val_annotations.txt")
    assert truth == {
        "val_0": ImageAnnotation("val_0", ("n02000002",), (("n02000002", (0, 32, 44, 62)),)),
        "val_1": ImageAnnotation("val_1", ("n01000001",), (("n01000001", (3, 4, 5, 6)),)),
    }
    assert read_annotations(root / "val" / "val_annotations.txt") == truth  # dispatched by sniff


def test_train_boxes_from_the_train_folder(root):
    truth = read_annotations(root / "train")
    assert len(truth) == 6
    assert truth["n01000001_2"] == ImageAnnotation(
        "n01000001_2", ("n01000001",), (("n01000001", (2, 1, 12, 12)),)
    )
    assert read_train_boxes(root / "train") == truth


def test_wnid_not_in_wnids_txt_is_named(root):
    path = root / "val" / "val_annotations.txt"
    path.write_text("val_0.JPEG\tn09999999\t0\t0\t5\t5\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt:1: wnid n09999999 is not in"):
        read_val_annotations(path)


def test_malformed_rows_are_named(root):
    path = root / "val" / "val_annotations.txt"
    path.write_text("val_0.JPEG\tn02000002\t0\t0\t5\n")
    with pytest.raises(ValueError, match=r":1: expected 6 tab-separated fields"):
        read_val_annotations(path)
    path.write_text("val_0.JPEG\tn02000002\t9\t0\t5\t5\n")
    with pytest.raises(ValueError, match=r":1: invalid box"):
        read_val_annotations(path)


def test_eval_reports_an_image_without_a_row(root):
    """val_2.JPEG has no row: the usual unmatched-image error, exit 2, naming it."""
    records = root / "records.jsonl"
    records.write_text(
        json.dumps({"path": str(root / "val/images/val_0.JPEG"), "width": 64, "height": 64,
                    "predictions": [{"rank": 1, "class_index": 1, "wnid": "n02000002",
                                     "name": "bullfrog", "score": 0.9,
                                     "box": [0, 30, 40, 63]}]}) + "\n"
        + json.dumps({"path": str(root / "val/images/val_2.JPEG"), "error": "x"}) + "\n"
    )  # fmt: skip
    result = CliRunner().invoke(app, ["eval", "--predictions", str(records), "--annotations",
                                      str(root / "val" / "val_annotations.txt")])  # fmt: skip
    assert result.exit_code == 2
    assert "val_2" in result.output


# --- training layout ----------------------------------------------------------------------------


def test_scan_data_takes_the_download_as_it_is(root):
    data = scan_data(root)
    assert [(c.index, c.wnid, c.name) for c in data.classes] == [
        (0, "n01000001", "goldfish"),
        (1, "n02000002", "bullfrog"),
    ]
    assert len(data.train) == 6
    assert all("/images/" in path for path, _ in data.train)
    assert sorted(data.val) == [
        (str(root / "val/images/val_0.JPEG"), 1),
        (str(root / "val/images/val_1.JPEG"), 0),
    ]
    assert any("1 val images have no annotation" in note for note in data.notes)
    assert limit_per_class(data.train, 2) == [data.train[i] for i in (0, 1, 3, 4)]
    grey = LabeledImages(data.train, 8, augment=True, seed=0, scale_min=0.35)[(0, 0)]
    assert "_0.JPEG" in grey.path
    assert grey.error is None
    assert grey.pixels.shape == (3, 8, 8)


def test_a_class_folder_not_in_wnids_txt(root):
    _jpeg(root / "train" / "n03000003" / "images" / "n03000003_0.JPEG")
    with pytest.raises(TrainError, match="class folders not in .*wnids.txt: n03000003"):
        scan_data(root)


# --- GMP, the checkpoint's threshold, the baselines' GT-known error ----------------------------


def test_gmp_pools_by_max():
    torch.manual_seed(0)
    gap, gmp = build_model("small-gap", 3), build_model("small-gmp", 3)
    gmp.load_state_dict(gap.state_dict())
    x = torch.rand(2, 3, 32, 32)
    logits, features = gmp(x)
    fc = gmp.net.fc
    torch.testing.assert_close(logits, fc(features.amax(dim=(2, 3))))
    torch.testing.assert_close(gap(x)[1], features)  # same maps, hence the same CAMs
    assert not torch.allclose(gap(x)[0], logits)
    mobile = build_model("mobilenet_v2-gmp", 5)
    assert mobile.pooling == "max"
    assert mobile(torch.rand(1, 3, 64, 64))[1].shape[-2:] == (4, 4)


def test_the_checkpoint_threshold_is_the_default_and_an_explicit_one_wins():
    model = build_model("small-gap", 2).eval()
    plain = LoadedModel("small-gap", model, [], IMAGENET, 32)
    tuned = LoadedModel("small-gap", model, [], IMAGENET, 32, cam_threshold=0.45)
    assert Localizer(plain).threshold == 0.2
    assert Localizer(tuned).threshold == 0.45
    assert Localizer(tuned, threshold=0.2).threshold == 0.2


def test_gt_known_error_of_the_baselines():
    """Two 100x100 images. Image a: gt (0,0,99,99): the whole image is right (IoU 1). Image b:
    gt (0,0,49,49): whole image IoU 0.25, wrong. Median relative size: 0.75 x 0.75 -> centred box
    (12,12,86,86) (75x75): a: IoU 0.5625 right; b: 38x38 overlap / (2500+5625-1444) = 0.216."""
    evaluator = LocalizationEvaluator()
    for name, box in (("a", (0, 0, 99, 99)), ("b", (0, 0, 49, 49))):
        annotation = ImageAnnotation(name, ("n1",), (("n1", box),))
        record = {"path": f"{name}.jpg", "width": 100, "height": 100,
                  "predictions": [{"rank": 1, "wnid": "n1", "box": list(box)}]}  # fmt: skip
        evaluator.add(record, annotation, gt_known_box=box)
    baselines = evaluator.summary()["baselines"]
    assert baselines["whole_image"]["gt_known_correct"] == 1
    assert baselines["whole_image"]["gt_known_loc_error"] == 50.0
    assert baselines["centered_median_box"]["relative_size"] == [0.75, 0.75]
    assert baselines["centered_median_box"]["gt_known_correct"] == 1
    assert evaluator.summary()["gt_known_loc_error"] == 0.0


def test_no_gt_known_baselines_without_gt_known_boxes():
    evaluator = LocalizationEvaluator()
    annotation = ImageAnnotation("a", ("n1",), (("n1", (0, 0, 9, 9)),))
    evaluator.add(
        {
            "path": "a.jpg",
            "width": 10,
            "height": 10,
            "predictions": [{"rank": 1, "wnid": "n1", "box": [0, 0, 9, 9]}],
        },
        annotation,
    )
    assert "gt_known_loc_error" not in evaluator.summary()["baselines"]["whole_image"]


# --- a real run ----------------------------------------------------------------------------------


@pytest.fixture
def dev_root(tmp_path) -> Path:
    """Three classes of the dev half, linked, with their own val rows."""
    if not TINY_DEV.is_dir():
        pytest.skip(f"{TINY_DEV} not present (the ../shared folder beside the repository)")
    wnids = sorted((TINY_DEV / "wnids.txt").read_text().split())[:3]
    root = tmp_path / "tiny"
    (root / "train").mkdir(parents=True)
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").symlink_to(TINY_DEV / "words.txt")
    for wnid in wnids:
        (root / "train" / wnid).symlink_to(TINY_DEV / "train" / wnid)
    rows = [line for line in (TINY_DEV / "val" / "val_annotations.txt").read_text().splitlines()
            if line.split("\t")[1] in wnids][:12]  # fmt: skip
    for row in rows:
        name = row.split("\t")[0]
        (root / "val" / "images" / name).symlink_to(TINY_DEV / "val" / "images" / name)
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    (root / "some-train").mkdir()
    for path in sorted((TINY_DEV / "train" / wnids[0] / "images").iterdir())[:4]:
        (root / "some-train" / path.name).symlink_to(path)
    return root


@pytest.mark.shared
def test_real_run_trains_chooses_a_threshold_and_evaluates(dev_root, tmp_path):
    config = TrainConfig(arch="small-gap", epochs=1, batch_size=16, image_size=32, workers=0,
                         device="cpu", lr=0.05, lr_schedule="cosine", pretrained=False,
                         train_images_per_class=16, threshold_images_per_class=2)  # fmt: skip
    run = tmp_path / "run"
    result = train(config, dev_root, run, progress=False)
    assert result.best_metric_name == "val_acc"
    assert result.epochs == 1
    saved = torch.load(run / "best.pt", weights_only=True)
    names = ["European fire salamander", "bullfrog", "tailed frog"]  # sorted wnids, words.txt
    assert [c["name"] for c in saved["classes"]] == names
    assert saved["cam_threshold"] in CANDIDATES
    assert saved["cam_threshold_choice"]["images"] == 6
    accuracy = saved["cam_threshold_choice"]["accuracy"]
    assert max(accuracy.values()) == accuracy[f"{saved['cam_threshold']:.2f}"]

    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, [
        "eval", "--checkpoint", str(run / "best.pt"), "--images", str(dev_root / "val/images"),
        "--annotations", str(dev_root / "val/val_annotations.txt"), "--device", "cpu",
        "--workers", "0", "--no-fast", "--json", str(report), "-q",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(report.read_text())
    assert figures["images"] == 12
    assert figures["settings"]["threshold"] == saved["cam_threshold"]
    assert figures["baselines"]["centered_median_box"]["gt_known_loc_error"] is not None
    assert "baseline: centred median-size box" in result.output

    train_eval = CliRunner().invoke(app, [
        "eval", "--checkpoint", str(run / "best.pt"), "--threshold", "0.2", "--allow-missing",
        "--images", str(dev_root / "some-train"), "--annotations", str(dev_root / "train"),
        "--device", "cpu", "--workers", "0", "--no-fast", "--json", "-", "-q",
    ])  # fmt: skip
    assert train_eval.exit_code == 0, train_eval.output
    assert json.loads(train_eval.stdout)["images"] == 4
    assert np.isclose(json.loads(train_eval.stdout)["settings"]["threshold"], 0.2)


@pytest.mark.parametrize(
    "name",
    [
        "cpu",
        "cpu-gmp",
        "cpu-1epoch",
        "cpu-1epoch-gmp",
        "cpu-cached",
        "cpu-cached-gmp",
        "cpu-64",
        "cpu-64-gmp",
        "cpu-128",
        "scratch",
        "finetune",
    ],
)
def test_the_tiny_imagenet_recipes_resolve(name):
    """Every recipe is valid as it stands; each GMP one differs from its GAP one in pooling only."""
    from cam_cli.training.config import resolve_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    config = resolve_config(config_file=configs / f"tiny-imagenet-{name}.toml").config
    # the CPU recipe chooses on the last 10 images of each class (3 made a noisy choice)
    assert config.threshold_images_per_class == (10 if name in ("cpu", "cpu-gmp") else 3)
    twins = {
        "cpu-gmp": ("cpu", "mobilenet_v2-max"),
        "cpu-1epoch-gmp": ("cpu-1epoch", "mobilenet_v2-max"),
        "cpu-cached-gmp": ("cpu-cached", "mobilenet_v2-max"),
        "cpu-64-gmp": ("cpu-64", "mobilenet_v2-gmp"),
    }
    if name in twins:
        gap_name, gmp_arch = twins[name]
        gap = resolve_config(config_file=configs / f"tiny-imagenet-{gap_name}.toml").config
        assert config.replace(arch=gap.arch) == gap
        assert config.arch == gmp_arch


def test_a_frozen_backbone_without_a_trunk_trains_only_the_classifier():
    """mobilenet_v2 (a network that already ends in GAP + linear): freeze_backbone fixes every
    part but the classifier's, which then alone gets gradients and leaves eval mode."""
    import torch

    from cam_cli.models.registry import build_model
    from cam_cli.training.optim import freeze_backbone

    for arch in ("mobilenet_v2", "mobilenet_v2-max"):
        model = build_model(arch, 5)
        frozen = freeze_backbone(model)
        assert [type(m).__name__ for m in frozen] == ["Sequential"]  # net.features
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == {"net.classifier.1.weight", "net.classifier.1.bias"}
        assert not model.net.features.training
        assert model.net.classifier.training
        logits, features = model(torch.rand(2, 3, 64, 48))
        logits.sum().backward()
        assert model.net.features[0][0].weight.grad is None
        assert model.classifier.weight.grad is not None
        assert features.shape == (2, 1280, 2, 2)

    squeezenet = build_model("squeezenet1_1", 5)  # its class maps are the backbone's output
    with pytest.raises(Exception, match="linear classifier"):
        freeze_backbone(squeezenet)


def test_mobilenet_v2_max_pools_by_the_maximum():
    """The GMP twin: the same layers, logits = W max(F) + b instead of W mean(F) + b."""
    import torch

    from cam_cli.models.registry import build_model

    torch.manual_seed(0)
    gap, gmp = build_model("mobilenet_v2", 3).eval(), build_model("mobilenet_v2-max", 3).eval()
    gmp.load_state_dict(gap.state_dict())
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        gap_logits, features = gap(x)
        gmp_logits, gmp_features = gmp(x)
    w, b = gap.classifier.weight, gap.classifier.bias
    assert torch.equal(features, gmp_features)
    assert torch.allclose(gap_logits, features.mean(dim=(2, 3)) @ w.T + b, atol=1e-5)
    assert torch.allclose(gmp_logits, features.amax(dim=(2, 3)) @ w.T + b, atol=1e-5)


# --- issue 25: each table read bounded and named; a row in another class's file refused -----


def test_words_txt_that_is_not_utf8_names_the_file(root):
    (root / "words.txt").write_bytes("n01000001\tgoldfish\nn02000002\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(TrainError, match=r"words.txt:2: not UTF-8 text \(byte 0xe9"):
        scan_data(root)


def test_a_malformed_first_line_of_val_annotations_is_named_as_such(root):
    """Issue 25 (16): a first row of 5 fields was taken for the devkit's file ("needs the
    devkit's meta.mat")."""
    path = root / "val" / "val_annotations.txt"
    path.write_text("val_0.JPEG\tn02000002\t0\t32\t44\nval_1.JPEG\tn01000001\t3\t4\t5\t6\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt:1: expected 6 tab-separated"):
        read_annotations(path)


def test_a_boxes_row_of_another_classs_image_is_refused(root):
    """Issue 25 (16): the row relabelled that image as this class, silently."""
    boxes = root / "train" / WNIDS[0] / f"{WNIDS[0]}_boxes.txt"
    with boxes.open("a") as handle:
        handle.write(f"{WNIDS[1]}_9.JPEG\t1\t1\t5\t5\n")
    with pytest.raises(ValueError, match=rf"_boxes.txt:4: '{WNIDS[1]}_9.JPEG' is an image of "
                                         rf"class {WNIDS[1]}, not {WNIDS[0]}"):  # fmt: skip
        read_train_boxes(root / "train")
