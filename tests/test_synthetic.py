"""The synthetic ILSVRC-format dataset: determinism, formats, exact boxes, non-trivial locations."""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cam_cli.boxes.geometry import iou_inclusive
from cam_cli.cli.main import app
from cam_cli.synthetic import dataset as synthetic
from cam_cli.synthetic import render
from cam_cli.synthetic.dataset import generate_dataset
from cam_cli.synthetic.render import (
    MAX_AREA_FRACTION,
    MAX_CLASSES,
    MIN_AREA_FRACTION,
    class_specs,
    render_sample,
    val_labels,
    val_rng,
)

SMALL = {"num_classes": 4, "train_per_class": 3, "val_images": 10, "image_size": 48}
N_VAL = 240  # enough val images for the baseline statistics, still well under a second


def iou(a, b) -> float:
    return float(iou_inclusive(a, np.array([b]))[0])


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def parse_xml(path: Path) -> dict:
    ann = ET.parse(path).getroot()
    assert ann.tag == "annotation"
    size = ann.find("size")
    objects = []
    for obj in ann.findall("object"):
        bb = obj.find("bndbox")
        box = tuple(int(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((obj.findtext("name"), box, obj))
    return {
        "folder": ann.findtext("folder"),
        "filename": ann.findtext("filename"),
        "database": ann.findtext("source/database"),
        "width": int(size.findtext("width")),
        "height": int(size.findtext("height")),
        "depth": int(size.findtext("depth")),
        "segmented": ann.findtext("segmented"),
        "objects": objects,
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "data"
    summary = generate_dataset(out, train_per_class=2, val_images=N_VAL, seed=0)
    return summary


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    a = read_tree(generate_dataset(tmp_path / "a", seed=3, **SMALL).out_dir)
    b = read_tree(generate_dataset(tmp_path / "b", seed=3, **SMALL).out_dir)
    c = read_tree(generate_dataset(tmp_path / "c", seed=4, **SMALL).out_dir)
    assert a == b
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith(".JPEG")]
    assert len(images) == 4 * 3 + 10
    assert all(a[k] != c[k] for k in images)


def test_larger_dataset_extends_smaller_one(tmp_path):
    small = read_tree(generate_dataset(tmp_path / "s", seed=1, **SMALL).out_dir)
    bigger = dict(SMALL, train_per_class=5, val_images=17)
    big = read_tree(generate_dataset(tmp_path / "b", seed=1, **bigger).out_dir)
    shared = [k for k in small if k.endswith((".JPEG", ".xml"))]
    assert all(small[k] == big[k] for k in shared)


def test_layout_and_formats(dataset):
    root = dataset.out_dir
    assert {p.name for p in root.iterdir()} == {
        "train",
        "val",
        "annotations",
        "LOC_val_solution.csv",
        "LOC_synset_mapping.txt",
        synthetic.MARKER_FILE,
    }
    assert not list(root.parent.glob(".*partial*"))

    # Mapping: `wnid name` lines, sorted by wnid, well-formed fake wnids, distinct names.
    lines = dataset.synset_mapping.read_text().splitlines()
    wnids = [line.split(" ", 1)[0] for line in lines]
    names = [line.split(" ", 1)[1] for line in lines]
    assert len(lines) == dataset.num_classes == 6
    assert wnids == sorted(wnids)
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert len(set(names)) == len(names)
    assert [(w, n) for w, n in zip(wnids, names, strict=True)] == dataset.classes

    # Train: train/<wnid>/<wnid>_<n>.JPEG, RGB JPEGs of the promised size.
    assert sorted(p.name for p in dataset.train_dir.iterdir()) == wnids
    for w in wnids:
        files = sorted(p.name for p in (dataset.train_dir / w).iterdir())
        assert files == sorted(f"{w}_{n}.JPEG" for n in (1, 2))
    with Image.open(dataset.train_dir / wnids[0] / f"{wnids[0]}_1.JPEG") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 64))

    # CSV: Kaggle header, one row per val image, same boxes as the XML files.
    with open(dataset.solution_csv, newline="") as f:
        rows = list(csv.reader(f))
    assert dataset.solution_csv.read_bytes().startswith(b"ImageId,PredictionString\r\n")
    assert rows[0] == ["ImageId", "PredictionString"]
    ids = [r[0] for r in rows[1:]]
    assert ids == [f"ILSVRC2012_val_{i:08d}" for i in range(1, N_VAL + 1)]
    assert sorted(p.stem for p in dataset.val_dir.iterdir()) == ids
    assert sorted(p.name for p in dataset.annotations_dir.iterdir()) == [f"{i}.xml" for i in ids]

    n_boxes = 0
    labels = []
    for image_id, prediction in rows[1:]:
        tokens = prediction.split()
        assert len(tokens) % 5 == 0
        csv_objects = [
            (tokens[j], tuple(int(v) for v in tokens[j + 1 : j + 5]))
            for j in range(0, len(tokens), 5)
        ]
        ann = parse_xml(dataset.annotations_dir / f"{image_id}.xml")
        assert ann["folder"] == "val"
        assert ann["filename"] == image_id
        assert ann["database"] == "ILSVRC_2012"
        assert (ann["width"], ann["height"], ann["depth"]) == (64, 64, 3)
        assert ann["segmented"] == "0"
        assert [(name, box) for name, box, _ in ann["objects"]] == csv_objects
        for _, _, obj in ann["objects"]:
            assert obj.findtext("pose") == "Unspecified"
            assert obj.findtext("truncated") == "0"
            assert obj.findtext("difficult") == "0"
        assert len({name for name, _ in csv_objects}) == 1  # one class per image
        assert csv_objects[0][0] in wnids
        labels.append(wnids.index(csv_objects[0][0]))
        n_boxes += len(csv_objects)
    assert n_boxes == dataset.val_boxes
    assert dataset.train_images == 6 * 2
    assert dataset.val_images == N_VAL
    # Mostly one object per image, some with two; balanced classes.
    assert N_VAL < n_boxes < 1.25 * N_VAL
    counts = np.bincount(labels, minlength=6)
    assert counts.max() - counts.min() <= 1
    assert labels == list(val_labels(N_VAL, 6, 0))


