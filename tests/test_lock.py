"""One writer at a time (`files.lock`): a run folder locked by another process is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import REPO, invoke, one_line_error, write_image

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
