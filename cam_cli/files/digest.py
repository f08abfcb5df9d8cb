"""The SHA-256 of a file, read once in chunks: a report names the exact weights it ran with,
and a checkpoint of several hundred MB must not be held in memory to say so."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cam_cli.files.reading import regular_file

CHUNK_BYTES = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of ``path``'s bytes. A FIFO or a device is refused (ValueError) rather than
    read forever; a missing file raises OSError, as `open` does."""
    regular_file(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
