"""The one atomic writer: a target is the old file or the new one, never half of either."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke, model_args

from cam_cli.files import atomic
from cam_cli.files.atomic import (
    TEMP_MARK,
    atomic_file,
    is_temp_name,
    remove_stale_temp_files,
    temp_path,
    write_bytes_atomic,
    write_text_atomic,
)


def test_the_temp_file_sits_beside_the_target_with_a_marker_and_a_random_token(tmp_path):
    target = tmp_path / "boxes.jsonl"
    first, second = temp_path(target), temp_path(target)
    assert first.parent == tmp_path
    assert first != second
    assert re.fullmatch(r"\.boxes\.jsonl\.cam-cli-tmp-[0-9a-f]{16}", first.name)
    assert is_temp_name(first.name)
    others = [
        ".notes.tmp-999999",
        f".boxes.jsonl.tmp-{os.getpid()}",
        "boxes.jsonl",
        ".x.cam-cli-tmp-0123",
        ".x.cam-cli-tmp-0123456789abcdefg",
        ".cam-cli-tmp-" + "a" * 16,
    ]
    for other in others:
        assert not is_temp_name(other), other


def test_an_error_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic("old\n", target)
    # the body is what the context manager under test wraps (PT012: more than one statement)
    with pytest.raises(RuntimeError), atomic_file(target) as handle:  # noqa: PT012
        handle.write("half of the new")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_the_target_appears_only_when_complete(tmp_path):
    target = tmp_path / "sub" / "out.bin"  # missing folders are made
    with atomic_file(target, "wb") as handle:
        handle.write(b"abc")
        assert not target.exists()
        assert len(temps(target.parent)) == 1
    assert target.read_bytes() == b"abc"
    assert not temps(target.parent)
    write_bytes_atomic(b"xyz", target)
    assert target.read_bytes() == b"xyz"


def temps(folder):
    return sorted(p.name for p in folder.iterdir() if TEMP_MARK in p.name)


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"in progress")
print("held", flush=True)
time.sleep(60)
"""


def test_the_clean_up_deletes_only_its_own_temp_files_whose_writer_is_gone(tmp_path):
    """Only names of the exact temp form whose lock is free; never the user's files, never a
    live writer's (whatever its PID or machine: the lock, not the PID, is the proof)."""
    stale = temp_path(tmp_path / "last.pt")
    stale.write_bytes(b"PK half a checkpoint")  # written, then its writer died: no lock
    live = temp_path(tmp_path / "metrics.jsonl")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(live)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        users = [".notes.tmp-999999", f".last.pt.tmp-{os.getpid() + 10**6}", "last.pt",
                 ".x.cam-cli-tmp-0123", ".y.cam-cli-tmp-0123456789ABCDEF"]  # fmt: skip
        for name in users:
            (tmp_path / name).write_text("precious")
        linked = temp_path(tmp_path / "link")  # a symlink of the temp form: not followed
        linked.symlink_to(tmp_path / "last.pt")
        folder = temp_path(tmp_path / "dir")
        folder.mkdir()
        assert remove_stale_temp_files(tmp_path) == [stale]
        kept = sorted([live.name, linked.name, folder.name, *users])
        assert sorted(p.name for p in tmp_path.iterdir()) == kept
        assert all((tmp_path / name).read_text() == "precious" for name in users)
        assert live.read_bytes() == b"in progress"
    finally:
        holder.kill()
        holder.wait()
    assert remove_stale_temp_files(tmp_path) == [live]  # its writer is gone now


def test_a_temp_file_being_written_by_this_process_is_never_cleaned(tmp_path):
    target = tmp_path / "out.jsonl"
    with atomic_file(target) as handle:
        handle.write("part\n")
        assert remove_stale_temp_files(tmp_path) == []
        with atomic_file(tmp_path / "other.jsonl") as second:  # a second write, same folder
            second.write("x\n")
        handle.write("rest\n")
    assert target.read_text() == "part\nrest\n"
    assert not temps(tmp_path)