def test_boxes_inside_image_and_within_promised_area(dataset):
    with open(dataset.solution_csv, newline="") as f:
        rows = list(csv.reader(f))[1:]
    fractions = []
    for _, prediction in rows:
        t = prediction.split()
        for j in range(0, len(t), 5):
            x0, y0, x1, y1 = (int(v) for v in t[j + 1 : j + 5])
            assert 0 <= x0 <= x1 <= 63
            assert 0 <= y0 <= y1 <= 63
            fractions.append((x1 - x0 + 1) * (y1 - y0 + 1) / 64**2)
    fractions = np.array(fractions)
    assert fractions.min() >= MIN_AREA_FRACTION
    assert fractions.max() <= MAX_AREA_FRACTION
    # Spread over the range, not bunched at one size.
    assert fractions.min() < 0.1
    assert fractions.max() > 0.3


def test_box_is_tight_around_object_pixels(dataset):
    classes = class_specs(6)
    labels = val_labels(N_VAL, 6, 0)
    for number in range(1, 41):
        image_id = f"ILSVRC2012_val_{number:08d}"
        spec = classes[int(labels[number - 1])]
        sample = render_sample(spec, classes, val_rng(0, number), 64)
        ann = parse_xml(dataset.annotations_dir / f"{image_id}.xml")
        assert [box for _, box, _ in ann["objects"]] == sample.boxes
        for box, mask in zip(sample.boxes, sample.masks, strict=True):
            x0, y0, x1, y1 = box
            ys, xs = np.nonzero(mask)
            assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x0, y0, x1, y1)
            # A decent share of the box is object (shapes fill their boxes; rings the least).
            assert mask[y0 : y1 + 1, x0 : x1 + 1].mean() > 0.3
        if len(sample.masks) == 2:
            assert not (sample.masks[0] & sample.masks[1]).any()
        # The written JPEG is this rendering (up to JPEG loss).
        with Image.open(dataset.val_dir / f"{image_id}.JPEG") as im:
            decoded = np.asarray(im.convert("RGB"), dtype=float)
        assert np.abs(decoded - sample.image).mean() < 8


def test_object_pixels_carry_the_class_colour():
    classes = class_specs(6)
    for spec in classes:
        sample = render_sample(spec, classes, val_rng(7, spec.index + 1), 64)
        mask = np.logical_or.reduce(sample.masks)
        pixels = sample.image[mask].astype(float)
        colour = np.array(render.COLOURS[spec.colour], dtype=float)
        # Bright pixels are the class colour (jittered, noisy); the rest its darker shade.
        bright = pixels[pixels.sum(axis=1) > 0.7 * colour.sum()]
        assert len(bright) > 0.3 * len(pixels)
        assert np.abs(bright.mean(axis=0) - colour).max() < 30


