"""Writing files so that a reader never sees half of one and a crash never destroys one.

Every file the tool writes goes through `atomic_file`: the data goes to a temp file in the
target's own folder (same file system, so the rename is atomic), is flushed and fsynced, and is
renamed over the target only when complete. ``kill -9`` at any moment leaves either the old file
or the new one.

A temp file is named ``.NAME.cam-cli-tmp-TOKEN`` (TOKEN: 16 random hex digits, so two writers,
whatever their machine or PID namespace, never share a name; no other file ends so, whatever
NAME is: a map of ``.dot.JPEG`` is ``.dot.JPEG.npy``, its temp ``.dot.JPEG.npy.cam-cli-tmp-...``),
and its writer holds an exclusive lock (`descriptors.try_lock`: ``flock``) on it from its
creation until it is renamed. The kernel (or the NFS lock manager)
drops that lock when the writer ends, however it ends. `remove_stale_temp_files` deletes only
files whose name has exactly that form AND whose lock it can take without waiting: a writer
that is provably gone. Anything else (``.notes.tmp-999999``, a live run's temp file on another
NFS node or in another container) is never touched. `atomic_file` clears each folder it writes
to once per process.

Names come in two kinds. A name the user gave (`output`, `json_report`) that exists and is not
a regular file (``/dev/null``, a FIFO, a terminal) is written directly: the user asked for it.
A name the tool derives (``derived=True``: a score map, an overlay, a `draw` picture, a
run folder's ``best.pt``, a metadata file) never is: whatever sits there that is not a regular
file (a FIFO, a symlink to ``/dev/null``, a device) is replaced, the directory entry itself, by
the rename, so nothing is written through it and nothing waits on it; a directory there is
refused. A full disk is said of the file (``OSError`` ENOSPC with its name), also where the
writer (NumPy's ``tofile``) reported only a short write.

On Windows, where an open file cannot be renamed, the temp file is closed before its rename,
and stale temp files are left alone (an unlocked one may be about to be renamed).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from cam_cli.files.descriptors import BINARY, CLOEXEC, NOFOLLOW, NONBLOCK, POSIX, lock, try_lock

TEMP_MARK = ".cam-cli-tmp-"
_TEMP_NAME = re.compile(r"\..+\.cam-cli-tmp-[0-9a-f]{16}", re.DOTALL)

_live: set[str] = set()  # names of the temp files this process is writing (tokens: unique)
_live_guard = threading.Lock()


def temp_path(path: str | Path) -> Path:
    """A fresh temp name for the content of ``path``, beside it (a new token on each call)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{secrets.token_hex(8)}")


def is_temp_name(name: str) -> bool:
    """Is ``name`` exactly the form `temp_path` gives (the only files the clean-up touches)?"""
    return _TEMP_NAME.fullmatch(name) is not None


def _open_locked_temp(path: Path) -> tuple[Path, int]:
    """Create a new temp file for ``path`` and hold its lock. A clean-up that locked the file
    in the instant between its creation and our lock may have deleted it: then take another."""
    while True:
        tmp = temp_path(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | CLOEXEC | BINARY, 0o666)
        with suppress(OSError):  # a file system without locks: no clean-up can take it either
            lock(fd)
        if os.fstat(fd).st_nlink > 0:
            with _live_guard:
                _live.add(tmp.name)
            return tmp, fd
        os.close(fd)


