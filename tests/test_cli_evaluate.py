"""`cam-cli eval` as a user runs it: on a small generated ILSVRC-like folder and a tiny fake CUB
(a seeded, untrained small-gap network: figures are arbitrary but reproducible), and on a subset
of the real ILSVRC sample with the real MobileNetV2 weights when ../shared is present."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke, model_report, write_xml
from PIL import Image

from cam_cli.models.checkpoint_format import CHECKPOINT_FORMAT
from cam_cli.models.preprocess import IMAGENET
from cam_cli.models.registry import build_model, get_arch

WNIDS = ["n01440764", "n01751748", "n02119789"]
NAMES = ["tench", "sea snake", "kit fox"]
IMAGES = 10


def figures(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("settings", "resumed_images")}


def without_gt_known(report: dict) -> dict:
    gt_known = ("gt_known_images", "gt_known_correct", "gt_known_loc_error", "gt_known_available")
    kept = {k: v for k, v in figures(report).items() if k not in gt_known}
    if "baselines" in kept:  # a model run also gives the baselines' GT-known error
        kept["baselines"] = {
            name: {k: v for k, v in baseline.items() if k not in gt_known}
            for name, baseline in kept["baselines"].items()
        }
    return kept


def write_image(path: Path, box, size=(80, 60), seed=0) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0 : y1 + 1, x0 : x1 + 1] = rng.integers(150, 255, 3, dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def seeded_small_gap(num_classes: int, path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(build_model("small-gap", num_classes).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Path:
    """val/ (10 JPEGs), xml/, LOC_val_solution.csv, classes.txt, weights.pth."""
    root = tmp_path_factory.mktemp("ilsvrc")
    (root / "val").mkdir()
    (root / "xml").mkdir()
    rows = []
    for i in range(IMAGES):
        stem = f"ILSVRC2012_val_{i + 1:08d}"
        box = (5 + 3 * i, 4 + 2 * i, 40 + 3 * i, 35 + i)
        wnid = WNIDS[i % 3]
        write_image(root / "val" / f"{stem}.JPEG", box, seed=i)
        write_xml(root / "xml" / f"{stem}.xml", 80, 60, [(wnid, box)])
        rows.append(f"{stem},{wnid} {' '.join(map(str, box))}")
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows))
    lines = [f"{wnid} {name}\n" for wnid, name in zip(WNIDS, NAMES, strict=True)]
    (root / "classes.txt").write_text("".join(lines))
    seeded_small_gap(3, root / "weights.pth")
    return root


def model_args(fake: Path) -> list:
    return ["--arch", "small-gap", "--weights", fake / "weights.pth", "--classes",
            fake / "classes.txt", "--workers", "0", "--no-fast", "--quiet"]  # fmt: skip


def run_eval(fake: Path, tmp_path: Path, *args, images=None, annotations=None, name="r.json"):
    result = invoke(
        "eval", *model_args(fake), "--images", images or fake / "val",
        "--annotations", annotations or fake / "xml", "--json", tmp_path / name, *args,
    )  # fmt: skip
    report = json.loads((tmp_path / name).read_text()) if (tmp_path / name).exists() else None
    return result, report


# --- model mode -------------------------------------------------------------------------------


def test_model_run_xml_equals_csv(fake, tmp_path):
    result, from_xml = run_eval(fake, tmp_path, name="xml.json")
    assert result.exit_code == 0, result.output
    _, from_csv = run_eval(fake, tmp_path, annotations=fake / "LOC_val_solution.csv")
    assert figures(from_xml) == figures(from_csv)
    assert from_xml["images"] == IMAGES
    assert from_xml["failed_images"] == 0
    assert from_xml["gt_known_images"] == IMAGES
    assert from_xml["gt_known_available"]
    settings = from_xml["settings"]
    assert settings["arch"] == "small-gap"
    assert settings["threshold"] == 0.2
    assert settings["input_size"] == get_arch("small-gap").default_input_size
    assert settings["fast"] is False
    assert settings["annotations"] == str((fake / "xml").resolve())
    assert "GT-known localization error" in result.stdout
    assert "classification error" in result.stdout


def test_json_to_stdout_moves_the_table_to_stderr(fake):
    result = invoke(
        "eval", *model_args(fake), "--images", fake / "val", "--annotations", fake / "xml",
        "--json", "-",
    )  # fmt: skip
    assert result.exit_code == 0
    assert json.loads(result.stdout)["images"] == IMAGES
    assert "classification error" in result.stderr


def test_model_run_equals_bbox_predictions(fake, tmp_path):
    _, model = run_eval(fake, tmp_path)
    boxes = invoke("bbox", *model_args(fake), "--images", fake / "val", "--topk", "5")
    assert boxes.exit_code == 0
    result = invoke(
        "eval", "--predictions", "-", "--annotations", fake / "xml", "--json", tmp_path / "p.json",
        input=boxes.stdout,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    predictions = json.loads((tmp_path / "p.json").read_text())
    assert without_gt_known(predictions) == without_gt_known(model)
    assert "GT-known localization error          n/a (needs a model)" in result.stdout


def test_image_without_annotation(fake, tmp_path):
    images = tmp_path / "val"
    images.mkdir()
    for path in (fake / "val").iterdir():
        (images / path.name).symlink_to(path)
    write_image(images / "stray.JPEG", (1, 1, 9, 9))
    result, _ = run_eval(fake, tmp_path, images=images)
    assert result.exit_code == 2
    assert "1 images have no annotation" in result.stderr
    assert "stray.JPEG" in result.stderr
    assert "--allow-missing" in result.stderr
    result, report = run_eval(fake, tmp_path, "--allow-missing", images=images)
    assert result.exit_code == 0
    assert report["images"] == IMAGES
    assert report["missing"]["images_without_annotation"] == 1
    assert "left out (--allow-missing): 1 images without annotation" in result.stdout


def test_annotation_without_image(fake, tmp_path):
    xml = tmp_path / "xml"
    xml.mkdir()
    for path in (fake / "xml").iterdir():
        (xml / path.name).symlink_to(path)
    write_xml(xml / "ILSVRC2012_val_00000099.xml", 80, 60, [(WNIDS[0], (1, 1, 9, 9))])
    result, _ = run_eval(fake, tmp_path, annotations=xml)
    assert result.exit_code == 2
    assert "1 annotations have no image (e.g. ILSVRC2012_val_00000099)" in result.stderr
    result, report = run_eval(fake, tmp_path, "--allow-missing", annotations=xml)
    assert result.exit_code == 0
    assert report["missing"]["annotations_without_image"] == 1


def test_unknown_wnid(fake, tmp_path):
    csv = tmp_path / "LOC_val_solution.csv"
    text = (fake / "LOC_val_solution.csv").read_text()
    csv.write_text(text.replace(WNIDS[2], "n04999999"))
    result, _ = run_eval(fake, tmp_path, annotations=csv)
    assert result.exit_code == 2
    assert "n04999999" in result.stderr
    assert "not classes of the model" in result.stderr


def test_checkpoint_and_classes_in_another_order(fake, tmp_path):
    checkpoint = tmp_path / "model.pt"
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "arch": "small-gap",
            "classes": [
                {"index": i, "wnid": w, "name": n}
                for i, (w, n) in enumerate(zip(WNIDS, NAMES, strict=True))
            ],
            "model": torch.load(fake / "weights.pth", weights_only=True),
            "preprocessing": IMAGENET.to_dict(),
            "input_size": 96,
        },
        checkpoint,
    )
    reordered = tmp_path / "classes.txt"
    reordered.write_text("".join(f"{w} x\n" for w in reversed(WNIDS)))
    args = ["--images", fake / "val", "--annotations", fake / "xml", "--workers", "0", "-q"]
    result = invoke("eval", "--checkpoint", checkpoint, "--classes", reordered, *args)
    assert result.exit_code == 2
    assert "class order differs" in result.stderr
    result = invoke("eval", "--checkpoint", checkpoint, *args, "--no-fast")
    assert result.exit_code == 0, result.output


def test_failed_images_count_as_wrong_and_exit_1(fake, tmp_path):
    images, xml = tmp_path / "val", tmp_path / "xml"
    images.mkdir()
    xml.mkdir()
    for path in (fake / "val").iterdir():
        (images / path.name).symlink_to(path)
    for path in (fake / "xml").iterdir():
        (xml / path.name).symlink_to(path)
    (images / "ILSVRC2012_val_00000050.JPEG").write_text("not an image")
    write_xml(xml / "ILSVRC2012_val_00000050.xml", 80, 60, [(WNIDS[1], (0, 0, 79, 59))])
    result, report = run_eval(fake, tmp_path, images=images, annotations=xml)
    assert result.exit_code == 1, result.output
    assert report["images"] == IMAGES + 1
    assert report["failed_images"] == 1
    assert report["failed"][0]["path"].endswith("ILSVRC2012_val_00000050.JPEG")
    assert report["gt_known_images"] == IMAGES + 1  # the failed image counts, as wrong
    assert "1 images failed (counted as wrong):" in result.stdout
    _, good = run_eval(fake, tmp_path, name="good.json")
    wrong = report["images"] - report["correct"]["top5_cls"]
    assert wrong == good["images"] - good["correct"]["top5_cls"] + 1


def test_resume_after_a_crash_gives_the_one_shot_figures(fake, tmp_path):
    args = ["--maxboxacc", "--batch-size", "1"]
    _, one_shot = run_eval(fake, tmp_path, *args, "--per-image", tmp_path / "full.jsonl")
    # First half only, then a crash that tears the last line written.
    half = tmp_path / "half"
    half.mkdir()
    for path in sorted((fake / "val").iterdir())[: IMAGES // 2]:
        (half / path.name).symlink_to(path)
    log = tmp_path / "per_image.jsonl"
    result, _ = run_eval(fake, tmp_path, *args, "--allow-missing", "--per-image", log, images=half)
    assert result.exit_code == 0, result.output
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) == IMAGES // 2
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])

    result, resumed = run_eval(fake, tmp_path, *args, "--per-image", log, name="resumed.json")
    assert result.exit_code == 0, result.output
    assert resumed["resumed_images"] == IMAGES // 2 - 1
    assert figures(resumed) == figures(one_shot)
    assert resumed["maxboxacc_v2"]["images"] == IMAGES

    def lines_of(path: Path) -> list[dict]:  # the first images were read from half/, not val/
        return [{**json.loads(t), "path": None} for t in path.read_text().splitlines()]

    assert lines_of(log) == lines_of(tmp_path / "full.jsonl")

    # Nothing left to do: the figures come from the file alone.
    _, again = run_eval(fake, tmp_path, *args, "--per-image", log, name="again.json")
    assert again["resumed_images"] == IMAGES
    assert figures(again) == figures(one_shot)
    # Other settings never mix into the same file.
    result, _ = run_eval(fake, tmp_path, *args, "--threshold", "0.3", "--per-image", log)
    assert result.exit_code == 2
    assert "other settings" in result.stderr


@pytest.mark.slow
def test_resume_retries_images_that_failed_before(fake, tmp_path):
    """Issue 19.13: a truncated image, since fixed, stayed failed on every resume. Its error
    line is dropped and the image run again: one line per image, the one-shot figures."""
    images = tmp_path / "val"
    images.mkdir()
    for path in sorted((fake / "val").iterdir()):
        (images / path.name).write_bytes(path.read_bytes())
    broken = images / "ILSVRC2012_val_00000004.JPEG"
    good_bytes = broken.read_bytes()
    broken.write_bytes(good_bytes[: len(good_bytes) // 2])
    _, one_shot = run_eval(fake, tmp_path, "--maxboxacc", name="one_shot.json")
    log = tmp_path / "per_image.jsonl"
    result, first = run_eval(fake, tmp_path, "--maxboxacc", "--per-image", log, images=images)
    assert result.exit_code == 1, result.output
    assert first["failed_images"] == 1, result.output
    assert sum(json.loads(t)["error"] is not None for t in log.read_text().splitlines()) == 1
    broken.write_bytes(good_bytes)  # fixed
    result, resumed = run_eval(fake, tmp_path, "--maxboxacc", "--per-image", log, images=images,
                               name="resumed.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert resumed["resumed_images"] == IMAGES - 1
    assert resumed["failed_images"] == 0
    assert figures(resumed) == figures(one_shot)
    lines = [json.loads(t) for t in log.read_text().splitlines()]
    assert sorted(line["image_id"] for line in lines) == sorted(
        f"ILSVRC2012_val_{i + 1:08d}" for i in range(IMAGES)
    )  # each image exactly once, by its new result
    assert all(line["error"] is None for line in lines)
    assert lines[-1]["image_id"] == broken.stem  # run again, after the kept lines
    _, again = run_eval(fake, tmp_path, "--maxboxacc", "--per-image", log, images=images)
    assert again["resumed_images"] == IMAGES
    assert figures(again) == figures(one_shot)


@pytest.mark.parametrize(
    "content",
    [
        b"my notes, no newline",
        b'{"name": "a minified JSON file"}',
        b'{"a": 1}\n{"b": 2}\n',
        b"\n",
    ],  # fmt: skip
)
def test_per_image_file_that_is_not_ours_is_never_changed(fake, tmp_path, content):
    """Issue 19.5: an unrelated one-line file was cut away as a "torn last line" and refilled."""
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    result, _ = run_eval(fake, tmp_path, "--per-image", notes)
    assert result.exit_code == 2, result.output
    assert "not a cam-cli per-image file" in result.stderr
    assert "notes.txt" in result.stderr
    assert notes.read_bytes() == content
    records = tmp_path / "p.jsonl"
    records.write_text(invoke("bbox", *model_args(fake), "--images", fake / "val").stdout)
    result = invoke("eval", "--predictions", records, "--annotations", fake / "xml",
                    "--per-image", notes)  # fmt: skip
    assert result.exit_code == 2
    assert "not a cam-cli per-image file" in result.stderr
    assert notes.read_bytes() == content


def test_a_per_image_file_torn_in_its_first_line_is_resumed(fake, tmp_path):
    log = tmp_path / "per_image.jsonl"
    result, one_shot = run_eval(fake, tmp_path, "--per-image", log, name="one.json")
    assert result.exit_code == 0, result.output
    first = log.read_bytes().splitlines(keepends=True)[0]
    log.write_bytes(first[: len(first) // 3])  # a kill -9 inside the very first line
    result, resumed = run_eval(fake, tmp_path, "--per-image", log)
    assert result.exit_code == 0, result.output
    assert figures(resumed) == figures(one_shot)
    assert len(log.read_text().splitlines()) == IMAGES


def test_a_second_run_on_the_same_per_image_file_waits_for_none(fake, tmp_path):
    """Issue 19.6: two runs 0.5 s apart both appended to one file (90 lines for 50 images).
    The second one stops with exit 2 naming the first; a killed run's lock is taken over."""
    log = tmp_path / "c.jsonl"
    hold = (
        "import sys, time; from cam_cli.files.lock import FileLock; "
        f"FileLock({str(log)!r}).acquire(); print('held', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, env=env)
    try:
        assert holder.stdout.readline().strip() == b"held"
        result, _ = run_eval(fake, tmp_path, "--per-image", log)
        assert result.exit_code == 2, result.output
        assert f"--per-image {log}: in use by another run (PID {holder.pid})" in result.stderr
        assert not log.exists()
    finally:
        holder.kill()
        holder.wait()
    result, report = run_eval(fake, tmp_path, "--per-image", log)  # the dead run's lock
    assert result.exit_code == 0, result.output
    assert len(log.read_text().splitlines()) == IMAGES == report["images"]


def test_resume_refuses_lines_of_other_weights_under_the_same_file_name(fake, tmp_path):
    """The run's identity holds the weights' content: a retrained model saved over the old file
    must not be credited with the old model's per-image results (nor a copy refused)."""
    weights = tmp_path / "best.pth"
    weights.write_bytes((fake / "weights.pth").read_bytes())
    args = ["--arch", "small-gap", "--weights", weights, "--classes", fake / "classes.txt",
            "--workers", "0", "--no-fast", "--quiet", "--images", fake / "val",
            "--annotations", fake / "xml"]  # fmt: skip
    log = tmp_path / "per_image.jsonl"
    assert invoke("eval", *args, "--per-image", log).exit_code == 0
    copy = tmp_path / "copy.pth"  # same weights, another name: resumes
    copy.write_bytes(weights.read_bytes())
    moved = [str(copy) if a == weights else a for a in args]
    result = invoke("eval", *moved, "--per-image", log)
    assert result.exit_code == 0, result.output
    assert "resumed: 10 images" in result.stdout, result.output
    torch.manual_seed(1)  # retrained: other weights under the old name
    torch.save(build_model("small-gap", 3).state_dict(), weights)
    result = invoke("eval", *args, "--per-image", log)
    assert result.exit_code == 2
    assert "other settings" in result.stderr


# --- CUB --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cub(tmp_path_factory) -> Path:
    """CUB_200_2011 with 2 classes and 6 images (4 test, 2 train)."""
    root = tmp_path_factory.mktemp("CUB_200_2011")
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    (root / "classes.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    images, labels, split, boxes = [], [], [], []
    for i in range(6):
        folder = classes[i % 2]
        relpath = f"{folder}/{folder.split('.')[1]}_{i:04d}_{i}.jpg"
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        write_image(root / "images" / relpath, (10 + i, 8, 50 + i, 40), seed=i)
        images.append(f"{i + 1} {relpath}")
        labels.append(f"{i + 1} {i % 2 + 1}")
        split.append(f"{i + 1} {int(i >= 4)}")
        boxes.append(f"{i + 1} {10.0 + i} 8.0 41.0 33.0")
    for name, rows in (("images", images), ("image_class_labels", labels),
                       ("train_test_split", split), ("bounding_boxes", boxes)):  # fmt: skip
        (root / f"{name}.txt").write_text("\n".join(rows) + "\n")
    seeded_small_gap(2, root / "weights.pth")
    return root


def test_cub_end_to_end(cub, tmp_path):
    base = ["eval", "--arch", "small-gap", "--weights", cub / "weights.pth", "--cub", cub,
            "--workers", "0", "-q", "--no-fast"]  # fmt: skip
    result = invoke(*base, "--maxboxacc", "--json", tmp_path / "test.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "test.json").read_text())
    assert report["images"] == 4
    assert report["settings"]["split"] == "test"
    assert report["maxboxacc_v2"]["images"] == 4
    assert report["gt_known_images"] == 4
    assert "MaxBoxAccV2" in result.stdout
    result = invoke(*base, "--split", "all", "--json", tmp_path / "all.json")
    assert json.loads((tmp_path / "all.json").read_text())["images"] == 6

    # predictions of the same model score the same without it
    boxes = invoke("bbox", "--arch", "small-gap", "--weights", cub / "weights.pth", "--images",
                   cub / "images", "--workers", "0", "-q", "--no-fast")  # fmt: skip
    result = invoke("eval", "--predictions", "-", "--cub", cub, "--allow-missing", "--json",
                    tmp_path / "p.json", input=boxes.stdout)  # fmt: skip
    assert result.exit_code == 0, result.output
    predictions = json.loads((tmp_path / "p.json").read_text())
    assert predictions["missing"]["images_without_annotation"] == 2  # the 2 train images
    assert predictions["top1_loc_error"] == report["top1_loc_error"]


def test_cub_checkpoint_with_another_class_order(cub, tmp_path):
    checkpoint = tmp_path / "cub.pt"
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "arch": "small-gap",
            "classes": [
                {"index": 0, "wnid": None, "name": "Laysan_Albatross"},
                {"index": 1, "wnid": None, "name": "Black_footed_Albatross"},
            ],  # fmt: skip
            "model": torch.load(cub / "weights.pth", weights_only=True),
            "preprocessing": IMAGENET.to_dict(),
            "input_size": 96,
        },
        checkpoint,
    )
    result = invoke("eval", "--checkpoint", checkpoint, "--cub", cub, "--workers", "0", "-q")
    assert result.exit_code == 2
    assert "class order differs" in result.stderr


# --- usage errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "x"], "--annotations PATH or --cub ROOT"),
        (["--annotations", "a", "--cub", "c"], "--annotations PATH or --cub ROOT"),
        (["--cub", "c", "--meta", "m"], "--meta goes with --annotations"),
        (["--annotations", "a", "--split", "train"], "--split goes with --cub"),
        (["--annotations", "a"], "give the images"),
        (["--predictions", "-", "--annotations", "a", "--arch", "x"], "leave out --arch"),
        (["--predictions", "-", "--annotations", "a", "--threshold", "0.3"], "--threshold"),
        (["--predictions", "-", "--annotations", "a", "--maxboxacc"], "--maxboxacc"),
        (["--predictions", "-", "--annotations", "a", "--per-image", "-"], "needs a FILE"),
    ],
)
def test_usage_errors(args, message):
    result = invoke("eval", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.output


def test_unreadable_annotations_are_a_usage_error(tmp_path):
    result = invoke("eval", "--predictions", "-", "--annotations", tmp_path / "nope.csv")
    assert result.exit_code == 2
    assert "nope.csv" in result.stderr


# --- the real sample --------------------------------------------------------------------------

SUBSET = 32
CLI = [sys.executable, "-m", "cam_cli"]


@pytest.mark.slow
def test_real_subset_xml_csv_and_bbox_pipeline_agree(sample_dir, mobilenet_weights, tmp_path):
    """32 real images: XML == CSV figures; the model run == `bbox --topk 5 | eval`."""
    images, xml = tmp_path / "val", tmp_path / "xml"
    images.mkdir()
    xml.mkdir()
    stems = []
    for path in sorted((sample_dir / "val").iterdir())[:SUBSET]:
        (images / path.name).symlink_to(path)
        (xml / f"{path.stem}.xml").symlink_to(sample_dir / "annotations" / f"{path.stem}.xml")
        stems.append(path.stem)
    rows = (sample_dir / "LOC_val_solution.csv").read_text().splitlines()
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("\n".join([rows[0], *(r for r in rows[1:] if r.split(",")[0] in stems)]))
    model = ["--arch", "mobilenet_v2", "--weights", str(mobilenet_weights), "--classes",
             str(sample_dir / "LOC_synset_mapping.txt"), "--workers", "1", "-q"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def evaluate(annotations: Path, name: str) -> dict:
        out = tmp_path / name
        command = [*CLI, "eval", *model, "--images", str(images), "--annotations",
                   str(annotations), "--json", str(out)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(out.read_text())

    from_xml = evaluate(xml, "xml.json")
    from_csv = evaluate(csv, "csv.json")
    assert figures(from_xml) == figures(from_csv)
    assert from_xml["images"] == SUBSET
    assert from_xml["failed_images"] == 0

    bbox = subprocess.Popen(
        [*CLI, "bbox", *model, "--images", str(images), "--topk", "5"],
        stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    evaluation = subprocess.run(
        [*CLI, "eval", "--predictions", "-", "--annotations", str(xml), "--json", "-"],
        stdin=bbox.stdout, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    bbox.stdout.close()
    assert bbox.wait(timeout=300) == 0, evaluation.stderr
    assert evaluation.returncode == 0, evaluation.stderr
    assert without_gt_known(json.loads(evaluation.stdout)) == without_gt_known(from_xml)
    # Loose sanity on 32 images (the whole sample: ~20% top-1 error, ~40% GT-known error).
    assert from_xml["top1_cls_error"] <= 40
    assert from_xml["gt_known_loc_error"] <= 65


# --- wsolevaluation: score maps, carried thresholds, another classifier's classes -------------


def test_maxboxacc_protocol_cam_cli_reaches_the_model_run(fake, tmp_path):
    """`--maxboxacc-protocol cam-cli` on a model run is cam-cli's old figure, the one
    `evaluate` with `maxboxacc_protocol="cam-cli"` gives, not wsolevaluation's (it was once
    dropped on the way and the run silently scored the default protocol)."""
    from cam_cli.data.annotations import read_annotations
    from cam_cli.inference.localizer import RunOptions
    from cam_cli.models.loading import load_model

    result, report = run_eval(fake, tmp_path, "--maxboxacc", "--maxboxacc-protocol", "cam-cli")
    assert result.exit_code == 0, result.output
    assert report["settings"]["maxboxacc_protocol"] == "cam-cli"
    assert report["maxboxacc_v2"]["protocol"] == "cam-cli"
    loaded = load_model(
        arch="small-gap", weights=str(fake / "weights.pth"), classes_file=fake / "classes.txt"
    )
    truth = read_annotations(fake / "xml")
    options = RunOptions(fast=False, workers=0)
    old = model_report(loaded, fake / "val", truth, maxboxacc=True, run=options,
                         maxboxacc_protocol="cam-cli")  # fmt: skip
    wsol = model_report(loaded, fake / "val", truth, maxboxacc=True, run=options)
    assert report["maxboxacc_v2"] == old["maxboxacc_v2"]
    assert wsol["maxboxacc_v2"]["protocol"] == "wsol"


def test_save_scoremaps_then_score_them_without_the_model(fake, tmp_path):
    maps = tmp_path / "maps"
    result, run = run_eval(fake, tmp_path, "--maxboxacc", "--save-scoremaps", maps)
    assert result.exit_code == 0, result.output
    # np.save of scoremaps/<image id>, the id being the path below the folder above --images
    files = sorted(p.relative_to(maps).as_posix() for p in maps.rglob("*.npy"))
    assert files == [f"val/ILSVRC2012_val_{i + 1:08d}.JPEG.npy" for i in range(IMAGES)]
    scoremap = np.load(maps / files[0])
    assert scoremap.dtype == np.float64
    assert scoremap.shape == (224, 224)
    assert scoremap.min() == 0.0
    assert scoremap.max() == 1.0
    assert run["settings"]["save_scoremaps"] == str(maps.resolve())
    # the same figure from the saved maps alone (CSV ground truth: sizes from --images)
    for truth in (fake / "xml", fake / "LOC_val_solution.csv"):
        out = tmp_path / "maps.json"
        args = ["--images", fake / "val"] if truth.suffix == ".csv" else []
        scored = invoke("eval", "--scoremaps", maps, "--annotations", truth, *args,
                        "--json", out)  # fmt: skip
        assert scored.exit_code == 0, scored.output
        assert json.loads(out.read_text())["maxboxacc_v2"] == run["maxboxacc_v2"]
        assert f"score maps: {maps.resolve()}" in scored.stdout
    # carried from the run's own report: the same thresholds, so the same figure
    out = tmp_path / "carried.json"
    carried = invoke("eval", "--scoremaps", maps, "--annotations", fake / "xml",
                     "--cam-threshold-from", tmp_path / "r.json", "--json", out)  # fmt: skip
    assert carried.exit_code == 0, carried.output
    report = json.loads(out.read_text())
    assert report["maxboxacc_v2_carried"]["threshold"] == run["maxboxacc_v2"]["best_threshold"]
    assert report["maxboxacc_v2_carried"]["accuracy"] == run["maxboxacc_v2"]["accuracy"]
    assert "MaxBoxAccV2 at CAM thresholds from" in carried.stdout


def test_a_bad_score_map_exits_1_and_is_named(fake, tmp_path):
    maps = tmp_path / "maps" / "val"
    maps.mkdir(parents=True)
    for i in range(IMAGES):
        np.save(maps / f"ILSVRC2012_val_{i + 1:08d}.JPEG.npy", np.zeros((224, 224)))
    np.save(maps / "ILSVRC2012_val_00000003.JPEG.npy", np.full((224, 224), 2.0))
    result = invoke("eval", "--scoremaps", tmp_path / "maps", "--annotations", fake / "xml")
    assert result.exit_code == 1
    assert "ILSVRC2012_val_00000003.JPEG.npy" in result.stderr
    assert "[0, 1]" in result.stderr
    assert "10 images, 1 failed" in result.stdout


def test_class_predictions_from_another_classifier(fake, tmp_path):
    _, plain = run_eval(fake, tmp_path, name="plain.json")
    # right class first for every image: top-1 localization is then the GT-known box's
    right = tmp_path / "right.jsonl"
    right.write_text(
        "".join(
            json.dumps({"image": f"ILSVRC2012_val_{i + 1:08d}.JPEG", "classes": [WNIDS[i % 3]]})
            + "\n"
            for i in range(IMAGES)
        )
    )
    result, report = run_eval(fake, tmp_path, "--class-predictions", right, name="right.json")
    assert result.exit_code == 0, result.output
    assert report["top1_cls_error"] == 0.0
    assert report["top1_loc_error"] == report["gt_known_loc_error"] == plain["gt_known_loc_error"]
    assert report["settings"]["class_predictions"] == str(right.resolve())
    # CSV, a wrong class first and the right one second: top-1 all wrong, top-5 = GT-known
    wrong_first = tmp_path / "second.csv"
    wrong_first.write_text(
        "image,classes\n"
        + "".join(
            f"ILSVRC2012_val_{i + 1:08d},{WNIDS[(i + 1) % 3]} {WNIDS[i % 3]}\n"
            for i in range(IMAGES)
        )
    )
    _, second = run_eval(fake, tmp_path, "--class-predictions", wrong_first, name="second.json")
    assert second["top1_cls_error"] == 100.0
    assert second["top1_loc_error"] == 100.0
    assert second["top5_cls_error"] == 0.0
    assert second["top5_loc_error"] == plain["gt_known_loc_error"]
    # the model's own top-5 (a `bbox` run's records) give the plain run's figures
    bbox = invoke("bbox", *model_args(fake), "--images", fake / "val", "--topk", "5")
    own = tmp_path / "own.jsonl"
    own.write_text(bbox.stdout)
    _, same = run_eval(fake, tmp_path, "--class-predictions", own, name="own.json")
    for key in ("top1_cls_error", "top5_cls_error", "top1_loc_error", "top5_loc_error"):
        assert same[key] == plain[key], key
    # an evaluated image missing from the file, or a class the model does not have: exit 2
    short = tmp_path / "short.csv"
    short.write_text("ILSVRC2012_val_00000001,n01440764\n")
    result, _ = run_eval(fake, tmp_path, "--class-predictions", short, name="short.json")
    assert result.exit_code == 2
    assert "no class predictions for 9 evaluated images" in result.stderr
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("".join(f"ILSVRC2012_val_{i + 1:08d},n99999999\n" for i in range(IMAGES)))
    result, _ = run_eval(fake, tmp_path, "--class-predictions", unknown, name="unknown.json")
    assert result.exit_code == 2
    assert "n99999999 is not one of the model's classes" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scoremaps", "m", "--annotations", "a", "--arch", "x"], "leave out --arch"),
        (["--predictions", "-", "--annotations", "a", "--class-predictions", "c"], "model run"),
        (["--annotations", "a", "--images", "i", "--cam-threshold-from", "r"], "--maxboxacc"),
        (["--scoremaps", "m", "--annotations", "a", "--per-image", "p"], "leave out --per-image"),
    ],
)
def test_wsol_usage_errors(args, message):
    result = invoke("eval", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.output
