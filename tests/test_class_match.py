"""`data.class_match`: class names matched to a model's classes, and `eval` of an own-data
checkpoint (classes known by folder name) against ground truth that names its classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke, one_line_error, write_image, write_own_checkpoint

from cam_cli.data.class_match import ClassMatcher, match_labels
from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import ImageAnnotation

OWN = ["jellyfish", "king_penguin", "golden_retriever"]


def test_names_wnids_and_indices():
    classes = [ClassInfo(0, "n01440764", "tench"), ClassInfo(1, "n02012849", "crane"),
               ClassInfo(2, "n03126707", "crane"), ClassInfo(3, None, "Kit_fox")]  # fmt: skip
    matcher = ClassMatcher(classes)
    assert matcher.label("n01440764") == "n01440764"  # a wnid stays itself
    assert matcher.label("Tench") == "n01440764"
    assert matcher.label("kit fox") == "3"  # no wnid: its index
    assert matcher.label("2") == "n03126707"
    assert matcher.label("zebra") is None
    annotation = ImageAnnotation("a", ("crane",), (("crane", (0, 0, 1, 1)),))
    with pytest.raises(ValueError, match=r"shared by several .*: crane \(classes 1, 2\)"):
        match_labels({"a": annotation}, classes, "boxes.csv")
    # lenient (ILSVRC's own labels): left for the evaluation's check to report
    assert match_labels({"a": annotation}, classes, "x", strict=False)["a"] is annotation


def test_identity_keeps_the_callers_objects():
    classes = [ClassInfo(0, "n01440764", "tench")]
    annotations = {"a": ImageAnnotation("a", ("n01440764",), (("n01440764", (0, 0, 1, 1)),))}
    matched = match_labels(annotations, classes, "x")
    assert matched == annotations
    assert matched["a"] is annotations["a"]
    renamed = match_labels({"a": ImageAnnotation("a", ("TENCH",))}, classes, "x")
    assert renamed["a"].labels == ("n01440764",)


# --- eval with class names --------------------------------------------------------------------


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Path:
    """An own-data checkpoint (classes named by folder, as `train` stores them), 3 images."""
    root = tmp_path_factory.mktemp("own")
    (root / "val").mkdir()
    for i in range(3):
        write_image(root / "val" / f"img{i}.jpg", seed=i, size=(64, 40))
    write_own_checkpoint(root / "own.pt", OWN)
    return root


def top1(own: Path) -> list[dict]:
    """The checkpoint's own top-1 boxes (`cam-cli bbox`)."""
    result = invoke("bbox", "--checkpoint", own / "own.pt", "--images", own / "val",
                    "--workers", "0", "--no-fast", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_eval_own_checkpoint_against_named_csv(own, tmp_path):
    """Ground truth equal to the model's own top-1 boxes, classes by name in any case: every
    image right; the same file with a class the model lacks: one line naming it, exit 2."""
    rows = ["path,class,xmin,ymin,xmax,ymax"]
    for record in top1(own):
        best = record["predictions"][0]
        name = best["name"].replace("_", " ").title()  # "King Penguin"
        rows.append(f"{record['path']},{name},{','.join(map(str, best['box']))}")
    csv = tmp_path / "boxes.csv"
    csv.write_text("\n".join(rows) + "\n")
    args = ["eval", "--checkpoint", own / "own.pt", "--images", own / "val", "--workers", "0",
            "--no-fast", "-q", "--json", tmp_path / "r.json"]  # fmt: skip
    result = invoke(*args, "--annotations", csv)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["images"] == 3
    assert report["top1_cls_error"] == 0.0
    assert report["top1_loc_error"] == 0.0
    result = invoke(*args, "--annotations", csv, "--annotations-format", "csv")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["annotations_format"] == "csv"

    csv.write_text("\n".join([*rows, rows[1].split(",")[0] + ",zebra,1,1,2,2"]) + "\n")
    result = invoke(*args, "--annotations", csv)
    one_line_error(result, "--annotations", "1 class name(s) are not classes of the model: zebra",
                   "0: jellyfish, 1: king_penguin, 2: golden_retriever", "--classes")  # fmt: skip


def test_annotations_format_rules(own, tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text("path,class,xmin,ymin,xmax,ymax\nimg0.jpg,jellyfish,1,1,2,2\n")
    result = invoke("eval", "--cub", tmp_path, "--annotations-format", "csv")
    one_line_error(result, "--annotations-format goes with --annotations")
    result = invoke("eval", "--predictions", tmp_path / "p.jsonl", "--annotations", csv)
    one_line_error(result, "--annotations names classes by name", "--classes")
    result = invoke("eval", "--checkpoint", own / "own.pt", "--images", own / "val",
                    "--annotations", csv, "--annotations-format", "yolo", "-q")  # fmt: skip
    one_line_error(result, "not a YOLO label folder")
