"""The checks made before any work (`files.checks`): names that are not UTF-8 print one to one
and stay apart, outputs never overwrite inputs (every file read, stdin paths and links too),
unwritable outputs are refused up front, the workers cap. Each refusal is one line and exit 2
(issue 13: what a careless user or an attacker tries; a seeded small-gap model, tiny images)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import BAD, WNIDS, invoke, model_args, one_line_error, run_cli, write_image

from cam_cli.files.checks import bounded_workers, max_workers, printable_path, record_name
from cam_cli.outputs.writers import json_line


def test_printable_path_rule():
    assert printable_path(BAD + ".jpg") == "bad\\xff.jpg"
    assert printable_path("ok-é.jpg") == "ok-é.jpg"  # valid names unchanged


def test_printable_path_is_one_to_one():
    """Issue 19 (7): the byte 0xFF and a name literally holding ``\\xff`` print apart; a
    backslash that cannot be read as an escape, and every ordinary name, print unchanged."""
    raw, literal = os.fsdecode(b"a\xff.JPEG"), "a\\xff.JPEG"
    assert printable_path(raw) == "a\\xff.JPEG"
    assert printable_path(literal) == "a\\x5cxff.JPEG"
    assert printable_path("a\\xzz\\n.jpg") == "a\\xzz\\n.jpg"
    assert printable_path(os.fsdecode(b"a\\\xff")) == "a\\\\xff"  # "\\" then the byte
    assert record_name("a\\xff.JPEG") == "a\\xff.JPEG"  # a record's text: printed already
    assert record_name(raw) == "a\\xff.JPEG"
    assert json_line({"path": literal}) == '{"path": "a\\\\x5cxff.JPEG"}\n'
    assert json_line({"path": "ok-é.jpg"}) == '{"path": "ok-é.jpg"}\n'


def test_a_raw_byte_and_its_literal_escape_stay_two_images(fake, tmp_path):
    """Issue 19 (7): ``a<0xFF>.jpg`` and ``a\\xff.jpg`` were one image id: resume said
    "listed twice" and `eval --predictions` refused two records for one image."""
    imgs, xml = tmp_path / "imgs", tmp_path / "xml"
    imgs.mkdir()
    xml.mkdir()
    for i, stem in enumerate([os.fsdecode(b"a\xff"), "a\\xff"]):
        write_image(imgs / f"{stem}.jpg", seed=i)
        (xml / f"{stem}.xml").write_text((fake / "xml" / "a.xml").read_text())
    boxes = invoke("bbox", *model_args(fake), "--images", imgs, "--output", tmp_path / "b.jsonl")
    assert boxes.exit_code == 0, boxes.output
    records = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text("utf-8").splitlines()]
    assert sorted(Path(r["path"]).name for r in records) == ["a\\x5cxff.jpg", "a\\xff.jpg"]
    args = ["eval", *model_args(fake), "--images", imgs, "--annotations", xml,
            "--per-image", tmp_path / "per.jsonl"]  # fmt: skip
    first = invoke(*args, "--json", tmp_path / "1.json")
    assert first.exit_code == 0, first.output
    ids = [json.loads(x)["image_id"] for x in (tmp_path / "per.jsonl").read_text().splitlines()]
    assert sorted(ids) == ["a\\x5cxff", "a\\xff"]
    again = invoke(*args, "--json", tmp_path / "2.json")
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "2.json").read_text())["resumed_images"] == 2
    scored = invoke("eval", "--predictions", tmp_path / "b.jsonl", "--annotations", xml,
                    "--json", tmp_path / "p.json")  # fmt: skip
    assert scored.exit_code == 0, scored.output
    report, one = (json.loads((tmp_path / n).read_text()) for n in ("p.json", "1.json"))
    assert report["images"] == 2
    assert report["top1_loc_error"] == one["top1_loc_error"]


@pytest.mark.slow
def test_bbox_output_file_and_strict_stdout_with_a_non_utf8_name(fake, tmp_path):
    out = tmp_path / "o.jsonl"
    result = invoke("bbox", *model_args(fake), "--images", fake / "imgs", "--output", out)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [Path(r["path"]).name for r in records] == ["a.jpg", "b.jpg", "bad\\xff.jpg"]
    assert all("predictions" in r for r in records)
    # stdout under a strict UTF-8 encoding, as a real process
    proc = run_cli("bbox", *model_args(fake), "--images", fake / "imgs",
                   env_extra={"PYTHONIOENCODING": "utf-8:strict"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode("utf-8") == out.read_text(encoding="utf-8")
    csv = invoke("bbox", *model_args(fake), "--images", fake / "imgs", "--format", "csv")
    assert csv.exit_code == 0
    assert "bad\\xff.jpg" in csv.stdout


def test_eval_per_image_resume_and_predictions_with_a_non_utf8_name(fake, tmp_path):
    per_image = tmp_path / "per.jsonl"
    args = ["eval", *model_args(fake), "--images", fake / "imgs", "--annotations", fake / "xml"]
    first = invoke(*args, "--per-image", per_image, "--json", tmp_path / "1.json")
    assert first.exit_code == 0, first.output
    lines = per_image.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert json.loads(lines[2])["image_id"] == "bad\\xff"
    again = invoke(*args, "--per-image", per_image, "--json", tmp_path / "2.json")
    assert again.exit_code == 0, again.output
    one, two = (json.loads((tmp_path / n).read_text()) for n in ("1.json", "2.json"))
    assert two["resumed_images"] == 3
    assert two["top1_loc_error"] == one["top1_loc_error"]
    # the escaped records of bbox match their annotations back
    boxes = invoke("bbox", *model_args(fake), "--images", fake / "imgs")
    scored = invoke("eval", "--predictions", "-", "--annotations", fake / "xml",
                    "--json", tmp_path / "p.json", input=boxes.stdout)  # fmt: skip
    assert scored.exit_code == 0, scored.output
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["images"] == 3
    assert report["top1_loc_error"] == one["top1_loc_error"]


def test_cam_with_a_non_utf8_name(fake, tmp_path):
    result = invoke("cam", *model_args(fake), "--images", fake / "imgs", "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "c").glob("*.png"))) == 3


def test_outputs_that_are_inputs_are_refused_before_any_work(fake, tmp_path):
    photo = tmp_path / "one.png"
    write_image(photo)
    before = photo.read_bytes()
    result = invoke("bbox", *model_args(fake), "--images", photo, "--output", photo)
    one_line_error(result, "--output", "one.png", "is an input")
    assert photo.read_bytes() == before
    weights = fake / "weights.pth"
    result = invoke("bbox", *model_args(fake), "--images", photo, "--output", weights)
    one_line_error(result, "--weights")
    in_folder = invoke("bbox", *model_args(fake), "--images", fake / "imgs",
                       "--output", fake / "imgs" / "a.jpg")  # fmt: skip
    one_line_error(in_folder, "a.jpg", "is an input")
    ann = tmp_path / "ann.csv"
    ann.write_text(f"ImageId,PredictionString\na,{WNIDS[0]} 2 3 30 33\n")
    result = invoke("eval", "--predictions", "-", "--annotations", ann, "--json", ann, input="")
    one_line_error(result, "--json", "--annotations")
    preds = tmp_path / "p.jsonl"
    preds.write_text("")
    result = invoke("eval", "--predictions", preds, "--annotations", ann, "--per-image", preds)
    one_line_error(result, "--per-image", "--predictions")
    assert ann.read_text().startswith("ImageId")
    assert preds.read_text() == ""


def test_outputs_are_checked_against_every_file_read_stdin_paths_and_links_too(fake, tmp_path):
    """Issue 19.1: paths read from stdin skipped the check; a hard link or a symlink to an
    input is that input."""
    imgs = tmp_path / "ow"
    imgs.mkdir()
    for i, stem in enumerate("ab"):
        write_image(imgs / f"{stem}.JPEG", seed=i)
    before = {p.name: p.read_bytes() for p in imgs.iterdir()}
    listing = "".join(f"{p}\n" for p in sorted(imgs.iterdir()))
    result = invoke("bbox", *model_args(fake), "--images", "-", "-o", imgs / "b.JPEG",
                    input=listing)  # fmt: skip
    one_line_error(result, "--output", "b.JPEG", "is an input (--images")
    os.link(imgs / "a.JPEG", tmp_path / "hard.jsonl")
    (tmp_path / "soft.jsonl").symlink_to(imgs / "b.JPEG")
    for name in ("hard.jsonl", "soft.jsonl"):
        result = invoke("bbox", *model_args(fake), "--images", "-", "-o", tmp_path / name,
                        input=listing)  # fmt: skip
        one_line_error(result, "--output", name, "is an input (--images")
    assert {p.name: p.read_bytes() for p in imgs.iterdir()} == before
    result = invoke("bbox", *model_args(fake), "--images", "-", "-o", tmp_path / "ok.jsonl",
                    input=listing)  # fmt: skip
    assert result.exit_code == 0, result.output  # a good output still is one
    assert len((tmp_path / "ok.jsonl").read_text().splitlines()) == 2


def test_boxes_outputs_are_checked_against_its_maps_and_reference(tmp_path):
    """Issue 19.2: `boxes` checked no output at all; ``-o FOLDER`` failed late."""
    mp = tmp_path / "mp"
    mp.mkdir()
    np.save(mp / "f16.npy", np.eye(16, dtype=np.float32))
    write_image(mp / "ref.jpg")
    before = {p.name: p.read_bytes() for p in mp.iterdir()}
    cases = [
        ([mp / "f16.npy", "-o", mp / "f16.npy"], None, "--output", "is an input (--maps"),
        (["--maps", mp, "-o", mp / "f16.npy"], None, "--output", "is an input (--maps"),
        (["--maps", "-", "-o", mp / "f16.npy"], f"{mp / 'f16.npy'}\n", "is an input (--maps"),
        ([mp / "f16.npy", "--reference", mp / "ref.jpg", "-o", mp / "ref.jpg"], None,
         "is an input (--reference"),
        ([mp / "f16.npy", "-o", mp], None, "--output", "is a directory"),
    ]  # fmt: skip
    for args, stdin, *words in cases:
        one_line_error(invoke("boxes", *args, input=stdin), *words)
    assert {p.name: p.read_bytes() for p in mp.iterdir()} == before
    result = invoke("boxes", mp / "f16.npy", "-o", tmp_path / "b.jsonl")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b.jsonl").read_text())["boxes"] == [[0, 0, 15, 15]]


def test_eval_outputs_are_checked_against_every_annotation_file(fake, tmp_path):
    """Issue 19.3: only image files inside input folders were protected: an XML of the
    --annotations folder, CUB's box file, were replaced by the report."""
    xml = fake / "xml"
    before = {p.name: p.read_bytes() for p in xml.iterdir()}
    args = ["eval", *model_args(fake), "--images", fake / "imgs", "--annotations", xml]
    one_line_error(invoke(*args, "--json", xml / "a.xml"), "--json", "a.xml", "is an input")
    one_line_error(invoke(*args, "--per-image", xml / "b.xml"), "--per-image", "is an input")
    os.link(xml / "a.xml", tmp_path / "linked.json")
    one_line_error(invoke(*args, "--json", tmp_path / "linked.json"), "is an input")
    assert {p.name: p.read_bytes() for p in xml.iterdir()} == before
    cub = tmp_path / "cub"
    (cub / "images" / "001.A").mkdir(parents=True)
    write_image(cub / "images" / "001.A" / "x.jpg")
    tables = {"images.txt": "1 001.A/x.jpg\n", "image_class_labels.txt": "1 1\n",
              "train_test_split.txt": "1 0\n", "bounding_boxes.txt": "1 2 3 20 20\n",
              "classes.txt": "1 001.A\n"}  # fmt: skip
    for name, text in tables.items():
        (cub / name).write_text(text)
    cub_args = ["eval", "--arch", "small-gap", "--weights", fake / "weights.pth", "--cub", cub]
    for name in ("bounding_boxes.txt", "images.txt"):
        result = invoke(*cub_args, "--json", cub / name)
        one_line_error(result, "--json", name, "is an input (--cub")
    os.link(cub / "images" / "001.A" / "x.jpg", tmp_path / "x.json")
    one_line_error(invoke(*cub_args, "--json", tmp_path / "x.json"), "is an input (--images")
    assert all((cub / name).read_text() == text for name, text in tables.items())


