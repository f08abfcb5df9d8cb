"""The commands as a user runs them: real processes, real images, real weights (when present)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from PIL import Image

CLI = [sys.executable, "-m", "cam_cli"]
SUBSET = 12


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def images(sample_dir, tmp_path_factory) -> Path:
    """The first images of the real sample, plus a bad file of every kind, in one folder."""
    folder = tmp_path_factory.mktemp("images")
    for path in sorted((sample_dir / "val").iterdir())[:SUBSET]:
        (folder / path.name).symlink_to(path)
    (folder / "zz_empty.jpg").write_bytes(b"")
    (folder / "zz_text.JPEG").write_text("not an image")
    data = (sample_dir / "val" / "ILSVRC2012_val_00000363.JPEG").read_bytes()
    (folder / "zz_truncated.jpg").write_bytes(data[: len(data) // 3])
    return folder


@pytest.fixture(scope="module")
def truth(sample_dir) -> dict[str, str]:
    with open(sample_dir / "LOC_val_solution.csv") as handle:
        return {r["ImageId"]: r["PredictionString"].split()[0] for r in csv.DictReader(handle)}


def mobilenet_args(sample_dir, weights) -> list[str]:
    return ["--arch", "mobilenet_v2", "--weights", str(weights),
            "--classes", str(sample_dir / "LOC_synset_mapping.txt"), "--workers", "1"]  # fmt: skip


def test_help_is_fast_because_torch_is_not_imported():
    code = "import sys, cam_cli.cli.main; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    result = run("bbox", "--help")
    assert result.returncode == 0
    assert "--topk" in result.stdout
    assert "Example" in result.stdout


def test_version_prints_the_package_version_without_torch():
    from cam_cli import __version__

    code = (
        "import sys; sys.argv = ['cam-cli', '--version']\n"
        "from cam_cli.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"cam-cli {__version__}\n"
    assert __version__.count(".") == 2
    assert all(p.isdigit() for p in __version__.split("."))


@pytest.mark.slow
def test_bbox_on_real_images_with_bad_files(images, truth, sample_dir, mobilenet_weights, tmp_path):
    draw = tmp_path / "draw"
    result = run("bbox", "--images", str(images), *mobilenet_args(sample_dir, mobilenet_weights),
                 "--topk", "5", "--draw", str(draw))  # fmt: skip
    assert result.returncode == 1, result.stderr  # some inputs failed
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == SUBSET + 3  # nothing lost, in input (sorted) order
    good, bad = records[:SUBSET], records[SUBSET:]
    assert all(
        "truncated" in r["error"] or "image" in r["error"] or "empty" in r["error"] for r in bad
    )
    for record in bad:
        assert f"{record['path']}: " in result.stderr  # one line naming file and reason
    assert "3 of 15 images failed" in result.stderr
    right = 0
    for record in good:
        assert (record["width"], record["height"]) == (227, 227)
        predictions = record["predictions"]
        assert [p["rank"] for p in predictions] == [1, 2, 3, 4, 5]
        assert predictions[0]["score"] >= predictions[1]["score"]
        for p in predictions:
            x0, y0, x1, y1 = p["box"]
            assert 0 <= x0 <= x1 <= 226
            assert 0 <= y0 <= y1 <= 226
            assert p["wnid"].startswith("n")
            assert p["name"]
        right += predictions[0]["wnid"] == truth[Path(record["path"]).stem]
    assert right >= SUBSET * 0.6  # ~80% top-1 on the full sample
    assert len(list(draw.glob("*_boxes.png"))) == SUBSET


@pytest.mark.slow
def test_bbox_reads_paths_from_stdin_and_writes_csv(
    images, sample_dir, mobilenet_weights, tmp_path
):
    paths = sorted(str(p) for p in images.iterdir() if not p.name.startswith("zz"))[:3]
    out = tmp_path / "boxes.csv"
    result = run("bbox", "--images", "-", *mobilenet_args(sample_dir, mobilenet_weights),
                 "--topk", "2", "--format", "csv", "--output", str(out),
                 stdin="\n".join(paths) + "\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["path"], r["rank"]) for r in rows] == [(p, k) for p in paths for k in ("1", "2")]
    assert not list(tmp_path.glob(".*tmp*"))  # the temp file was renamed into place


@pytest.mark.slow
def test_squeezenet_caffe_weights(images, truth, sample_dir, squeezenet_weights):
    mapping = str(sample_dir / "LOC_synset_mapping.txt")
    result = run("bbox", "--images", str(images), "--arch", "squeezenet1_1",
                 "--weights", str(squeezenet_weights), "--normalize", "caffe",
                 "--classes", mapping, "--topk", "1")  # fmt: skip
    records = [json.loads(line) for line in result.stdout.splitlines()]
    good = [r for r in records if "predictions" in r]
    right = sum(r["predictions"][0]["wnid"] == truth[Path(r["path"]).stem] for r in good)
    assert len(good) == SUBSET
    assert right >= SUBSET * 0.5


@pytest.mark.slow
def test_cam_writes_overlays_and_maps(images, sample_dir, mobilenet_weights, tmp_path):
    image = images / "ILSVRC2012_val_00000363.JPEG"
    before = image.read_bytes()
    out = tmp_path / "cams"
    result = run("cam", "--images", str(image), *mobilenet_args(sample_dir, mobilenet_weights),
                 "--topk", "2", "--npy", "both", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names[0] == "ILSVRC2012_val_00000363_rank1_n02011460-bittern.feature.npy"
    assert len(names) == 6  # 2 classes x (png, feature.npy, image.npy)
    feature = np.load(out / names[0])
    full = np.load(out / "ILSVRC2012_val_00000363_rank1_n02011460-bittern.image.npy")
    assert feature.shape == (7, 7)
    assert full.shape == (227, 227)
    assert Image.open(out / "ILSVRC2012_val_00000363_rank1_n02011460-bittern.png").size == (
        227,
        227,
    )
    assert image.read_bytes() == before


@pytest.mark.slow
def test_usage_errors_exit_2(tmp_path):
    assert run("bbox", "--arch", "mobilenet_v2").returncode == 2  # no images
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    unknown = run("bbox", "--images", str(image), "--arch", "nonet")
    assert unknown.returncode == 2
    assert "unknown architecture" in unknown.stderr
    assert (
        run("bbox", "--images", str(image), "--arch", "resnet18", "--format", "xml").returncode == 2
    )
    assert run("bbox", "--images", str(image), "--topk", "0").returncode == 2


def test_cam_writer_renders_in_a_worker_and_reports_errors_at_write(tmp_path):
    from cam_cli.inference.results import ImageResult, Prediction
    from cam_cli.outputs.cam_files import CamWriter, RenderedCams

    picture = tmp_path / "img.png"
    Image.fromarray(np.full((30, 40, 3), 100, np.uint8)).save(picture)
    writer = CamWriter(tmp_path / "out", [str(picture)])
    cam = np.arange(12, dtype=np.float32).reshape(3, 4)
    good = ImageResult(str(picture), 40, 30, [Prediction(1, 3, None, "cat", 0.9, [0, 0, 1, 1])])
    good.cams = cam[None]
    writer.render(good)  # as localize's finish does, in a lane
    assert isinstance(good.analysis, RenderedCams)
    assert good.analysis.size == (40, 30)
    (written,) = writer.write(good)
    assert written.name == "img_rank1_cat.png"
    assert Image.open(written).size == (40, 30)

    gone = ImageResult(str(tmp_path / "gone.png"), 40, 30, good.predictions)
    gone.cams = cam[None]
    writer.render(gone)  # kept, not raised: a lane must not stop the run
    assert isinstance(gone.analysis, ValueError | OSError)
    with pytest.raises((ValueError, OSError), match="gone.png|No such file|not found"):
        writer.write(gone)


def test_empty_stdin_is_a_usage_error():
    for command in (["bbox", "--arch", "small-gap", "--images", "-"], ["boxes", "--maps", "-"]):
        result = invoke(*command, "-q", input="\n  \n")
        assert result.exit_code == 2, result.output
        assert result.stderr == "cam-cli: error: '-' (paths on stdin): stdin gave no paths\n"
        assert result.stdout == ""


def test_quiet_hides_progress_messages_but_keeps_notes_and_problems(capsys):
    import logging

    from cam_cli.cli.options import configure_logging

    log = logging.getLogger("cam_cli.test")
    for quiet in (False, True):
        configure_logging(quiet)
        log.info("resuming: 3 of 5 images already scored")
        log.info("note: %s: a ground-truth box reaches outside the image; clipped", "a")
        log.warning("b.jpg: truncated")
        progress = [] if quiet else ["cam-cli: resuming: 3 of 5 images already scored"]
        assert capsys.readouterr().err.splitlines() == [
            *progress,
            "cam-cli: note: a: a ground-truth box reaches outside the image; clipped",
            "cam-cli: b.jpg: truncated",
        ]
    configure_logging(False)


def test_quiet_eval_still_says_a_box_was_clipped(tmp_path):
    ann = tmp_path / "ann.csv"
    ann.write_text("ImageId,PredictionString\na,n01440764 2 3 300 33\n")
    record = {"path": "a.jpg", "width": 48, "height": 40, "predictions": [
        {"rank": 1, "class_index": 0, "wnid": "n01440764", "name": "x", "score": 0.9,
         "box": [2, 3, 47, 33]}]}  # fmt: skip
    result = invoke("eval", "--predictions", "-", "--annotations", ann, "-q",
                     input=json.dumps(record) + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "cam-cli: note: a: a ground-truth box reaches outside the 48x40 image; clipped to it\n"
    )


@pytest.mark.slow
def test_models_into_a_closed_pipe_exits_0():
    read, write = os.pipe()
    os.close(read)  # closed before the table is written: EPIPE every time, not half the time
    proc = subprocess.run([*CLI, "models"], stdout=write, stderr=subprocess.PIPE, timeout=120)
    os.close(write)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"", proc.stderr


def test_control_characters_in_file_names_are_escaped_on_stderr(tmp_path, capsys):
    import logging

    from cam_cli.cli.options import configure_logging

    configure_logging(True)
    logging.getLogger("cam_cli.test").warning("%s: truncated", "a\x1b[2J\x9b1mb\rc.jpg")
    assert capsys.readouterr().err == "cam-cli: a\\x1b[2J\\x9b1mb\\x0dc.jpg: truncated\n"
    configure_logging(False)
    result = invoke("boxes", tmp_path / "m.npy", "--reference", tmp_path / "x\x1b]0;owned\x07.png")
    assert result.exit_code == 2
    assert result.stderr.startswith("cam-cli: error: ")
    assert "\x1b" not in result.stderr
    assert "x\\x1b]0;owned\\x07.png: cannot read the image's size" in result.stderr


def test_an_untrained_model_says_so_on_stderr_even_with_quiet(tmp_path):
    Image.new("RGB", (40, 30), (10, 200, 10)).save(tmp_path / "a.png")
    result = invoke("bbox", "--arch", "small-gap", "--images", tmp_path / "a.png", "-q",
                     "--topk", "1", "--no-fast")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "cam-cli: note: --arch small-gap without --weights or --checkpoint: its parameters are "
        "random (untrained), so its classes, scores and boxes mean nothing\n"
    )
    assert len(json.loads(result.stdout)["predictions"]) == 1
