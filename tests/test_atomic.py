"""The one atomic writer: a target is the old file or the new one, never half of either."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_a_full_disk_is_said_of_the_target_file(tmp_path):
    """Issue 19 (9): ENOSPC from a write, or torch.save's RuntimeError ("inline_container.cc:
    unexpected pos") over it, is an OSError naming the target; no temp file is left."""
    import errno

    target = tmp_path / "last.pt"
    with pytest.raises(OSError) as caught, atomic_file(target, "wb"):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos") from None
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert str(caught.value) == f"[Errno 28] No space left on device: '{target}'"
    with pytest.raises(OSError) as caught, atomic_file(tmp_path / "m.jsonl") as handle:
        handle.write("x")
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    assert caught.value.filename == str(tmp_path / "m.jsonl")
    with pytest.raises(RuntimeError, match="other"), atomic_file(tmp_path / "o.txt"):
        raise RuntimeError("other")  # not a write failure: as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == []
