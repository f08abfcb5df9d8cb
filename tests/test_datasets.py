"""`outputs.datasets` (`bbox --format voc|yolo|coco-dataset`): the files' contents against the
records' own boxes (hand-converted), the round trip through `eval --annotations` (every box
written scores as correct), resume, lock, refusals, and same-stem images kept apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke, one_line_error, write_image, write_own_checkpoint

from cam_cli.data.interchange import read_yaml_names

OWN = ["jellyfish", "king_penguin", "golden_retriever"]
RUN = ["--workers", "0", "--no-fast", "-q"]


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Path:
    """An own-data checkpoint and 4 non-square images, two of them named img0 (a/ and b/)."""
    root = tmp_path_factory.mktemp("own")
    (root / "a").mkdir()
    (root / "b").mkdir()
    for i in range(3):
        write_image(root / "a" / f"img{i}.jpg", seed=i, size=(64, 40))
    write_image(root / "b" / "img0.png", seed=9, size=(30, 50))
    write_own_checkpoint(root / "own.pt", OWN)
    return root


def images(own: Path) -> list:
    return ["--images", own / "a", "--images", own / "b"]


def records(own: Path, *args) -> dict[str, dict]:
    """`bbox`'s JSON Lines of the same run, by path."""
    result = invoke("bbox", "--checkpoint", own / "own.pt", *images(own), *RUN, *args)
    assert result.exit_code == 0, result.output
    return {r["path"]: r for r in map(json.loads, result.stdout.splitlines())}


def bbox(own: Path, fmt: str, out: Path, *args):
    return invoke("bbox", "--checkpoint", own / "own.pt", *images(own), "--format", fmt,
                  "--output", out, *RUN, *args)  # fmt: skip


def evaluate(own: Path, image_dir: Path, annotations: Path, tmp_path: Path) -> dict:
    report = tmp_path / "report.json"
    result = invoke("eval", "--checkpoint", own / "own.pt", "--images", image_dir,
                    "--annotations", annotations, "--json", report, *RUN)  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(report.read_text())


@pytest.mark.parametrize(
    ("fmt", "image_dir", "annotations"),
    [
        ("voc", "JPEGImages", "."),
        ("yolo", "images", "."),
        ("coco-dataset", "images", "annotations/instances_train.json"),
    ],
)
def test_round_trip_scores_every_box_written(own, tmp_path, fmt, image_dir, annotations):
    out = tmp_path / "out"
    result = bbox(own, fmt, out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the dataset is the output
    report = evaluate(own, out / image_dir, out / annotations, tmp_path)
    assert report["images"] == 4
    assert report["failed_images"] == 0
    assert report["top1_cls_error"] == 0.0
    assert report["top1_loc_error"] == 0.0


def test_voc_files(own, tmp_path):
    out = tmp_path / "voc"
    assert bbox(own, "voc", out).exit_code == 0
    by_path = records(own, "--topk", "1")
    first = by_path[str(own / "b" / "img0.png")]["predictions"][0]
    xml = (out / "Annotations" / "img0-2.xml").read_text()  # the second img0, in input order
    x0, y0, x1, y1 = first["box"]
    assert f"<path>{own / 'b' / 'img0.png'}</path>" in xml
    assert "<size><width>30</width><height>50</height><depth>3</depth></size>" in xml
    assert f"<name>{first['name']}</name>" in xml
    assert "<difficult>0</difficult>" in xml
    for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x0, y0, x1, y1), strict=True):
        assert f"<{tag}>{value + 1}</{tag}>" in xml  # VOC's 1-based pixels
    assert (out / "ImageSets" / "Main" / "train.txt").read_text() == "img0\nimg0-2\nimg1\nimg2\n"
    link = out / "JPEGImages" / "img0-2.png"
    assert link.is_symlink()
    assert link.resolve() == (own / "b" / "img0.png").resolve()


def test_yolo_files(own, tmp_path):
    out = tmp_path / "yolo"
    assert bbox(own, "yolo", out, "--label-by", "index").exit_code == 0
    record = records(own, "--topk", "1")[str(own / "a" / "img1.jpg")]
    p = record["predictions"][0]
    x0, y0, x1, y1 = p["box"]
    # pixels x0..x1 of 64 cover [x0, x1 + 1): centre (x0 + x1 + 1) / 2, width x1 - x0 + 1
    expected = (f"{p['class_index']} {(x0 + x1 + 1) / 128:.6f} {(y0 + y1 + 1) / 80:.6f} "
                f"{(x1 - x0 + 1) / 64:.6f} {(y1 - y0 + 1) / 40:.6f}\n")  # fmt: skip
    assert (out / "labels" / "img1.txt").read_text() == expected
    assert read_yaml_names(out / "data.yaml") == ["0", "1", "2"]
    text = (out / "data.yaml").read_text()
    assert f"path: '{out}'\ntrain: images\nval: images\nnc: 3\n" in text


