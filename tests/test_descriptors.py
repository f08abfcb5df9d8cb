"""Locks and open flags from `files.descriptors` (the ``filelock`` package's locks): the package
starts, and its commands write their outputs, where there is no ``fcntl`` (Windows)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from cam_cli.files.descriptors import try_lock, unlock

NO_FCNTL = """
import runpy, sys
sys.modules["fcntl"] = None  # as on Windows: `import fcntl` fails
import cam_cli.api, cam_cli.cli.main  # noqa
for args in (["--help"], ["models"], sys.argv[1:]):
    sys.argv = ["cam-cli", *args]
    try:
        runpy.run_module("cam_cli", run_name="__main__")
    except SystemExit as end:
        print("exit", end.code or 0, file=sys.stderr)
"""


@pytest.mark.slow
def test_the_commands_start_and_write_without_fcntl(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(6)[None])
    out = tmp_path / "boxes.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["boxes", str(tmp_path / "m.npy"), "--output", str(out)]
    ran = subprocess.run([sys.executable, "-c", NO_FCNTL, *args], capture_output=True,
                         text=True, env=env, timeout=300)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert [line for line in ran.stderr.splitlines() if line.startswith("exit")] == ["exit 0"] * 3
    assert out.read_text().count("\n") == 1  # through the atomic writer and its temp lock


def test_a_descriptor_lock_is_exclusive_between_open_files(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"")
    first, second = os.open(path, os.O_RDWR), os.open(path, os.O_RDWR)
    try:
        assert try_lock(first)
        assert not try_lock(second)
        unlock(first)
        assert try_lock(second)
    finally:
        os.close(first)
        os.close(second)
