"""docs/own-data.md, small: three Tiny ImageNet classes copied into a user's own folders
(human names as folder names), `train` with no recipe on a CPU, the CAM threshold chosen on a
CSV of boxes, then `bbox` and `eval` against the classes' own boxes, by class name. The figures
are checked against what the outputs themselves say, computed here by hand."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from conftest import MOBILENET_WEIGHTS, SHARED, invoke

TINY = SHARED / "data" / "tiny-imagenet-dev"
CLASSES = {"n01910747": "jellyfish", "n02056570": "king_penguin", "n02099601": "golden_retriever"}
HEADER = "path,class,xmin,ymin,xmax,ymax\n"

pytestmark = pytest.mark.skipif(
    not (TINY.is_dir() and MOBILENET_WEIGHTS.is_file()),
    reason="needs ../shared/data/tiny-imagenet-dev and ../shared/weights",
)


def _own_data(root, train=6, val=3, boxed=2):
    """my_data/train/<name>/, my_data/val/<name>/, boxes/ with boxes.csv, val_boxes.csv."""
    table = (TINY / "val" / "val_annotations.txt").read_text().splitlines()
    val_rows = [line.split("\t") for line in table]
    boxes, val_boxes = [HEADER], [HEADER]
    for wnid, name in CLASSES.items():
        files = sorted((TINY / "train" / wnid / "images").iterdir(),
                       key=lambda p: int(p.stem.split("_")[1]))  # fmt: skip
        lines = (TINY / "train" / wnid / f"{wnid}_boxes.txt").read_text().splitlines()
        table = dict(line.split("\t", 1) for line in lines)
        for folder in ("train", "val"):
            (root / folder / name).mkdir(parents=True)
        (root / "boxes").mkdir(exist_ok=True)
        for i, path in enumerate(files[:train]):
            shutil.copy(path, root / "train" / name / f"{name}_{i:03d}.jpg")
        for i, path in enumerate(files[train : train + boxed]):
            shutil.copy(path, root / "boxes" / f"{name}_{i:03d}.jpg")
            box = table[path.name].split()
            boxes.append(",".join([f"{name}_{i:03d}.jpg", name, *box]) + "\n")
        for i, row in enumerate([r for r in val_rows if r[1] == wnid][:val]):
            shutil.copy(TINY / "val" / "images" / row[0], root / "val" / name / f"{name}_v{i}.jpg")
            val_boxes.append(",".join([f"{name}/{name}_v{i}.jpg", name, *row[2:6]]) + "\n")
    (root / "boxes" / "boxes.csv").write_text("".join(boxes))
    (root / "val_boxes.csv").write_text("".join(val_boxes))
    return root


def _iou(a, b):
    """Inclusive-pixel IoU, by hand."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(w, 0) * max(h, 0)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.slow
def test_own_folders_train_on_a_cpu_pick_a_threshold_and_score_by_class_name(tmp_path):
    data, run = _own_data(tmp_path / "my_data"), tmp_path / "run"
    trained = invoke("train", "--data", data, "--out", run, "--device", "cpu", "--epochs", "1",
                     "--batch-size", "6", "--backbone-weights", MOBILENET_WEIGHTS,
                     "--threshold-boxes", data / "boxes" / "boxes.csv")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "settings: mobilenet_v2 (the CPU recipe: no GPU, no config file); backbone frozen; " \
        "classifier from zero (first loss ln 3 = 1.10); 18 training images of 3 classes (all); " \
        "9 val images (all); 1 epochs of 3 steps of 6;" in trained.stderr  # fmt: skip
    summary = json.loads(trained.stdout)
    checkpoint = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    assert checkpoint["config"]["freeze_backbone"]
    assert checkpoint["config"]["zero_init_head"]
    assert [c["wnid"] for c in checkpoint["classes"]] == sorted(CLASSES.values())
    choice = checkpoint["cam_threshold_choice"]
    assert choice["images"] == 6
    assert choice["failed_images"] == 0
    best = max(choice["accuracy"].values())
    assert choice["accuracy"][f"{checkpoint['cam_threshold']:.2f}"] == best
    # the candidates' accuracies are counts out of 6 images
    assert all(math.isclose(a * 6, round(a * 6), abs_tol=1e-3) for a in choice["accuracy"].values())

    boxed = invoke("bbox", "--checkpoint", run / "best.pt", "--images", data / "val", "--topk", "3")
    assert boxed.exit_code == 0, boxed.output
    records = [json.loads(line) for line in boxed.stdout.splitlines()]
    truth = {}
    for line in (data / "val_boxes.csv").read_text().splitlines()[1:]:
        path, name, *box = line.split(",")
        truth[path.split("/")[1]] = (name, [int(v) for v in box])
    assert len(records) == len(truth) == 9
    top1 = gt_known = top1_loc = 0
    for record in records:
        name, box = truth[record["path"].rsplit("/", 1)[1]]
        first = record["predictions"][0]
        own = next(p for p in record["predictions"] if p["name"] == name)
        top1 += first["name"] == name
        gt_known += _iou(own["box"], box) >= 0.5
        top1_loc += first["name"] == name and _iou(first["box"], box) >= 0.5
    assert summary["best_value"] == pytest.approx(top1 / 9)  # val acc = bbox's top-1

    report = tmp_path / "eval.json"
    scored = invoke("eval", "--checkpoint", run / "best.pt", "--images", data / "val",
                    "--annotations", data / "val_boxes.csv", "--json", report)  # fmt: skip
    assert scored.exit_code == 0, scored.output
    figures = json.loads(report.read_text())
    assert figures["images"] == 9
    assert figures["settings"]["threshold"] == checkpoint["cam_threshold"]
    assert figures["top1_cls_error"] == pytest.approx(100 * (1 - top1 / 9))
    assert figures["gt_known_loc_error"] == pytest.approx(100 * (1 - gt_known / 9))
    assert figures["top1_loc_error"] == pytest.approx(100 * (1 - top1_loc / 9))


def test_a_missing_setup_is_refused_before_the_first_epoch(tmp_path):
    data = _own_data(tmp_path / "my_data", train=2, val=1, boxed=1)
    no_boxes = invoke("train", "--data", data, "--out", tmp_path / "r1", "--device", "cpu",
                      "--backbone-weights", MOBILENET_WEIGHTS,
                      "--threshold-images-per-class", "3")  # fmt: skip
    assert no_boxes.exit_code == 2
    assert "--threshold-images-per-class: " in no_boxes.stderr
    assert "no <wnid>/<wnid>_boxes.txt files" in no_boxes.stderr
    (data / "boxes" / "other.csv").write_text(HEADER + "jellyfish_000.jpg,tabby cat,0,0,9,9\n")
    unknown = invoke("train", "--data", data, "--out", tmp_path / "r2", "--device", "cpu",
                     "--backbone-weights", MOBILENET_WEIGHTS,
                     "--threshold-boxes", data / "boxes" / "other.csv")  # fmt: skip
    assert unknown.exit_code == 2
    assert "--threshold-boxes: " in unknown.stderr
    assert "tabby cat" in unknown.stderr
    for run in ("r1", "r2"):  # nothing trained, nothing written
        assert not (tmp_path / run / "metrics.jsonl").exists()
        assert not (tmp_path / run / "best.pt").exists()
