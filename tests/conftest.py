"""Shared fixtures. Real ImageNet data lives in ../shared (beside the repository); tests that
need it skip with a reason when it is absent, so a bare clone still passes."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE = SHARED / "data" / "ilsvrc2012-val-sample"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2-imagenet.pth"
SQUEEZENET_WEIGHTS = SHARED / "weights" / "squeezenet1_1-imagenet-caffe.pth"


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
