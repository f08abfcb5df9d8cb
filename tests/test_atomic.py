"""The one atomic writer: a target is the old file or the new one, never half of either."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from cam_cli.common.atomic import (
    atomic_file,
    remove_stale_temp_files,
    temp_path,
    write_bytes_atomic,
    write_text_atomic,
)


def test_the_temp_file_sits_beside_the_target_and_names_the_process(tmp_path):
    target = tmp_path / "boxes.jsonl"
    assert temp_path(target) == tmp_path / f".boxes.jsonl.tmp-{os.getpid()}"


def test_an_error_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic("old\n", target)
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_the_target_appears_only_when_complete(tmp_path):
    target = tmp_path / "sub" / "out.bin"  # missing folders are made
    with atomic_file(target, "wb") as handle:
        handle.write(b"abc")
        assert not target.exists() and temp_path(target).exists()
    assert target.read_bytes() == b"abc" and not temp_path(target).exists()
    write_bytes_atomic(b"xyz", target)
    assert target.read_bytes() == b"xyz"


def test_stale_temp_files_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".last.pt.tmp-{dead.stdout.strip()}"
    stale.write_bytes(b"PK half a checkpoint")
    mine = temp_path(tmp_path / "best.pt")  # this (live) process is writing it
    mine.write_bytes(b"in progress")
    parent = tmp_path / f".metrics.jsonl.tmp-{os.getppid()}"  # a live process too
    parent.write_text("x")
    keep = tmp_path / "last.pt"
    keep.write_bytes(b"good")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, parent.name, keep.name])


def test_a_device_or_a_pipe_is_written_directly_never_replaced(tmp_path):
    """`--output /dev/null` (benchmarks) or a named pipe: renaming a temp file over it would
    put a regular file where the device was."""
    import stat

    with atomic_file(os.devnull) as handle:
        handle.write("discarded\n")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert not list(tmp_path.iterdir())


def test_a_full_disk_names_the_output():
    with pytest.raises(OSError) as failed, atomic_file("/dev/full") as handle:
        handle.write("x" * 10_000)
    assert (failed.value.errno, failed.value.filename) == (errno.ENOSPC, "/dev/full")
    assert str(failed.value) == "[Errno 28] No space left on device: '/dev/full'"


def test_a_file_size_limit_names_the_output_and_leaves_no_temp_file(tmp_path):
    import resource

    (tmp_path / "out.jsonl").write_text("old\n")
    script = (
        "import sys\nfrom cam_cli.common.atomic import atomic_file\n"
        "try:\n    with atomic_file(sys.argv[1]) as f:\n        f.write('x' * 100_000)\n"
        "except OSError as e:\n    print(e.errno, e.filename, e.strerror)\n"
    )

    def limit() -> None:  # Python ignores SIGXFSZ, so the write fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.jsonl")],
                          preexec_fn=limit, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.stdout == f"{errno.EFBIG} {tmp_path / 'out.jsonl'} File too large\n", proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    assert (tmp_path / "out.jsonl").read_text() == "old\n"


def test_stdout_on_a_full_disk_is_named(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(4))
    with open("/dev/full", "w") as full:
        command = [sys.executable, "-m", "cam_cli", "boxes", str(tmp_path / "m.npy")]
        proc = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "cam-cli: error: <stdout>: No space left on device\n"