def _forget(tmp: Path) -> None:
    with _live_guard:
        _live.discard(tmp.name)


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", *, derived: bool = False) -> Iterator[IO[Any]]:
    """Open ``path`` for writing (``"w"``: UTF-8 text, ``"wb"``: bytes) through a temp file
    that replaces it only when the block ends without an exception.

    ``derived=False`` (a name the user gave): a target that exists and is not a regular file
    (``/dev/null``, a FIFO, a terminal) is written directly, as asked. ``derived=True`` (a name
    the tool made up): such an entry is replaced by the rename, never written through; a
    directory there is an `IsADirectoryError` naming it (module docstring).
    """
    path = Path(path)
    # bytes: no encoding, no newline translation (the defaults); text: UTF-8, written as given
    encoding, newline = (None, None) if "b" in mode else ("utf-8", "")
    if derived:
        _check_derived(path)
    elif path.exists() and not path.is_file() and not path.is_dir():
        with named_errors(path), open(path, mode, encoding=encoding, newline=newline) as stream:
            yield stream
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    tmp, fd = _open_locked_temp(path)
    try:
        handle = os.fdopen(fd, mode, encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        _forget(tmp)
        raise
    try:
        with named_errors(path):
            try:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as error:
                raise _said_of_full_disk(error, handle.fileno()) from None
        if not POSIX:  # Windows renames no open file
            handle.close()
        os.replace(tmp, path)  # still locked: a clean-up never sees an unlocked, complete temp
        handle.close()
    except BaseException as error:
        with suppress(OSError):  # a full disk fails the close's flush again: still remove it
            handle.close()
        tmp.unlink(missing_ok=True)
        full = _write_failure(error)
        if full is not None:  # "No space left on device" said of the file, not of nothing
            raise OSError(full.errno, full.strerror, str(path)) from None
        raise
    finally:
        _forget(tmp)


def _check_derived(path: Path) -> None:
    """A derived name may be replaced whatever it is, but a folder: refused, naming it."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))


def _said_of_full_disk(error: OSError, fd: int) -> OSError:
    """A write error that names no cause (NumPy's ``tofile``: "50176 requested and 26096
    written") on a file system with no free block left: the ENOSPC it was."""
    if error.errno is not None or not hasattr(os, "fstatvfs"):
        return error
    try:
        free = os.fstatvfs(fd)
    except OSError:
        return error
    if free.f_bavail == 0 or free.f_bfree == 0:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return error


_WRITE_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def _write_failure(error: BaseException | None) -> OSError | None:
    """The disk-full (quota, file-size limit, I/O) error behind a failed write, if that is what
    it was: raised as it is by a write, or as the context of torch.save's own RuntimeError
    (``inline_container.cc: unexpected pos``), which names neither the cause nor the file."""
    seen = 0
    while error is not None and seen < 4:
        if isinstance(error, OSError) and error.errno in _WRITE_FAILURES:
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


@contextmanager
def named_errors(name: str | os.PathLike) -> Iterator[None]:
    """An OS error that names no file (a ``write`` that fails with "No space left on device"
    or "File too large") raised again naming ``name``, so its one line says which output
    failed. Errors that name their file, and a closed pipe (the reader has gone), pass as
    they are."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, os.fspath(name)) from None


def write_bytes_atomic(data: bytes, path: str | Path, *, derived: bool = False) -> None:
    with atomic_file(path, "wb", derived=derived) as handle:
        handle.write(data)


def write_text_atomic(text: str, path: str | Path, *, derived: bool = False) -> None:
    with atomic_file(path, "w", derived=derived) as handle:
        handle.write(text)


def save_torch_atomic(obj: Any, path: str | Path, *, derived: bool = False) -> None:
    """`torch.save` through `atomic_file`: a checkpoint is complete or absent, never torn."""
    import torch

    with atomic_file(path, "wb", derived=derived) as handle:
        torch.save(obj, handle)


_cleaned: set[Path] = set()


def _clean_once(folder: Path) -> None:
    """`remove_stale_temp_files` for a folder this process writes to, the first time only
    (a `cam` run writes thousands of files into one folder)."""
    key = folder.resolve()
    if key not in _cleaned:
        _cleaned.add(key)
        with suppress(OSError):  # cleaning is a courtesy; the write reports real problems
            remove_stale_temp_files(key)


def _remove_if_abandoned(candidate: Path) -> bool:
    """Delete one temp file if its writer is gone: a regular file (links are not followed)
    whose lock we take without waiting, still under its name when we hold the lock."""
    try:
        fd = os.open(candidate, os.O_RDONLY | NOFOLLOW | NONBLOCK | CLOEXEC)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a FIFO, a device, a folder: never ours
            return False
        try:
            if not try_lock(fd):  # held: a live writer
                return False
        except OSError:  # no locks here: nothing is proven
            return False
        now = os.lstat(candidate)  # the writer may have renamed it into place meanwhile
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            return False
        candidate.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # drops our lock


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temp files of writes whose writer is gone; returns what was removed.

    Their targets are intact (the rename never happened), so nothing is lost. Only names of
    `temp_path`'s exact form are looked at, and of those only files whose lock is free (their
    writer ended, on whatever machine); this process's own are skipped.
    """
    removed: list[Path] = []
    if not POSIX:  # an unlocked temp file may be one about to be renamed (module docstring)
        return removed
    for candidate in sorted(Path(folder).glob(f".*{TEMP_MARK}*")):
        if not is_temp_name(candidate.name):
            continue
        with _live_guard:
            if candidate.name in _live:
                continue
        if _remove_if_abandoned(candidate):
            removed.append(candidate)
    return removed