def test_draw_folder_whose_names_would_hit_inputs(fake, tmp_path):
    write_image(tmp_path / "x.jpg")
    write_image(tmp_path / "x_boxes.png", seed=1)
    before = (tmp_path / "x_boxes.png").read_bytes()
    result = invoke("bbox", *model_args(fake), "--images", tmp_path, "--draw", tmp_path)
    one_line_error(result, "--draw", "x_boxes.png")
    assert (tmp_path / "x_boxes.png").read_bytes() == before


def test_train_out_inside_data_or_over_backbone_weights(tmp_path):
    data = tmp_path / "data"
    (data / "train" / "c").mkdir(parents=True)
    result = invoke("train", "--data", data, "--out", data / "train" / "run")
    one_line_error(result, "--out", "inside the --data folder")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"x")
    result = invoke("train", "--data", data, "--out", tmp_path / "run",
                    "--backbone-weights", tmp_path / "run" / "best.pt")  # fmt: skip
    one_line_error(result, "--backbone-weights")


def test_unwritable_outputs_are_refused_up_front(fake, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    base = ["bbox", *model_args(fake), "--images", fake / "imgs"]
    one_line_error(invoke(*base, "--output", blocker / "o.jsonl"), "not a directory")
    one_line_error(invoke(*base, "--output", tmp_path), "is a directory")
    data = tmp_path / "data"
    (data / "train" / "c").mkdir(parents=True)
    one_line_error(invoke("train", "--data", data, "--out", blocker / "run"), "--out")
    evaluation = [
        "eval",
        *model_args(fake),
        "--images",
        fake / "imgs",
        "--annotations",
        fake / "xml",
    ]
    one_line_error(invoke(*evaluation, "--json", tmp_path), "--json", "is a directory")
    one_line_error(invoke(*evaluation, "--json", blocker / "r.json"), "--json")
    one_line_error(invoke(*evaluation, "--per-image", blocker / "p.jsonl"), "--per-image")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_read_only_folder(fake, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    result = invoke("bbox", *model_args(fake), "--images", fake / "imgs",
                    "--output", folder / "o.jsonl")  # fmt: skip
    one_line_error(result, "no write permission")


def test_workers_are_capped(caplog):
    """Issue 19 (9): ``workers = 1000`` would start a thousand DataLoader processes."""
    top = max_workers()
    assert top == max(8, 2 * os.cpu_count())
    assert max_workers(64) == 128
    with caplog.at_level("INFO", logger="cam_cli"):
        assert bounded_workers(1000, "workers") == top
        assert bounded_workers(top) == top
        assert bounded_workers(0) == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"note: workers 1000 capped to {top} (at most 2 per CPU core, or 8)"
    ]


@pytest.mark.slow
def test_capped_workers_say_one_note_and_torch_says_nothing(fake):
    """Issue 19 (15): the cap (at least 8) is more than the cores torch suggests, and its
    DataLoader's UserWarning reached stderr beside the note."""
    args = [a for a in model_args(fake) if a not in ("--workers", "0")]
    proc = run_cli("bbox", *args, "--workers", "1000", "--images", fake / "imgs" / "a.jpg")
    assert proc.returncode == 0
    top = max_workers()
    assert proc.stderr.decode().splitlines() == [
        f"cam-cli: note: --workers 1000 capped to {top} (at most 2 per CPU core, or 8)"
    ]
