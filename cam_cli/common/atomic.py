"""Writing files so that a reader never sees half of one and a crash never destroys one.

Every file the tool writes goes through `atomic_file`: the data goes to a temp file in the
target's own folder (same file system, so the rename is atomic), is flushed and fsynced, and is
renamed over the target only when complete. ``kill -9`` at any moment leaves either the old file
or the new one. The temp names follow one pattern, ``.NAME.tmp-PID``, so
`remove_stale_temp_files` can clear what a killed process left behind; `atomic_file` does so
for each folder it writes to, once per process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

TEMP_MARK = ".tmp-"


def temp_path(path: str | Path) -> Path:
    """Where the content of ``path`` is written before the rename."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open ``path`` for writing (``"w"``: UTF-8 text, ``"wb"``: bytes) through a temp file
    that replaces it only when the block ends without an exception.

    A target that exists and is not a regular file (``/dev/null``, a FIFO, a terminal) is
    written directly: renaming over it would replace the device or the pipe with a file.
    """
    path = Path(path)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    if path.exists() and not path.is_file() and not path.is_dir():
        with named_errors(path), open(path, mode, **text) as stream:
            yield stream
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    tmp = temp_path(path)
    handle = open(tmp, mode, **text)  # noqa: SIM115 (closed below, on both paths)
    try:
        with named_errors(path):
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):  # a full disk fails the close's flush again: still remove it
            handle.close()
        tmp.unlink(missing_ok=True)
        raise


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


def write_bytes_atomic(data: bytes, path: str | Path) -> None:
    with atomic_file(path, "wb") as handle:
        handle.write(data)


def write_text_atomic(text: str, path: str | Path) -> None:
    with atomic_file(path, "w") as handle:
        handle.write(text)


def save_torch_atomic(obj: Any, path: str | Path) -> None:
    """`torch.save` through `atomic_file`: a checkpoint is complete or absent, never torn."""
    import torch

    with atomic_file(path, "wb") as handle:
        torch.save(obj, handle)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


_cleaned: set[Path] = set()


def _clean_once(folder: Path) -> None:
    """`remove_stale_temp_files` for a folder this process writes to, the first time only
    (a `cam` run writes thousands of files into one folder)."""
    key = folder.resolve()
    if key not in _cleaned:
        _cleaned.add(key)
        with suppress(OSError):  # cleaning is a courtesy; the write reports real problems
            remove_stale_temp_files(key)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temp files of writes whose process is gone; returns what was removed.

    Their targets are intact (the rename never happened), so nothing is lost. Temp files of a
    live process (another run writing into the same folder) are left alone.
    """
    removed = []
    for candidate in Path(folder).glob(f".*{TEMP_MARK}*"):
        pid = candidate.name.rpartition(TEMP_MARK)[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed
