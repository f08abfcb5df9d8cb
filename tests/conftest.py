"""Shared fixtures and helpers. Real ImageNet data lives in ../shared (beside the repository);
tests that need it skip with a reason when it is absent, so a bare clone still passes.

The helpers below are plain functions (tests import them: ``from conftest import invoke``):
`invoke` runs the CLI in this process, `run_cli` in a real process; `write_xml` writes one
annotation file in ILSVRC's exact layout; `fake` is a seeded small-gap model with a few tiny
images, one of them named with a byte that is not UTF-8.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cam_cli.cli.main import app
from cam_cli.models.registry import build_model

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE = SHARED / "data" / "ilsvrc2012-val-sample"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2-imagenet.pth"
SQUEEZENET_WEIGHTS = SHARED / "weights" / "squeezenet1_1-imagenet-caffe.pth"
# The fixtures that need ../shared: a test that asks for one is marked `shared`.
SHARED_FIXTURES = {"sample_dir", "mobilenet_weights", "squeezenet_weights"}

WNIDS = ["n01440764", "n01751748", "n02119789"]
BAD = os.fsdecode(b"bad\xff")  # a file name that is not valid UTF-8 (surrogate-escaped)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SHARED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (the ../shared folder beside the repository)")
    return path


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return _require(SAMPLE)


@pytest.fixture(scope="session")
def mobilenet_weights() -> Path:
    return _require(MOBILENET_WEIGHTS)


@pytest.fixture(scope="session")
def squeezenet_weights() -> Path:
    return _require(SQUEEZENET_WEIGHTS)


# The devices a torch path is checked on: the CPU always, CUDA where there is one (marked
# `gpu`, so scripts/device_check.sh selects these with -m gpu).
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
        ],
    ),
]


# --- running the CLI --------------------------------------------------------------------------


def invoke(*args, input: str | None = None):
    """`cam-cli ARGS` in this process: typer's result (exit_code, stdout, stderr, output)."""
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def run_cli(*args, env_extra=None, **kwargs) -> subprocess.CompletedProcess:
    """`python -m cam_cli ARGS` in a real process (bytes out; names that are not UTF-8 pass)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "cam_cli", *[os.fsencode(str(a)) for a in args]],
        capture_output=True, env=env, timeout=300, **kwargs,
    )  # fmt: skip


def model_report(loaded, images, annotations, *, classes=None, run=None, **metrics) -> dict:
    """The JSON report of a loaded model over in-memory annotations (`api.evaluate` with a
    `GroundTruth`): ``metrics`` are `MetricOptions`' fields, or ``save_scoremaps``."""
    from cam_cli.data.ground_truth import GroundTruth
    from cam_cli.eval_options import EvalOptions, MetricOptions, OutputOptions, SourceOptions
    from cam_cli.evaluation.evaluate import evaluate
    from cam_cli.settings import RunOptions

    outputs = OutputOptions(save_scoremaps=metrics.pop("save_scoremaps", None))
    options = EvalOptions(
        truth=GroundTruth(annotations, images, classes),
        source=SourceOptions(model=loaded, run=run or RunOptions()),
        metrics=MetricOptions(**metrics),
        outputs=outputs,
    )
    return evaluate(options).to_json()


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cam-cli: error: "), result.stderr
    for part in parts:
        assert part in lines[0], lines[0]


# --- files ------------------------------------------------------------------------------------