def test_coco_files_and_min_score(own, tmp_path):
    out = tmp_path / "coco"
    by_path = records(own, "--topk", "2")
    # midway between the two lowest top-1 scores: the image of the lowest is left out
    tops = sorted(r["predictions"][0]["score"] for r in by_path.values())
    assert tops[1] - tops[0] > 1e-5  # apart beyond the records' rounding
    least = (tops[0] + tops[1]) / 2
    result = bbox(own, "coco-dataset", out, "--topk", "2", "--min-score", str(least))
    assert result.exit_code == 0, result.output
    data = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert data["categories"] == [{"id": i + 1, "name": n} for i, n in enumerate(OWN)]
    kept = [(r["path"], p) for r in by_path.values() for p in r["predictions"]
            if p["score"] >= least]  # fmt: skip
    assert len(data["annotations"]) == len(kept)
    images = {image["id"]: image for image in data["images"]}
    for annotation in data["annotations"]:
        image = images[annotation["image_id"]]
        (p,) = [p for path, p in kept if str(Path(path).resolve()) == image["cam_cli_path"]
                and p["class_index"] + 1 == annotation["category_id"]]  # fmt: skip
        x0, y0, x1, y1 = p["box"]
        assert annotation["bbox"] == [x0, y0, x1 - x0 + 1, y1 - y0 + 1]
        assert annotation["area"] == (x1 - x0 + 1) * (y1 - y0 + 1)
        assert annotation["iscrowd"] == 0
        assert annotation["score"] == round(p["score"], 6)
    left_out = len(by_path) - len({path for path, _ in kept})
    assert left_out > 0
    assert len(data["images"]) == len(by_path) - left_out
    assert f"note: {left_out} images left out of {out}: no box scoring at least --min-score" in (
        result.stderr
    )
    assert {i["file_name"] for i in data["images"]} <= {"img0.jpg", "img0-2.png", "img1.jpg",
                                                         "img2.jpg"}  # fmt: skip


def test_resume_lock_and_refusals(own, tmp_path):
    out = tmp_path / "voc"
    assert bbox(own, "voc", out).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*.xml")}
    journal = out / ".cam-cli-dataset.jsonl"
    lines = journal.read_text().splitlines()
    # a run killed after two images, mid-line: the rest is done, the torn line dropped
    journal.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    result = bbox(own, "voc", out, "--workers", "0")
    assert result.exit_code == 0, result.output
    assert {p: p.read_bytes() for p in out.rglob("*.xml")} == before
    resumed = journal.read_text().splitlines()
    assert resumed[:3] == lines[:3]
    assert len(resumed) == 5
    # another run's settings: refused, nothing touched
    result = bbox(own, "voc", out, "--threshold", "0.5")
    one_line_error(result, "--output", "holds a dataset of another run")
    # not empty, no journal: refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "labels.txt").write_text("mine")
    one_line_error(bbox(own, "yolo", other), "--output", "not empty", "labels.txt")
    # rules of the options
    one_line_error(invoke("bbox", "--checkpoint", own / "own.pt", *images(own), "--format", "voc"),
                   "--format voc writes a dataset folder: give --output DIR")  # fmt: skip
    one_line_error(invoke("bbox", "--checkpoint", own / "own.pt", *images(own), "--min-score",
                          "0.5"), "--min-score and --label-by go with a dataset")  # fmt: skip
    file = tmp_path / "file"
    file.write_text("x")
    one_line_error(bbox(own, "coco-dataset", file), "--output", "not a directory")


def test_one_writer(own, tmp_path):
    from cam_cli.files.lock import FolderLock

    out = tmp_path / "yolo"
    out.mkdir()
    with FolderLock(out):
        result = bbox(own, "yolo", out)
    assert result.exit_code == 2, result.output
    assert "--output" in result.stderr, result.output
    assert not (out / "labels").exists()


def test_label_by_wnid_needs_wnids(own, tmp_path):
    """A model without wnids (plain weights, no class list) cannot label by wnid."""
    from cam_cli.data.classes import ClassInfo
    from cam_cli.errors import SetupError
    from cam_cli.outputs.datasets import class_labels

    with pytest.raises(SetupError, match="`label_by` wnid: class 0 of the model has no wnid"):
        class_labels([ClassInfo(0, None, "tench")], "wnid")
    assert class_labels([ClassInfo(0, None, "tench")], "index") == ["0"]


def test_yolo_folder_loads_with_ultralytics_checker(own, tmp_path, monkeypatch):
    """Ultralytics' own dataset checks (`check_det_dataset`, the label scan of `YOLODataset`)
    read every image and label written. Ultralytics is not a dependency: run with it on
    PYTHONPATH (an unpacked wheel) to check; skipped otherwise."""
    pytest.importorskip("ultralytics", reason="ultralytics not importable (not a dependency)")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-settings"))
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "yolo"
    assert bbox(own, "yolo", out).exit_code == 0
    data = check_det_dataset(str(out / "data.yaml"), autodownload=False)
    assert data["names"] == dict(enumerate(OWN))
    assert data["nc"] == 3
    dataset = YOLODataset(img_path=data["train"], data=data, task="detect", augment=False)
    loaded = {Path(label["im_file"]).stem: label for label in dataset.labels}
    assert sorted(loaded) == ["img0", "img0-2", "img1", "img2"]
    for stem, label in loaded.items():
        line = (out / "labels" / f"{stem}.txt").read_text().split()
        assert label["cls"].ravel().tolist() == [float(line[0])]
        assert label["bboxes"].ravel().tolist() == pytest.approx([float(v) for v in line[1:]])
