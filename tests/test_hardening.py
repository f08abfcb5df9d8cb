"""Issue 13: what a careless user or an attacker tries. Names that are not UTF-8, outputs that
are inputs, a run folder used twice, sizes out of range, files that are not what they claim,
NaN weights, empty folders, closed pipes. Each gives a written output or one line and exit 2,
never a traceback or a lost output (a seeded small-gap model on a few tiny images)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cam_cli.cli.main import app
from cam_cli.files.atomic import atomic_file, temp_path
from cam_cli.files.checks import bounded_workers, max_workers, printable_path, record_name
from cam_cli.files.lock import LOCK_NAME, FolderLock
from cam_cli.models.checkpoint_format import CHECKPOINT_FORMAT
from cam_cli.models.preprocess import IMAGENET
from cam_cli.models.registry import build_model
from cam_cli.outputs.writers import json_line

REPO = Path(__file__).resolve().parents[1]
WNIDS = ["n01440764", "n01751748", "n02119789"]
BAD = os.fsdecode(b"bad\xff")  # a file name that is not valid UTF-8 (surrogate-escaped)


def invoke(*args, input: str | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def run_cli(*args, env_extra=None, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "cam_cli", *[os.fsencode(str(a)) for a in args]],
        capture_output=True, env=env, timeout=300, **kwargs,
    )  # fmt: skip


def write_image(path: Path | str, seed=0, size=(48, 40)) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG" if str(path).endswith(".png") else "JPEG")


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cam-cli: error: "), result.stderr
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Path:
    """imgs/ (three JPEGs, one named bad\\xff.jpg), xml/, classes.txt, weights.pth."""
    root = tmp_path_factory.mktemp("hard")
    (root / "imgs").mkdir()
    (root / "xml").mkdir()
    for i, stem in enumerate(["a", "b", BAD]):
        write_image(root / "imgs" / f"{stem}.jpg", seed=i)
        (root / "xml" / f"{stem}.xml").write_text(
            f"<annotation><size><width>48</width><height>40</height></size><object>"
            f"<name>{WNIDS[i]}</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>30</xmax>"
            "<ymax>33</ymax></bndbox></object></annotation>"
        )
    (root / "classes.txt").write_text("".join(f"{w} class{i}\n" for i, w in enumerate(WNIDS)))
    torch.manual_seed(0)
    torch.save(build_model("small-gap", 3).state_dict(), root / "weights.pth")
    return root


def model_args(fake: Path, weights: Path | None = None) -> list:
    weights = weights or fake / "weights.pth"
    return ["--arch", "small-gap", "--weights", weights, "--classes", fake / "classes.txt",
            "--workers", "0", "--no-fast", "--quiet"]  # fmt: skip


# --- 1. names that are not UTF-8 --------------------------------------------------------------


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
    assert report["images"] == 2 and report["top1_loc_error"] == one["top1_loc_error"]


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
    assert csv.exit_code == 0 and "bad\\xff.jpg" in csv.stdout


def test_eval_per_image_resume_and_predictions_with_a_non_utf8_name(fake, tmp_path):
    per_image = tmp_path / "per.jsonl"
    args = ["eval", *model_args(fake), "--images", fake / "imgs", "--annotations", fake / "xml"]
    first = invoke(*args, "--per-image", per_image, "--json", tmp_path / "1.json")
    assert first.exit_code == 0, first.output
    lines = per_image.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["image_id"] == "bad\\xff"
    again = invoke(*args, "--per-image", per_image, "--json", tmp_path / "2.json")
    assert again.exit_code == 0, again.output
    one, two = (json.loads((tmp_path / n).read_text()) for n in ("1.json", "2.json"))
    assert two["resumed_images"] == 3 and two["top1_loc_error"] == one["top1_loc_error"]
    # the escaped records of bbox match their annotations back
    boxes = invoke("bbox", *model_args(fake), "--images", fake / "imgs")
    scored = invoke("eval", "--predictions", "-", "--annotations", fake / "xml",
                    "--json", tmp_path / "p.json", input=boxes.stdout)  # fmt: skip
    assert scored.exit_code == 0, scored.output
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["images"] == 3 and report["top1_loc_error"] == one["top1_loc_error"]


def test_cam_with_a_non_utf8_name(fake, tmp_path):
    result = invoke("cam", *model_args(fake), "--images", fake / "imgs", "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "c").glob("*.png"))) == 3


# --- 2. outputs never overwrite inputs --------------------------------------------------------


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
    assert ann.read_text().startswith("ImageId") and preds.read_text() == ""


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


# --- 4. a run folder is locked ----------------------------------------------------------------


def test_train_run_folder_locked_by_another_process(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from cam_cli.files.lock import FolderLock; "
         f"FolderLock({str(run)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == b"held"
        data = tmp_path / "data"
        for c in ("a", "b"):
            (data / "train" / c).mkdir(parents=True)
            write_image(data / "train" / c / "1.jpg")
        result = invoke("train", "--data", data, "--out", run, "--arch", "small-gap")
        one_line_error(result, str(run), f"in use by another run (PID {holder.pid})")
        assert not (run / "config.toml").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the dead holder's lock is taken over, and released at the end
    with FolderLock(run):
        assert (run / LOCK_NAME).read_text().strip() == str(os.getpid())
    FolderLock(run).acquire()  # free again


# --- 5 and 6. checked up front: one line, exit 2 ----------------------------------------------


@pytest.mark.parametrize("size", ["0", "5", "100000"])
def test_input_size_out_of_range(fake, size, tmp_path):
    for command in (["bbox"], ["cam", "--out", tmp_path / "c"]):
        result = invoke(*command, *model_args(fake), "--images", fake / "imgs",
                        "--input-size", size)  # fmt: skip
        one_line_error(result, f"--input-size {size}")
    result = invoke("eval", *model_args(fake), "--images", fake / "imgs", "--annotations",
                    fake / "xml", "--input-size", size)  # fmt: skip
    one_line_error(result, "--input-size")
    result = invoke("train", "--data", tmp_path, "--out", tmp_path / "r", "--image-size", size)
    one_line_error(result, f"--image-size {size}")
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()


def _checkpoint(fake: Path, path: Path, **changes) -> Path:
    data = {
        "format": CHECKPOINT_FORMAT, "arch": "small-gap",
        "classes": [{"index": i, "wnid": w, "name": w} for i, w in enumerate(WNIDS)],
        "model": torch.load(fake / "weights.pth", weights_only=True),
        "preprocessing": IMAGENET.to_dict(), "input_size": 64,
    }  # fmt: skip
    data.update(changes)
    for key in [k for k, v in data.items() if v is None]:
        del data[key]
    torch.save(data, path)
    return path


@pytest.mark.parametrize(
    "changes, words",
    [({"arch": "no-such-net"}, "no-such-net"), ({"arch": None}, "arch"),
     ({"classes": "abc"}, "damaged"), ({"classes": [{"wnid": "x"}]}, "damaged"),
     # issue 19 (8, 9): tracebacks or per-image ZeroDivisionErrors before
     ({"preprocessing": {**IMAGENET.to_dict(), "mean": [0.5, 0.5]}}, "mean must be 3"),
     ({"model": [1, 2]}, "its weights are a list, not a state_dict"),
     ({"classes": []}, "its class list is empty"),
     ({"input_size": 0}, "its input_size 0: must be between 32 and 4096"),
     ({"input_size": -5}, "its input_size -5: must be between 32 and 4096"),
     ({"input_size": 100000}, "its input_size 100000: must be between 32 and 4096")],
)  # fmt: skip
def test_broken_checkpoints(fake, tmp_path, changes, words):
    checkpoint = _checkpoint(fake, tmp_path / "c.pt", **changes)
    result = invoke("bbox", "--checkpoint", checkpoint, "--images", fake / "imgs", "-q")
    one_line_error(result, "c.pt", words)


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


@pytest.mark.parametrize(
    "record, words",
    [({"path": "a.jpg", "width": 48, "height": 40, "predictions": "x"}, "not a list"),
     ({"path": "a.jpg", "width": 48, "height": 40, "predictions": [1]}, "not an object"),
     ({"path": "a.jpg", "width": 48, "height": 40,
       "predictions": [{"class_index": "0", "box": [1, 2, 3, 4]}]}, "class_index"),
     ({"path": "a.jpg", "width": 48, "height": 40,
       "predictions": [{"class_index": 0, "box": [1, 2]}]}, "'box' of 4 integers")],
)  # fmt: skip
def test_malformed_prediction_records(fake, record, words):
    result = invoke("eval", "--predictions", "-", "--annotations", fake / "xml",
                    "--allow-missing", input=json.dumps(record) + "\n")  # fmt: skip
    one_line_error(result, "<stdin>:1", words)


# --- 7. NaN scores ----------------------------------------------------------------------------


def test_nan_weights_give_error_records_and_exit_1(fake, tmp_path):
    state = torch.load(fake / "weights.pth", weights_only=True)
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
             for k, v in state.items()}  # fmt: skip
    torch.save(state, tmp_path / "nan.pth")
    out = tmp_path / "o.jsonl"
    args = model_args(fake, tmp_path / "nan.pth")
    result = invoke("bbox", *args, "--images", fake / "imgs", "--output", out)
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]  # strict JSON
    assert len(records) == 3
    assert all(r["error"] == "non-finite scores (NaN) from the model" for r in records)
    assert "3 of 3 images failed" in result.stderr and "NaN" not in out.read_text().replace(
        "(NaN)", ""
    )
    evaluated = invoke("eval", *args, "--images", fake / "imgs", "--annotations", fake / "xml",
                       "--json", tmp_path / "r.json",
                       "--per-image", tmp_path / "p.jsonl")  # fmt: skip
    assert evaluated.exit_code == 1, evaluated.output
    assert json.loads((tmp_path / "r.json").read_text())["failed_images"] == 3
    for line in (tmp_path / "p.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    # the ranked rules and ten-crop build their records in the same loop: flagged alike
    for extra in (["--box-rule", "zhou2016"], ["--ten-crop"]):
        ranked = tmp_path / f"ranked{len(extra[-1])}.jsonl"
        result = invoke("bbox", *args, *extra, "--images", fake / "imgs", "--output", ranked)
        assert result.exit_code == 1, result.output
        records = [json.loads(line) for line in ranked.read_text().splitlines()]
        assert all(r["error"] == "non-finite scores (NaN) from the model" for r in records)


# --- 8. a folder without images ---------------------------------------------------------------


def test_images_folder_without_images(fake, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    result = invoke("bbox", *model_args(fake), "--images", tmp_path / "empty")
    one_line_error(result, f"no images found in {tmp_path / 'empty'}")
    missing = invoke("bbox", *model_args(fake), "--images", tmp_path / "gone.jpg")
    assert missing.exit_code == 1 and '"error": "no such file or directory"' in missing.stdout


# --- 9. smaller -------------------------------------------------------------------------------


def test_head_closing_the_pipe_is_not_an_error(fake, tmp_path):
    images = tmp_path / "many"
    images.mkdir()
    for i in range(40):
        write_image(images / f"{i:03d}.jpg", seed=i, size=(32, 32))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "cam_cli", "bbox", *map(str, model_args(fake)),
               "--images", str(images), "--batch-size", "1"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, stderr
    assert json.loads(first)["path"].endswith("000.jpg")
    assert stderr == "", stderr


def test_gt_boxes_outside_the_image_are_clipped_with_a_note(fake, tmp_path):
    ann = tmp_path / "ann.csv"
    ann.write_text(f"ImageId,PredictionString\na,{WNIDS[0]} 2 3 300 33\n")
    record = {"path": "a.jpg", "width": 48, "height": 40, "predictions": [
        {"rank": 1, "class_index": 0, "wnid": WNIDS[0], "name": "x", "score": 0.9,
         "box": [2, 3, 47, 33]}]}  # fmt: skip
    result = invoke("eval", "--predictions", "-", "--annotations", ann, "--json", "-",
                    input=json.dumps(record) + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "a ground-truth box reaches outside the 48x40 image; clipped" in result.stderr
    assert json.loads(result.stdout)["top1_loc_error"] == 0.0


def test_empty_class_folder_is_not_a_class(tmp_path):
    from cam_cli.training.data import scan_train_dir

    for name in ("a", "b", "c"):
        (tmp_path / "train" / name).mkdir(parents=True)
    write_image(tmp_path / "train" / "a" / "1.jpg")
    write_image(tmp_path / "train" / "c" / "1.jpg")
    classes, items, notes = scan_train_dir(tmp_path)
    assert [c.wnid for c in classes] == ["a", "c"] and [i for _, i in items] == [0, 1]
    assert any("has no images; skipped" in note for note in notes)


def test_bom_in_classes_file(tmp_path):
    from cam_cli.data.classes import read_synset_mapping

    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeffn01440764 tench\nn01751748 sea snake\n".encode())
    assert read_synset_mapping(path)[0].wnid == "n01440764"


def test_weights_files_that_are_empty_fifos_or_pickles(fake, tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    base = ["bbox", "--arch", "small-gap", "--images", fake / "imgs", "-q", "--weights"]
    one_line_error(invoke(*base, empty), "empty file (0 bytes)")
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    one_line_error(invoke(*base, fifo), "not a regular file")

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    result = invoke(*base, tmp_path / "evil.pth")
    one_line_error(result, "cannot be loaded safely")
    assert "weights_only" not in result.stderr and not (tmp_path / "pwned").exists()
    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    result = invoke(*base, tmp_path / "garbage.pth")
    one_line_error(result, "not a loadable weights file")
    assert "weights_only" not in result.stderr


def test_state_dicts_with_an_int_key_or_no_classes(fake, tmp_path):
    """Issue 19 (9): an int key was an AttributeError traceback, a classifier of 0 rows a
    RuntimeError on the first image."""
    weights = torch.load(fake / "weights.pth", weights_only=True)
    torch.save({**weights, 3: torch.zeros(1)}, tmp_path / "int.pth")
    torch.save({k: v[:0] if v.shape[:1] == (3,) else v for k, v in weights.items()},
               tmp_path / "zero.pth")  # fmt: skip
    base = ["bbox", "--arch", "small-gap", "--images", fake / "imgs", "-q", "--weights"]
    one_line_error(invoke(*base, tmp_path / "int.pth"), "int.pth", "the key 3 is not a string")
    one_line_error(invoke(*base, tmp_path / "zero.pth"), "zero.pth", "has 0 classes")


def test_closed_stdout_is_one_line_and_exit_2(fake):
    """Issue 19 (9): ``cam-cli bbox ... >&-`` was an AttributeError traceback (Python has no
    sys.stdout then)."""
    proc = run_cli("bbox", *model_args(fake), "--images", fake / "imgs",
                   preexec_fn=lambda: os.close(1))  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.decode().strip() == (
        "cam-cli: error: stdout is closed: give --output FILE, or let stdout be written"
    )


def test_workers_are_capped(caplog):
    """Issue 19 (9): ``workers = 1000`` would start a thousand DataLoader processes."""
    top = max_workers()
    assert top == max(8, 2 * os.cpu_count()) and max_workers(64) == 128
    with caplog.at_level("INFO", logger="cam_cli"):
        assert bounded_workers(1000, "workers") == top
        assert bounded_workers(top) == top and bounded_workers(0) == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"note: workers 1000 capped to {top} (at most 2 per CPU core, or 8)"
    ]


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


def test_fifo_image_is_not_an_empty_file(fake, tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    result = invoke("bbox", *model_args(fake), "--images", tmp_path / "pipe.jpg")
    assert result.exit_code == 1 and "not a regular file (a FIFO)" in result.stdout


def test_stale_temp_files_of_dead_processes_are_cleaned_where_outputs_go(tmp_path):
    stale = temp_path(tmp_path / "o.jsonl")
    stale.write_text("half")  # its writer is gone: nobody holds its lock
    with atomic_file(tmp_path / "o.jsonl") as handle:
        handle.write("{}\n")
    assert not stale.exists()


def test_the_clean_up_never_deletes_a_users_file_that_looks_like_an_old_temp(fake, tmp_path):
    """Issue 19.4: any ``.*.tmp-N`` whose PID N was not alive here was deleted, so a user's
    file (or a live run's temp file in another PID namespace or on another NFS node) went."""
    out = tmp_path / "kb2"
    out.mkdir()
    notes = out / ".notes.tmp-999999"
    notes.write_text("precious\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    other_node = out / f".out.jsonl.tmp-{dead.pid}"  # the old form, a PID not alive here
    other_node.write_text("a live run elsewhere\n")
    result = invoke("bbox", *model_args(fake), "--images", fake / "imgs", "-o", out / "out.jsonl")
    assert result.exit_code == 0, result.output
    assert notes.read_text() == "precious\n" and other_node.exists()


def test_output_to_dev_null_is_written_not_replaced(fake):
    import stat

    result = invoke("bbox", *model_args(fake), "--images", fake / "imgs", "--output", os.devnull)
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