KILLED = """
import os, signal, sys
from cam_cli.files.atomic import atomic_file
with atomic_file(sys.argv[1]) as handle:
    handle.write("half of the new")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_mid_write_leaves_the_old_file_and_the_next_write_clears_the_temp(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic("old\n", target)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    killed = subprocess.run([sys.executable, "-c", KILLED, str(target)], env=env, check=False)
    assert killed.returncode == -9
    assert target.read_text() == "old\n"
    (left,) = temps(tmp_path)
    assert (tmp_path / left).read_text() == "half of the new"
    atomic._cleaned.clear()  # noqa: SLF001 - a new process: it clears each folder once
    write_text_atomic("new\n", tmp_path / "another.txt")
    assert not temps(tmp_path)
    assert target.read_text() == "old\n"


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
    with pytest.raises(OSError, match="No space left") as caught, atomic_file(target, "wb"):  # noqa: PT012
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos") from None
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(target)
    assert str(caught.value) == f"[Errno 28] No space left on device: '{target}'"
    with (  # noqa: PT012 - the body is what the context manager under test wraps
        pytest.raises(OSError, match="too large") as caught,
        atomic_file(tmp_path / "m.jsonl") as handle,
    ):
        handle.write("x")
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    assert caught.value.filename == str(tmp_path / "m.jsonl")
    with pytest.raises(RuntimeError, match="other"), atomic_file(tmp_path / "o.txt"):
        raise RuntimeError("other")  # not a write failure: as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_full_disk_names_the_output():
    with (
        pytest.raises(OSError, match="No space left") as failed,
        atomic_file("/dev/full") as handle,
    ):
        handle.write("x" * 10_000)
    assert (failed.value.errno, failed.value.filename) == (errno.ENOSPC, "/dev/full")
    assert str(failed.value) == "[Errno 28] No space left on device: '/dev/full'"


def test_a_file_size_limit_names_the_output_and_leaves_no_temp_file(tmp_path):
    import resource

    (tmp_path / "out.jsonl").write_text("old\n")
    script = (
        "import sys\nfrom cam_cli.files.atomic import atomic_file\n"
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


@pytest.mark.slow
def test_stdout_on_a_full_disk_is_named(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(4))
    with open("/dev/full", "w") as full:
        command = [sys.executable, "-m", "cam_cli", "boxes", str(tmp_path / "m.npy")]
        proc = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "cam-cli: error: <stdout>: No space left on device\n"


# --- moved from test_hardening.py (issue 13: what a careless user or an attacker tries) ---


def test_stale_temp_files_of_dead_processes_are_cleaned_where_outputs_go(tmp_path):
    stale = temp_path(tmp_path / "o.jsonl")
    stale.write_text("half")  # its writer is gone: nobody holds its lock
    with atomic_file(tmp_path / "o.jsonl") as handle:
        handle.write("{}\n")
    assert not stale.exists()


def test_the_clean_up_never_deletes_a_users_file_that_looks_like_an_old_temp(fake, tmp_path):
    """Issue 19.4: any ``.*.tmp-N`` whose PID N was not alive here was deleted, so a user's
    file (or a live run's temp file in another PID namespace or on another NFS node) went."""
    out = tmp_path / "kb2"
    out.mkdir()
    notes = out / ".notes.tmp-999999"
    notes.write_text("precious\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    other_node = out / f".out.jsonl.tmp-{dead.pid}"  # the old form, a PID not alive here
    other_node.write_text("a live run elsewhere\n")
    result = invoke("bbox", *model_args(fake), "--images", fake / "imgs", "-o", out / "out.jsonl")
    assert result.exit_code == 0, result.output
    assert notes.read_text() == "precious\n"
    assert other_node.exists()


def test_output_to_dev_null_is_written_not_replaced(fake):
    import stat

    result = invoke("bbox", *model_args(fake), "--images", fake / "imgs", "--output", os.devnull)
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


# --- names the tool derives: replaced, never written through (issue 25, item 2) ------------


def test_a_derived_name_replaces_a_fifo_or_a_symlink_and_never_writes_through(tmp_path):
    import stat

    from conftest import fifo

    precious = tmp_path / "precious.txt"
    precious.write_text("keep\n")
    (tmp_path / "to-file.npy").symlink_to(precious)
    (tmp_path / "to-null.npy").symlink_to(os.devnull)
    with fifo(tmp_path / "pipe.npy"):
        for name in ("pipe.npy", "to-file.npy", "to-null.npy"):
            write_bytes_atomic(b"map", tmp_path / name, derived=True)
    for name in ("pipe.npy", "to-file.npy", "to-null.npy"):
        entry = os.lstat(tmp_path / name)
        assert stat.S_ISREG(entry.st_mode), name
        assert (tmp_path / name).read_bytes() == b"map"
    assert precious.read_text() == "keep\n"
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_folder_at_a_derived_name_is_refused_by_name(tmp_path):
    (tmp_path / "best.pt").mkdir()
    with pytest.raises(IsADirectoryError) as refused:
        write_bytes_atomic(b"x", tmp_path / "best.pt", derived=True)
    assert refused.value.filename == str(tmp_path / "best.pt")
    assert not temps(tmp_path)


def _scoremap(target):
    from cam_cli.evaluation.scoremap_files import save_scoremap

    save_scoremap(target.parent.parent, "val/x.JPEG", np.zeros((4, 4)))


def _checkpoint(target):
    from cam_cli.training.checkpoints import CheckpointWriter

    CheckpointWriter(target.parent).save({"epoch": 1}, target.name)


def _metrics(target):
    from cam_cli.training.checkpoints import write_metrics

    write_metrics(target.parent, [{"epoch": 1, "loss": 0.5}])


def _metadata(target):
    from cam_cli.data.wsol_metadata import WsolMetadata, write_wsol_metadata

    write_wsol_metadata(WsolMetadata(("val/a.JPEG",), {"val/a.JPEG": 0}), target.parent)


@pytest.mark.parametrize(
    ("write", "name"),
    [
        (_scoremap, "val/x.JPEG.npy"),
        (_checkpoint, "run/best.pt"),
        (_metrics, "run/metrics.jsonl"),
        (_metadata, "meta/image_ids.txt"),
    ],
)
def test_every_derived_writer_replaces_a_fifo_at_its_name(tmp_path, write, name):
    """`eval --save-scoremaps`, `train --out`, `convert DIR`: a FIFO there hung forever."""
    import time

    from conftest import fifo, takes_under

    target = tmp_path / name
    target.parent.mkdir(parents=True)
    with fifo(target):
        started = time.monotonic()
        write(target)
        takes_under(10, started)
    assert target.is_file()
    assert not target.is_symlink()
    assert target.stat().st_size > 0


def test_cam_overlays_and_bbox_drawings_replace_a_fifo_and_a_symlink(fake, tmp_path):
    """`cam --out` and `bbox --draw`: names made from the image's, never written through."""
    import time

    from conftest import fifo, takes_under

    image = fake / "imgs" / "a.jpg"
    first = invoke("cam", *model_args(fake), "--images", image, "--out", tmp_path / "cams")
    assert first.exit_code == 0, first.output
    (overlay,) = (tmp_path / "cams").iterdir()
    overlay.unlink()
    drawing = tmp_path / "draw" / "a_boxes.png"
    drawing.parent.mkdir()
    drawing.symlink_to(os.devnull)
    with fifo(overlay):
        started = time.monotonic()
        cams = invoke("cam", *model_args(fake), "--images", image, "--out", tmp_path / "cams")
        drawn = invoke("bbox", *model_args(fake), "--images", image, "--draw", drawing.parent)
        takes_under(15, started)
    assert cams.exit_code == 0, cams.output + drawn.output
    assert drawn.exit_code == 0, cams.output + drawn.output
    for path in (overlay, drawing):
        assert not path.is_symlink(), path
        assert path.read_bytes().startswith(b"\x89PNG"), path


# --- a full disk, said of the file (issue 25, item 14) ----------------------------------------


def test_a_short_write_without_a_cause_on_a_full_disk_is_enospc_naming_the_file(tmp_path):
    """NumPy's ``tofile`` says only "50176 requested and 26096 written"; the writer asks the
    file system, and says ENOSPC of the map."""
    from types import SimpleNamespace
    from unittest import mock

    target = tmp_path / "val" / "x.JPEG.npy"
    full = SimpleNamespace(f_bavail=0, f_bfree=0)
    full_disk = mock.patch("os.fstatvfs", return_value=full)
    with (
        full_disk,
        pytest.raises(OSError, match="No space left") as failed,
        atomic_file(target, "wb", derived=True),
    ):
        raise OSError("50176 requested and 26096 written")
    assert (failed.value.errno, failed.value.filename) == (errno.ENOSPC, str(target))
    assert not target.exists()
    assert not temps(target.parent)
    free = SimpleNamespace(f_bavail=10, f_bfree=10)  # not full: the error as it was
    free_disk = mock.patch("os.fstatvfs", return_value=free)
    with (
        free_disk,
        pytest.raises(OSError, match="50176 requested") as failed,
        atomic_file(target, "wb"),
    ):
        raise OSError("50176 requested and 26096 written")
    assert failed.value.errno is None
    assert "50176 requested" in str(failed.value)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (root only; skipped elsewhere)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_save_scoremaps_on_a_full_disk_is_one_line_naming_the_map(fake, small_tmpfs):
    """A 224x224 float64 map is 401 KB: the first one fills the 64 KiB disk."""
    maps = small_tmpfs / "maps"
    result = invoke("eval", *model_args(fake), "--images", fake / "imgs", "--annotations",
                    fake / "xml", "--maxboxacc", "--save-scoremaps", maps)  # fmt: skip
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert line.startswith(f"cam-cli: error: {maps}/")
    assert ".npy: No space left on device" in line
    assert not [p for p in maps.rglob("*") if TEMP_MARK in p.name]
