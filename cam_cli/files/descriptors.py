"""File descriptors as every platform gives them: the flags an open may add, and an exclusive
lock on an open file, so that `atomic` and `lock` run alike on Linux, macOS and Windows.

The lock is the ``filelock`` package's (`filelock.lock_descriptor`): ``flock`` on POSIX, the
same lock as before, dropped by the kernel however its holder ends (``kill -9`` included), and
``LockFileEx`` on its first byte on Windows. What only POSIX has stays behind `POSIX`: FIFOs
and devices (`regular_only`'s non-blocking open), ``O_NOFOLLOW``, renaming a file that is still
open. Nothing here imports ``fcntl``, so the package starts where there is none.
"""

from __future__ import annotations

import os

POSIX = os.name == "posix"
CLOEXEC = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0)  # not inherited
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # a symlink is not opened through (POSIX)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO's open returns at once (POSIX)
BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def lock(fd: int) -> None:
    """Take the exclusive lock of the open file ``fd``, waiting while another holds it (a
    clean-up's probe of a fresh temp file holds it for an instant). OSError where the file
    system has no locks."""
    from filelock import lock_descriptor

    lock_descriptor(fd, blocking=True, poll_interval=0.001)


def try_lock(fd: int) -> bool:
    """Take the exclusive lock of the open file ``fd`` without waiting: False when another
    open file description holds it. OSError where the file system has no locks."""
    from filelock import lock_descriptor

    return lock_descriptor(fd, blocking=False)


def unlock(fd: int) -> None:
    """Drop the lock `try_lock` took (closing ``fd`` drops it too)."""
    from filelock import unlock_descriptor

    unlock_descriptor(fd)
