"""One writer at a time: `train --out` (a run folder) and `eval --per-image` (a resumable file)
are locked while a run writes them.

The lock is ``fcntl.flock`` on a lock file that holds the writer's PID: ``FOLDER/.cam-cli.lock``
for a folder, ``.NAME.cam-cli.lock`` beside a file. The kernel drops it when the process ends,
however it ends (``kill -9`` included), so the lock of a dead process is simply taken over; the
lock file itself stays (removing it would race).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from cam_cli.errors import SetupError
from cam_cli.files.checks import printable_path

LOCK_NAME = ".cam-cli.lock"
FILE_LOCK_SUFFIX = ".cam-cli.lock"


def file_lock_path(path: str | Path) -> Path:
    """Where the lock of the file ``path`` lives: ``.NAME.cam-cli.lock`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}{FILE_LOCK_SUFFIX}")


class _Lock:
    def __init__(self, target: Path, lock_file: Path, option: str) -> None:
        self.target = target
        self.lock_file = lock_file
        self.option = option
        self._fd: int | None = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise SetupError(
                f"{self.option} {printable_path(self.target)}: in use by another run (PID "
                f"{holder}); wait for it to end, or choose another {self.option}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class FolderLock(_Lock):
    """A run folder (`train --out`), locked through ``FOLDER/.cam-cli.lock``."""

    def __init__(self, folder: str | Path, option: str = "--out") -> None:
        super().__init__(Path(folder), Path(folder) / LOCK_NAME, option)
        self.folder = self.target


class FileLock(_Lock):
    """A file appended to by one run (`eval --per-image`), locked through
    ``.NAME.cam-cli.lock`` beside it (the file itself may not exist yet, or be replaced)."""

    def __init__(self, path: str | Path, option: str = "--per-image") -> None:
        super().__init__(Path(path), file_lock_path(path), option)
