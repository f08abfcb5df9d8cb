"""One writer at a time (`files.lock`): a run folder locked by another process is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO, invoke, one_line_error, write_image

from cam_cli.errors import SetupError
from cam_cli.files.lock import LOCK_NAME, FolderLock


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


def test_two_runs_writing_one_score_map_folder_are_locked_out(fake, tmp_path):
    from conftest import model_args

    maps = tmp_path / "maps"
    with FolderLock(maps, "--out"):  # another run holds the folder (flock: per open file)
        result = invoke("eval", *model_args(fake), "--images", fake / "imgs", "--annotations",
                        fake / "xml", "--maxboxacc", "--save-scoremaps", maps)  # fmt: skip
    one_line_error(result, f"--save-scoremaps {maps}: in use by another run (PID {os.getpid()})")
    assert not list(maps.rglob("*.npy"))
    result = invoke("eval", *model_args(fake), "--images", fake / "imgs", "--annotations",
                    fake / "xml", "--maxboxacc", "--save-scoremaps", maps)  # fmt: skip
    assert result.exit_code == 0, result.output  # free again: the maps are written
    assert len(list(maps.rglob("*.npy"))) == 3


def test_a_lock_file_that_is_a_fifo_or_a_symlink_is_refused_never_opened(tmp_path):
    import time

    from conftest import fifo, takes_under

    run = tmp_path / "run"
    run.mkdir()
    with fifo(run / LOCK_NAME):
        started = time.monotonic()
        with pytest.raises(SetupError, match=r"its lock file .*\.cam-cli\.lock is not a regular"):
            FolderLock(run).acquire()
        takes_under(5, started)
    (run / LOCK_NAME).unlink()
    precious = tmp_path / "precious.txt"
    precious.write_text("keep\n")
    (run / LOCK_NAME).symlink_to(precious)
    with pytest.raises(SetupError, match=r"its lock file .*\.cam-cli\.lock is a symlink"):
        FolderLock(run).acquire()
    assert precious.read_text() == "keep\n"  # never truncated to hold a PID
