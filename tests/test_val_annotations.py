"""`train --val-annotations`: the val images' classes from a ground-truth file `eval` reads
(CSV, VOC, COCO), matched to the train/ folders by name; images found under DIR/val else
beside the file; an unknown class stops the run before the first epoch; the per-epoch val
accuracy is computed on the file's labels."""

from __future__ import annotations

import json

import pytest
from conftest import invoke
from PIL import Image

from cam_cli.data.classes import ClassInfo
from cam_cli.errors import TrainError
from cam_cli.synthetic.dataset import generate_dataset
from cam_cli.training.config import resolve_config
from cam_cli.training.data import scan_data
from cam_cli.training.trainer import train
from cam_cli.training.val_annotations import annotated_val

CLASSES = [ClassInfo(0, "cat", "cat"), ClassInfo(1, "n01910747", "jellyfish")]
HEADER = "path,class,xmin,ymin,xmax,ymax\n"


def _image(path, size=(48, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 40, 10)).save(path)


def test_csv_labels_images_under_data_val_by_name_and_says_what_is_left_out(tmp_path):
    for name in ("a.jpg", "b.png", "extra.jpg"):
        _image(tmp_path / "data" / "val" / name)
    csv = tmp_path / "labels.csv"
    csv.write_text(HEADER + "x/a.jpg,Jellyfish,1,2,30,20\n"  # synset name, loosely
                   "x/b.png,cat,0,0,47,31\nx/gone.jpg,cat,0,0,3,3\n")  # fmt: skip
    notes: list[str] = []
    items = annotated_val(csv, None, CLASSES, tmp_path / "data", notes)
    val = tmp_path / "data" / "val"
    assert items == [(str(val / "a.jpg"), 1), (str(val / "b.png"), 0)]
    assert notes == [
        f"1 images under {val} are not in {csv} (e.g. {val / 'extra.jpg'}); not validated on",
        f"1 images of {csv} are not under {val} (e.g. 'gone'); not validated on",
    ]


def test_voc_root_and_coco_file_find_their_images_beside_them(tmp_path):
    voc = tmp_path / "voc"
    _image(voc / "JPEGImages" / "p.jpg")
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    (voc / "Annotations" / "p.xml").write_text(
        "<annotation><filename>p.jpg</filename><size><width>48</width><height>32</height>"
        "<depth>3</depth></size><object><name>jellyfish</name><difficult>0</difficult>"
        "<bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20</xmax><ymax>30</ymax></bndbox>"
        "</object></annotation>"
    )
    no_val = tmp_path / "data"
    assert annotated_val(voc, None, CLASSES, no_val, []) == [(str(voc / "JPEGImages" / "p.jpg"), 1)]
    coco = tmp_path / "c" / "instances.json"
    _image(coco.parent / "q.jpg")
    coco.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "q.jpg", "width": 48, "height": 32}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 4, "name": "dog"}],  # dog: no box
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 1, 10, 10],
                         "area": 100, "iscrowd": 0}],
    }))  # fmt: skip
    assert annotated_val(coco, "coco", CLASSES, no_val, []) == [(str(coco.parent / "q.jpg"), 0)]


def test_a_class_the_run_does_not_train_is_one_error_naming_it(tmp_path):
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "b.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text(HEADER + "a.jpg,cat,0,0,3,3\nb.jpg,tabby,0,0,3,3\n")
    with pytest.raises(TrainError, match=r"`val_annotations`: .*labels.csv: 1 class name\(s\) "
                       r"are not .* class of this run: 'tabby'; the run's 2 classes"):  # fmt: skip
        annotated_val(csv, None, CLASSES, tmp_path / "data", [])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "data"
    generate_dataset(out, num_classes=3, train_per_class=8, val_images=6, image_size=32, seed=0)
    return out


def _labels_file(path, data, shift):
    """DIR/val's own labels (ILSVRC XML) as a CSV of class NAMES, each class moved by ``shift``."""
    found = scan_data(data)
    names = [c.name for c in found.classes]
    rows = "".join(f"{p},{names[(i + shift) % 3]},0,0,5,5\n" for p, i in found.val)
    path.write_text(HEADER + rows)
    return path


def test_val_accuracy_is_computed_on_the_file_labels(data, tmp_path):
    """Same seed, same weights: the file with DIR/val's own labels gives exactly the default
    run's figures, and the three labelings shifted by 0, 1, 2 classes split every image's
    prediction between them, so their accuracies sum to exactly 1."""
    base = dict(arch="small-gap", epochs=1, batch_size=8, image_size=32, workers=0,
                device="cpu", lr=0.05, seed=3)  # fmt: skip
    plain = train(resolve_config(overrides=base).config, data, tmp_path / "plain", progress=False)
    rows = {}
    for shift in range(3):
        labels = _labels_file(tmp_path / f"labels{shift}.csv", data, shift)
        config = resolve_config(overrides={**base, "val_annotations": str(labels)}).config
        run = tmp_path / f"run{shift}"
        train(config, data, run, progress=False)
        rows[shift] = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    default = json.loads((tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()[-1])
    assert plain.best_metric_name == "val_acc"
    assert rows[0]["val_acc"] == default["val_acc"]
    assert rows[0]["train_loss"] == default["train_loss"]
    assert sum(row["val_acc"] for row in rows.values()) == pytest.approx(1.0, abs=1e-12)
    assert {rows[s]["val_acc"] * 6 for s in range(3)} <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0}


def test_cli_unknown_class_exits_2_before_any_epoch(data, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text(HEADER + f"{data}/val/ILSVRC2012_val_00000001.JPEG,unicorn,0,0,5,5\n")
    result = invoke("train", "--arch", "small-gap", "--data", data, "--out", tmp_path / "run",
                    "--image-size", "32", "--workers", "0", "--device", "cpu", "--epochs", "1",
                    "--val-annotations", labels, "--val-annotations-format", "csv")  # fmt: skip
    assert result.exit_code == 2
    assert "--val-annotations: " in result.stderr
    assert "'unicorn'" in result.stderr
    assert not (tmp_path / "run" / "last.pt").exists()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_toml_key_has_the_flag_name_and_the_format_is_checked(tmp_path):
    config = tmp_path / "c.toml"
    keys = 'arch = "small-gap"\nval_annotations = "x.csv"\n'
    config.write_text(keys + 'val_annotations_format = "voc"\n')
    resolved = resolve_config(config_file=config).config
    assert (resolved.val_annotations, resolved.val_annotations_format) == ("x.csv", "voc")
    config.write_text(keys + 'val_annotations_format = "x"\n')
    with pytest.raises(ValueError, match="val_annotations_format must be one of"):
        resolve_config(config_file=config)