# The exact layout of ILSVRC2012_bbox_val_v3 XML (tabs, field order), as in the shared sample.
XML_TEMPLATE = """<annotation>
\t<folder>val</folder>
\t<filename>{image_id}</filename>
\t<source>
\t\t<database>ILSVRC_2012</database>
\t</source>
\t<size>
\t\t<width>{width}</width>
\t\t<height>{height}</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
{objects}</annotation>
"""
OBJECT_TEMPLATE = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>{xmin}</xmin>
\t\t\t<ymin>{ymin}</ymin>
\t\t\t<xmax>{xmax}</xmax>
\t\t\t<ymax>{ymax}</ymax>
\t\t</bndbox>
\t</object>
"""


def write_xml(path: Path, width: int, height: int, objects: list[tuple[str, tuple]]) -> Path:
    """One ILSVRC annotation file: an image of width x height with (wnid, box) objects."""
    body = "".join(
        OBJECT_TEMPLATE.format(name=name, xmin=b[0], ymin=b[1], xmax=b[2], ymax=b[3])
        for name, b in objects
    )
    # <filename> is for a reader's eye only (the readers take the file's own name), so a name
    # that is not UTF-8 is written escaped
    image_id = path.stem.encode("utf-8", "backslashreplace").decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        XML_TEMPLATE.format(image_id=image_id, width=width, height=height, objects=body)
    )
    return path


def write_image(path: Path | str, seed=0, size=(48, 40)) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG" if str(path).endswith(".png") else "JPEG")


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Path:
    """imgs/ (three JPEGs, one named bad\\xff.jpg), xml/, classes.txt, weights.pth."""
    root = tmp_path_factory.mktemp("hard")
    (root / "imgs").mkdir()
    (root / "xml").mkdir()
    for i, stem in enumerate(["a", "b", BAD]):
        write_image(root / "imgs" / f"{stem}.jpg", seed=i)
        write_xml(root / "xml" / f"{stem}.xml", 48, 40, [(WNIDS[i], (2, 3, 30, 33))])
    (root / "classes.txt").write_text("".join(f"{w} class{i}\n" for i, w in enumerate(WNIDS)))
    torch.manual_seed(0)
    torch.save(build_model("small-gap", 3).state_dict(), root / "weights.pth")
    return root


def model_args(fake: Path, weights: Path | None = None) -> list:
    weights = weights or fake / "weights.pth"
    return ["--arch", "small-gap", "--weights", weights, "--classes", fake / "classes.txt",
            "--workers", "0", "--no-fast", "--quiet"]  # fmt: skip


# --- FIFOs ------------------------------------------------------------------------------------


@contextmanager
def fifo(path: Path, release_after: float = 20.0) -> Iterator[Path]:
    """A FIFO at ``path`` for a test of its refusal (or its replacement): should the code under
    test block on it (what the fix prevents), it is released after ``release_after`` seconds (a
    blocked reader gets a writer that closes at once, a blocked writer a reader that drains
    it), so the test fails instead of hanging forever."""
    os.mkfifo(path)
    done = threading.Event()

    def release() -> None:
        while not done.wait(release_after):
            try:
                if not stat.S_ISFIFO(os.lstat(path).st_mode):
                    return  # replaced: nothing can block on it
            except OSError:
                return
            with suppress(OSError):  # succeeds only while a reader has it open: the one blocked
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            end = time.monotonic() + 5
            while time.monotonic() < end:  # a blocked writer opens, writes and closes
                try:
                    if os.read(reader, 1 << 16) == b"" and time.monotonic() > end - 4:
                        break
                except BlockingIOError:
                    time.sleep(0.01)
            os.close(reader)

    helper = threading.Thread(target=release, daemon=True)
    helper.start()
    try:
        yield path
    finally:
        done.set()


def takes_under(seconds: float, started: float) -> None:
    """A refusal that must come at once: well before a `fifo`'s release."""
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.1f} s: it waited on the FIFO"


def write_own_checkpoint(path: Path, names: list[str], arch: str = "small-gap") -> Path:
    """A checkpoint of an own-data model as `train` stores one: classes known by their folder
    names (wnid = name = the folder), random weights (seed 0)."""
    from cam_cli.models.checkpoint_format import CHECKPOINT_FORMAT
    from cam_cli.models.preprocess import IMAGENET

    torch.manual_seed(0)
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "arch": arch,
            "classes": [{"index": i, "wnid": n, "name": n} for i, n in enumerate(names)],
            "model": build_model(arch, len(names)).state_dict(),
            "preprocessing": IMAGENET.to_dict(),
            "input_size": 96,
        },
        path,
    )
    return path
