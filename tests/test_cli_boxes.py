"""`cam-cli boxes` as a user runs it, and its agreement with `cam-cli bbox` on real images."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from PIL import Image

from tests.test_cli import mobilenet_args, run

EXAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "zhou2016-bboxgenerator"
REAL = ("ILSVRC2012_val_00000363.JPEG",)


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.slow
def test_boxes_of_npy_maps_jsonl_csv_and_bad_inputs(tmp_path):
    cam = np.zeros((20, 30), dtype=np.float32)
    cam[2:5, 3:6] = 1.0
    cam[10:16, 12:20] = 0.8
    folder = tmp_path / "maps"
    folder.mkdir()
    np.save(folder / "a.npy", cam)
    np.save(folder / "b.npy", np.stack([cam, cam[::-1]]))
    Image.fromarray((cam * 255).astype(np.uint8)).save(folder / "c.png")
    (folder / "d.npy").write_bytes(b"")
    (folder / "notes.txt").write_text("not a map")  # not walked
    missing = str(tmp_path / "missing.npy")
    result = run("boxes", str(folder), missing, "--box-rule", "all-components")
    assert result.returncode == 1
    records = _records(result.stdout)
    assert [r["path"].rsplit("/", 1)[-1] for r in records] == [
        "a.npy", "b.npy", "b.npy", "c.png", "d.npy", "missing.npy"]  # fmt: skip
    assert records[0] == {"path": str(folder / "a.npy"), "width": 30, "height": 20,
                          "boxes": [[12, 10, 19, 15], [3, 2, 5, 4]]}  # fmt: skip
    assert records[1]["map"] == 0
    assert records[2]["map"] == 1
    assert records[2]["boxes"][0] == [12, 4, 19, 9]  # flipped rows
    assert records[3]["boxes"] == records[0]["boxes"]  # the grey image of the same map
    assert "error" in records[4]
    assert records[5]["error"] == "no such file or directory"
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"cam-cli: {folder / 'd.npy'}: ") for line in lines)
    assert lines[-1] == "cam-cli: 2 of 5 files failed"

    sized = run("boxes", str(folder / "a.npy"), "--size", "60x40", "--format", "csv")
    assert sized.returncode == 0
    rows = list(csv.DictReader(io.StringIO(sized.stdout)))
    assert [(r["width"], r["height"], r["rank"], r["xmin"], r["ymin"], r["xmax"], r["ymax"])
            for r in rows] == [("60", "40", "1", "24", "20", "39", "31")]  # fmt: skip
    out = tmp_path / "out.jsonl"
    assert run("boxes", str(folder / "a.npy"), "-o", str(out)).returncode == 0
    assert _records(out.read_text())[0]["boxes"] == [[12, 10, 19, 15]]


@pytest.mark.slow
def test_boxes_usage_errors_exit_2(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 3)))
    assert run("boxes").returncode == 2  # nothing given
    for args in (["--size", "12"], ["--box-rule", "largest"], ["--upsample", "0"],
                 ["--size", "4x4", "--reference", str(tmp_path / "a.npy")],
                 ["--reference", str(tmp_path / "none.jpg")]):  # fmt: skip
        result = run("boxes", str(tmp_path / "a.npy"), *args)
        assert result.returncode == 2, args
        assert result.stderr.strip().count("\n") <= 3


@pytest.mark.slow
def test_boxes_names_that_are_not_utf8_escaped_one_to_one(tmp_path):
    """Issue 19 (7): a name with the byte 0xFF and one literally called ``m\\xff.npy`` give
    two different paths, in JSON Lines (file and strict UTF-8 stdout) and CSV, as `bbox` does."""
    import os
    import subprocess
    import sys

    cam = np.zeros((14, 14), dtype=np.float32)
    cam[3:7, 4:9] = 1.0
    folder = tmp_path / "bx"
    folder.mkdir()
    for name in (b"m\xff.npy", b"m\\xff.npy"):
        with open(os.path.join(os.fsencode(folder), name), "wb") as handle:
            np.save(handle, cam)
    out = tmp_path / "o.jsonl"
    result = invoke("boxes", folder, "-o", out)
    assert result.exit_code == 0, result.output
    records = _records(out.read_text(encoding="utf-8"))
    assert [Path(r["path"]).name for r in records] == ["m\\x5cxff.npy", "m\\xff.npy"]
    assert all(r["boxes"] == [[4, 3, 8, 6]] for r in records)
    proc = subprocess.run([sys.executable, "-m", "cam_cli", "boxes", str(folder)],
                          capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode("utf-8") == out.read_text(encoding="utf-8")  # no raw 0xFF
    rows = list(csv.reader(io.StringIO(invoke("boxes", folder, "--format", "csv").stdout)))
    assert [Path(row[0]).name for row in rows[1:]] == ["m\\x5cxff.npy", "m\\xff.npy"]


def test_boxes_never_opens_a_fifo(tmp_path):
    """Issue 19 (10): a FIFO as a map or as --reference is refused as `bbox` refuses it,
    never opened (which would wait for a writer forever)."""
    import os
    import signal

    def hung(*_):
        raise TimeoutError("boxes opened the FIFO and waits for a writer")

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)  # a fail, not a hang, where a FIFO is opened
    os.mkfifo(tmp_path / "fifo.npy")
    os.mkfifo(tmp_path / "fifo.jpg")
    np.save(tmp_path / "a.npy", np.ones((3, 3)))
    result = invoke("boxes", tmp_path / "fifo.npy")
    assert result.exit_code == 1
    assert _records(result.stdout) == [{"path": str(tmp_path / "fifo.npy"),
                                        "error": "not a regular file (a FIFO)"}]  # fmt: skip
    result = invoke("boxes", tmp_path / "a.npy", "--reference", tmp_path / "fifo.jpg")
    assert result.exit_code == 2
    assert "fifo.jpg" in result.stderr
    assert "not a regular file (a FIFO)" in result.stderr
    assert result.stdout == ""
    signal.alarm(0)


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--upsample", "100000"], "--upsample 100000: must be between 1 and 4096"),
     (["--size", "60000x60000"], "--size 60000x60000: 3600000000 pixels exceeds the limit"),
     (["--size", "99999999999999999999x2"], "--size 99999999999999999999x2")],
)  # fmt: skip
def test_boxes_sizes_out_of_range_exit_2(tmp_path, args, words):
    """Issue 19 (8): no 100000 x 100000 map is allocated, no box overflows int64."""
    np.save(tmp_path / "a.npy", np.ones((3, 3)))
    result = invoke("boxes", tmp_path / "a.npy", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cam-cli: error: ")
    assert words in lines[0]


@pytest.mark.slow
@pytest.mark.shared
def test_boxes_reproduces_the_released_example():
    heatmap = EXAMPLE / "heatmap_6.jpg"
    if not heatmap.exists():
        pytest.skip(f"{heatmap} not present (the ../shared folder beside the repository)")
    result = run("boxes", "--box-rule", "zhou2016", str(heatmap))
    assert result.returncode == 0
    # EXPECTED.txt: 41 145 362 202 102 188 242 126 (x y w h)
    assert _records(result.stdout)[0]["boxes"] == [[41, 145, 402, 346], [102, 188, 343, 313]]


@pytest.fixture(scope="module")
def written_maps(sample_dir, mobilenet_weights, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cams")
    images = [str(sample_dir / "val" / name) for name in REAL]
    result = run("cam", "--images", *images, *mobilenet_args(sample_dir, mobilenet_weights),
                 "--no-fast", "--npy", "both", "--out", str(out), "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def _bbox(sample_dir, weights, image: Path, wnid: str, *extra: str) -> dict:
    result = run("bbox", "--images", str(image), *mobilenet_args(sample_dir, weights),
                 "--no-fast", "--class", wnid, "-q", *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return _records(result.stdout)[0]["predictions"][0]


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL)
def test_boxes_on_cam_npy_gives_bboxs_box(name, written_maps, sample_dir, mobilenet_weights):
    """Must stay true: `boxes` on what `cam --npy` wrote gives `bbox`'s box for that image and
    class. `bbox` boxes the CAM upsampled to the input size (224) and scales the box to the
    image, so the paper rule's exact counterpart is the .feature.npy with --upsample 224 and
    the image's size; with --box-rule zhou2016 `bbox` boxes the CAM resized to the image's
    own size, which is what .image.npy holds."""
    image = sample_dir / "val" / name
    feature = next(written_maps.glob(f"{Path(name).stem}_rank1_*.feature.npy"))
    full = feature.with_name(feature.name.replace(".feature.npy", ".image.npy"))
    wnid = feature.name.split("_rank1_")[1].split("-")[0]

    paper = _bbox(sample_dir, mobilenet_weights, image, wnid)
    result = run("boxes", "--upsample", "224", "--reference", str(image), str(feature))
    assert result.returncode == 0, result.stderr
    assert _records(result.stdout)[0]["boxes"] == [paper["box"]]

    released = _bbox(sample_dir, mobilenet_weights, image, wnid, "--box-rule", "zhou2016")
    for source, extra in ((full, []), (feature, ["--reference", str(image)])):
        result = run("boxes", "--box-rule", "zhou2016", *extra, str(source))
        assert result.returncode == 0, result.stderr
        assert _records(result.stdout)[0]["boxes"] == released["boxes"]
    assert released["box"] == released["boxes"][0]


@pytest.mark.slow
def test_ten_crop_and_rules_leave_the_default_records_alone(sample_dir, mobilenet_weights):
    image = sample_dir / "val" / REAL[0]
    base = ["bbox", "--images", str(image), *mobilenet_args(sample_dir, mobilenet_weights),
            "--no-fast", "--topk", "2", "-q"]  # fmt: skip
    default = run(*base)
    assert default.returncode == 0
    assert '"boxes"' not in default.stdout
    assert default.stdout == run(*base, "--box-rule", "paper").stdout
    ten = _records(run(*base, "--ten-crop").stdout)[0]
    assert "boxes" not in ten["predictions"][0]
    assert ten["width"] == 227
    ranked = _records(run(*base, "--ten-crop", "--box-rule", "zhou2016").stdout)[0]
    assert [p["class_index"] for p in ranked["predictions"]] == [
        p["class_index"] for p in ten["predictions"]
    ]
    assert all(p["box"] == p["boxes"][0] for p in ranked["predictions"])


def test_boxes_box_step_torch_gives_scipys_records(tmp_path):
    """--box-step torch boxes each file's maps in one call on the device: the same records as
    scipy's, for float32 and float64 stacks, a grey image, and in an image's pixels."""
    rng = np.random.default_rng(5)
    base = np.zeros((3, 29, 41), dtype=np.float32)
    base[0, 2:9, 3:11], base[0, 15:27, 20:38] = 1.0, 0.9  # two blobs, the larger wins
    base[1, 4:8, 30:40] = base[1, 20:24, 1:11] = 1.0  # a tie: the first in raster order
    base[2] = rng.random((29, 41))  # noise
    np.save(tmp_path / "a.npy", base)
    np.save(tmp_path / "b.npy", base[2].astype(np.float64) ** 3)
    np.save(tmp_path / "c.npy", np.ones((7, 5), dtype=np.float32))  # constant: whole map
    Image.fromarray((base[0] * 255).astype(np.uint8)).save(tmp_path / "d.png")
    for extra in ([], ["--size", "300x200"], ["--upsample", "64"]):
        scipy = invoke("boxes", tmp_path, "--box-step", "scipy", *extra)
        torch_step = invoke("boxes", tmp_path, "--box-step", "torch", "--device", "cpu", *extra)
        assert scipy.exit_code == torch_step.exit_code == 0, extra
        assert torch_step.stdout == scipy.stdout, extra
    records = _records(scipy.stdout)
    assert len(records) == 6


def test_boxes_box_step_that_cannot_run_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    np.save(tmp_path / "a.npy", np.ones((3, 3), dtype=np.float32))
    result = invoke("boxes", tmp_path / "a.npy", "--box-step", "triton", "--device", "cpu")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--box-step triton: cannot run on cpu" in result.stderr