def test_trivial_boxes_fail(dataset):
    """A centred box of median ground-truth size, or the whole image, rarely reaches IoU 0.5."""
    with open(dataset.solution_csv, newline="") as f:
        rows = list(csv.reader(f))[1:]
    gts = []
    for _, prediction in rows:
        t = prediction.split()
        gts.append([tuple(int(v) for v in t[j + 1 : j + 5]) for j in range(0, len(t), 5)])
    all_boxes = np.array([b for g in gts for b in g])
    w = int(np.median(all_boxes[:, 2] - all_boxes[:, 0] + 1))
    h = int(np.median(all_boxes[:, 3] - all_boxes[:, 1] + 1))
    x0, y0 = (64 - w) // 2, (64 - h) // 2
    centred = (x0, y0, x0 + w - 1, y0 + h - 1)
    whole = (0, 0, 63, 63)
    centred_hits = np.mean([max(iou(centred, b) for b in g) >= 0.5 for g in gts])
    whole_hits = np.mean([max(iou(whole, b) for b in g) >= 0.5 for g in gts])
    assert centred_hits < 0.2
    assert whole_hits == 0.0
    # Objects really are spread out: centres cover all four quadrants.
    cx = (all_boxes[:, 0] + all_boxes[:, 2]) / 2
    cy = (all_boxes[:, 1] + all_boxes[:, 3]) / 2
    quadrants = {(bool(x < 32), bool(y < 32)) for x, y in zip(cx, cy, strict=True)}
    assert len(quadrants) == 4


def test_class_specs():
    specs = class_specs(MAX_CLASSES)
    assert len({(s.shape, s.colour) for s in specs}) == MAX_CLASSES
    assert len({s.name for s in specs}) == MAX_CLASSES
    assert [s.wnid for s in specs] == sorted(s.wnid for s in specs)
    first = class_specs(8)
    assert len({s.shape for s in first}) == 8
    assert len({s.colour for s in first}) == 8
    assert class_specs(6)[0].name == "red striped disc"
    for bad in (0, MAX_CLASSES + 1):
        with pytest.raises(ValueError, match="num_classes must be in"):
            class_specs(bad)


def test_refuses_to_clobber_and_overwrites_own_output(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError):
            generate_dataset(foreign, overwrite=overwrite, **SMALL)
    assert (foreign / "keep.txt").read_text() == "mine"

    out = tmp_path / "out"
    generate_dataset(out, seed=0, **SMALL)
    with pytest.raises(FileExistsError):
        generate_dataset(out, seed=1, **SMALL)
    generate_dataset(out, seed=1, overwrite=True, **SMALL)
    assert read_tree(out) == read_tree(
        generate_dataset(tmp_path / "fresh", seed=1, **SMALL).out_dir
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign", "fresh", "out"]


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real_save = synthetic._save_jpeg  # noqa: SLF001 - wrapped to fail part-way

    def flaky_save(image, path):
        calls.append(path)
        if len(calls) > 5:
            raise KeyboardInterrupt
        real_save(image, path)

    monkeypatch.setattr(synthetic, "_save_jpeg", flaky_save)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "out", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_the_synth_command(tmp_path):
    out = tmp_path / "cli"
    argv = ["synth", str(out), "--seed", "2", "--num-classes", "3", "--train-per-class", "2"]
    result = CliRunner().invoke(app, [*argv, "--val-images", "5", "--image-size", "40"])
    assert result.exit_code == 0, result.output
    assert "wrote 6 training and 5 validation images of 3 classes" in result.stderr
    assert len(list((out / "val").iterdir())) == 5
    with Image.open(out / "val" / "ILSVRC2012_val_00000001.JPEG") as im:
        assert im.size == (40, 40)
    again = CliRunner().invoke(app, ["synth", str(out)])  # exists: refused, with a message
    assert again.exit_code == 2
    assert "exists" in again.stderr


def test_partials_of_killed_runs_are_removed_on_the_next_run_and_only_those(tmp_path):
    import fcntl
    import os
    import subprocess
    import sys

    out = tmp_path / "ds"
    script = (
        "import os, sys\n"
        "from cam_cli.synthetic import dataset\n"
        "def die(*args, **kwargs): os._exit(9)\n"  # killed while writing the first image
        "dataset._save_jpeg = die\n"
        f"dataset.generate_dataset({str(out)!r}, num_classes=2, train_per_class=1, val_images=1)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert killed.returncode == 9
    [abandoned] = tmp_path.glob(".ds.partial-*")
    live = tmp_path / ".ds.partial-live"  # a run still writing (its lock held)
    (live / "train").mkdir(parents=True)
    held = os.open(live / ".cam-cli.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    foreign = tmp_path / ".ds.partial-notes"  # not ours: holds a file we never write
    foreign.mkdir()
    (foreign / ".cam-cli.lock").write_text("1\n")
    (foreign / "notes.txt").write_text("precious")
    unlocked = tmp_path / ".ds.partial-old"  # no lock file: an older version's; left alone
    (unlocked / "val").mkdir(parents=True)
    generate_dataset(out, num_classes=2, train_per_class=1, val_images=1)
    os.close(held)
    assert not abandoned.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".ds.partial-live", ".ds.partial-notes", ".ds.partial-old", "ds"
    ]  # fmt: skip
    assert (foreign / "notes.txt").read_text() == "precious"
    assert not (out / ".cam-cli.lock").exists()
