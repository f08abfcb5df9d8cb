"""One writer at a time: `train`'s `out` (a run folder), `eval`'s `save_scoremaps` (a folder of
maps) and `eval`'s `per_image` (a resumable file) are locked while a run writes them.

The lock is an exclusive lock (`descriptors.try_lock`: ``flock`` on POSIX) on a lock file that
holds the writer's PID: ``FOLDER/.cam-cli.lock`` for a folder, ``.NAME.cam-cli.lock`` beside a
file. The kernel drops it when the process ends, however it ends (``kill -9`` included), so the
lock of a dead process is simply taken over; the lock file itself stays (removing it would
race). Its name is derived, so nothing is written through it: a symlink, a FIFO or a device at
that name is refused by name (it cannot be a cam-cli lock), never opened through, never waited
on.
"""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from pathlib import Path
from typing import Self

from cam_cli.errors import SetupError
from cam_cli.files.checks import printable_path
from cam_cli.files.descriptors import CLOEXEC, NOFOLLOW, NONBLOCK, try_lock, unlock

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

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        try:
            held = not try_lock(fd)
        except OSError:  # a file system without locks: nothing to hold (as before)
            held = False
        if held:
            holder = _read_pid(fd)
            os.close(fd)
            raise SetupError(
                f"{self.option} {printable_path(self.target)}: in use by another run (PID "
                f"{holder}); wait for it to end, or choose another {self.option}"
            ) from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _open(self) -> int:
        """The lock file, opened without following a link or waiting on a FIFO: anything but a
        regular file at its name is refused."""
        flags = os.O_RDWR | os.O_CREAT | CLOEXEC | NOFOLLOW | NONBLOCK
        try:
            fd = os.open(self.lock_file, flags, 0o644)
        except OSError as error:
            kind = "a symlink" if os.path.islink(self.lock_file) else (error.strerror or error)
            raise SetupError(self._not_a_lock(kind)) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise SetupError(self._not_a_lock("not a regular file"))
        return fd

    def _not_a_lock(self, kind: object) -> str:
        return (
            f"{self.option} {printable_path(self.target)}: its lock file "
            f"{printable_path(self.lock_file)} is {kind}, not a cam-cli lock; remove it"
        )

    def release(self) -> None:
        if self._fd is not None:
            with suppress(OSError):  # closing drops it anyway
                unlock(self._fd)
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> str:
    """The PID a holder wrote into its lock file (``?`` if none, or where the lock keeps
    others from reading it: Windows)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode("ascii", "replace").strip() or "?"
    except OSError:
        return "?"


class FolderLock(_Lock):
    """A run folder (`train`'s `out`), locked through ``FOLDER/.cam-cli.lock``."""

    def __init__(self, folder: str | Path, option: str = "`out`") -> None:
        super().__init__(Path(folder), Path(folder) / LOCK_NAME, option)
        self.folder = self.target


class FileLock(_Lock):
    """A file appended to by one run (`eval`'s `per_image`), locked through
    ``.NAME.cam-cli.lock`` beside it (the file itself may not exist yet, or be replaced)."""

    def __init__(self, path: str | Path, option: str = "`per_image`") -> None:
        super().__init__(Path(path), file_lock_path(path), option)
