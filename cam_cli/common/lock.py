"""A folder held by one writer at a time: `train --out` is locked while a run writes it.

The lock is ``fcntl.flock`` on ``FOLDER/.cam-cli.lock``, which holds the writer's PID. The
kernel drops it when the process ends, however it ends (``kill -9`` included), so the lock of a
dead process is simply taken over; the file itself stays (removing it would race).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from cam_cli.errors import SetupError

LOCK_NAME = ".cam-cli.lock"


class FolderLock:
    def __init__(self, folder: str | Path, option: str = "--out") -> None:
        self.folder = Path(folder)
        self.option = option
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise SetupError(
                f"{self.option} {self.folder}: in use by another run (PID {holder}); wait for "
                f"it to end, or choose another {self.option}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
