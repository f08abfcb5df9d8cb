"""`torchrun --nproc_per_node=2 -m cam_cli bbox|cam|eval` on the CPU (gloo) against one process:
the same files byte for byte, the same report, rank 0's exit code the single process's, and
nothing from the other rank on stdout.

The images: 8 synthetic val images, one that is not an image, a second image with the stem of
the first (output names must be made unique in input order) and a PNG of another size; a
seeded, untrained small-gap network. Batches are small and the counts uneven, so the ranks take
several steps and one rank sends an empty last step. Each torchrun costs a few seconds of
start-up; the single-process runs go through the CLI in this process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from conftest import invoke
from PIL import Image

from cam_cli.models.registry import build_model
from cam_cli.synthetic.dataset import generate_dataset

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)

REPO = Path(__file__).resolve().parents[1]
WORLD = 2
BAD = "ILSVRC2012_val_00000009"  # in val/ and in the annotations, but not an image


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards") / "data"
    generate_dataset(root, num_classes=3, train_per_class=1, val_images=8, seed=0)
    (root / "val" / f"{BAD}.JPEG").write_bytes(b"not an image")
    xml = (root / "annotations" / "ILSVRC2012_val_00000001.xml").read_text()
    (root / "annotations" / f"{BAD}.xml").write_text(xml.replace("00000001", BAD[-8:]))
    (root / "more").mkdir()
    shutil.copy(root / "val" / "ILSVRC2012_val_00000002.JPEG", root / "more")  # a stem again
    pixels = np.random.default_rng(5).integers(0, 255, (50, 90, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "more" / "wide.png")
    torch.manual_seed(0)
    torch.save(build_model("small-gap", 3).state_dict(), root / "weights.pth")
    return root


def model_args(data: Path) -> list:
    return ["--arch", "small-gap", "--weights", data / "weights.pth", "--classes",
            data / "LOC_synset_mapping.txt", "--no-fast", "--workers", "0", "-q",
            "--device", "cpu"]  # fmt: skip


def images(data: Path) -> list:
    """11 inputs: at batch 5, rank 0 runs 6 images in 2 steps, rank 1 5 images in 1 (+1 empty)."""
    return ["--images", data / "val", "--images", data / "more", "--batch-size", 5]


def torchrun(*args, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc_per_node={WORLD}", "-m", "cam_cli", *map(str, args)],
        input=input, capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip


def rank_exit_codes(run: subprocess.CompletedProcess) -> dict[int, int]:
    """Each rank's exit code, read from torchrun's failure report (which lists the ranks that
    did not exit 0; torchrun itself then exits 1, whatever their codes)."""
    found = re.findall(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)",
                       run.stderr)  # fmt: skip
    codes = {rank: 0 for rank in range(WORLD)}
    codes.update({int(rank): int(code) for rank, code in found})
    assert (run.returncode == 0) == (set(codes.values()) == {0}), run.stderr[-3000:]
    return codes


def assert_same_exit(run: subprocess.CompletedProcess, single_exit_code: int) -> None:
    """Rank 0 ends the run with the single process's code; the other ranks with 0 (a non-zero
    exit would make torchrun stop rank 0 while it writes). When rank 0 exits 1 (some images
    failed), after every file is written, torchrun may stop a rank that is still exiting
    (SIGTERM, -15): a race between two exits, nothing lost."""
    codes = rank_exit_codes(run)
    assert codes[0] == single_exit_code, run.stderr[-3000:]
    allowed = {0} if single_exit_code == 0 else {0, -15}
    assert codes[1] in allowed, run.stderr[-3000:]


def assert_usage_error(run: subprocess.CompletedProcess) -> None:
    """Every rank exits 2 (torchrun may stop one that is still exiting: SIGTERM), no output."""
    codes = rank_exit_codes(run)
    assert 2 in codes.values(), run.stderr[-3000:]
    assert set(codes.values()) <= {2, -15}, run.stderr[-3000:]
    assert run.stdout == ""


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_bbox_jsonl_and_drawings_match_one_process(data, tmp_path):
    args = ["bbox", *model_args(data), *images(data), "--topk", 2]
    single = invoke(*args, "--draw", tmp_path / "one")
    sharded = torchrun(*args, "--draw", tmp_path / "two")
    assert single.exit_code == 1  # the file that is not an image
    assert not dist.is_initialized()  # one process makes no process group
    assert_same_exit(sharded, single.exit_code)
    # byte for byte but the folder each record's "drawing" names, and nothing from rank 1
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert sharded.stdout.count(two) == 10
    assert sharded.stdout.replace(two, one) == single.stdout
    assert len(sharded.stdout.splitlines()) == 11
    assert f"{BAD}.JPEG" in sharded.stdout
    drawn = files(tmp_path / "two")
    assert drawn == files(tmp_path / "one")
    assert len(drawn) == 10
    assert "ILSVRC2012_val_00000002-2_boxes.png" in drawn
    assert sharded.stderr.count(f"{BAD}.JPEG: not an image") == 1  # named once, by rank 0
    assert sharded.stderr.count("1 of 11 images failed") == 1


@pytest.mark.slow
def test_bbox_csv_from_stdin_matches_one_process(data, tmp_path):
    """Paths on stdin: rank 0 alone reads them, and tells the other rank."""
    listed = "".join(
        f"{p}\n" for folder in ("val", "more") for p in sorted((data / folder).iterdir())
    )
    args = ["bbox", *model_args(data), "--images", "-", "--batch-size", 3, "--format", "csv"]
    single = invoke(*args, "--output", tmp_path / "one.csv", input=listed)
    sharded = torchrun(*args, "--output", tmp_path / "two.csv", input=listed)
    assert_same_exit(sharded, single.exit_code)
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    rows = (tmp_path / "one.csv").read_text().splitlines()
    assert sharded.stdout == ""
    assert len(rows) == 1 + 10 * 3 + 1


@pytest.mark.slow
def test_cam_overlays_and_maps_match_one_process(data, tmp_path):
    args = ["cam", *model_args(data), *images(data), "--topk", 2, "--npy", "both"]
    single = invoke(*args, "--out", tmp_path / "one")
    sharded = torchrun(*args, "--out", tmp_path / "two")
    assert_same_exit(sharded, single.exit_code)
    written = files(tmp_path / "two")
    assert written == files(tmp_path / "one")
    assert len(written) == 10 * 2 * 3  # 10 images, 2 classes, a PNG and two maps each
    assert sum(name.startswith("ILSVRC2012_val_00000002-2_rank1_") for name in written) == 3
    assert sharded.stdout == ""


def eval_args(data: Path, out: Path, *extra) -> list:
    return ["eval", *model_args(data), "--images", data / "val", "--annotations",
            data / "annotations", "--batch-size", 2, "--maxboxacc", "--per-image",
            out / "per_image.jsonl", "--json", out / "report.json", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def one_process_eval(data, tmp_path_factory) -> tuple[Path, int, str]:
    """The single-process eval: its folder, exit code and table."""
    out = tmp_path_factory.mktemp("one_eval")
    result = invoke(*eval_args(data, out))
    assert result.exit_code == 1, result.output  # the file that is not an image
    return out, result.exit_code, result.stdout


@pytest.mark.slow
def test_eval_report_and_per_image_match_one_process(data, tmp_path, one_process_eval):
    one, exit_code, table = one_process_eval
    sharded = torchrun(*eval_args(data, tmp_path))
    assert_same_exit(sharded, exit_code)
    assert sharded.stdout == table
    for name in ("report.json", "per_image.jsonl"):
        assert (tmp_path / name).read_bytes() == (one / name).read_bytes(), name
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["images"] == 9
    assert report["failed_images"] == 1
    assert report["maxboxacc_v2"]["images"] == 9


@pytest.mark.slow
def test_interrupted_per_image_file_resumes_under_torchrun(data, tmp_path, one_process_eval):
    one, exit_code, _ = one_process_eval
    full = (one / "per_image.jsonl").read_bytes()
    lines = full.splitlines(keepends=True)
    log = tmp_path / "per_image.jsonl"  # 3 lines, then a line torn by the crash
    log.write_bytes(b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2])

    sharded = torchrun(*eval_args(data, tmp_path))
    assert_same_exit(sharded, exit_code)
    assert log.read_bytes() == full  # the torn line cut, and the 6 other images run again
    report = json.loads((tmp_path / "report.json").read_text())
    want = json.loads((one / "report.json").read_text())
    assert report["resumed_images"] == 3
    assert {**report, "resumed_images": 0} == want

    # The other rank hears of a file of other settings from rank 0, and both stop alike.
    other = torchrun(*eval_args(data, tmp_path, "--threshold", 0.3))
    assert_usage_error(other)
    assert other.stderr.count("was written by an evaluation with other settings") == 1
    assert log.read_bytes() == full


@pytest.mark.slow
def test_a_usage_error_is_printed_once_and_every_rank_exits_2(data):
    """click's own, found before any process group; one found with the group up (a file of
    other settings, told by rank 0) is in the resume test above."""
    sharded = torchrun("bbox", *model_args(data), *images(data), "--topk", 0)
    assert sharded.stderr.count("Invalid value for '--topk'") == 1, sharded.stderr[-3000:]
    assert_usage_error(sharded)
