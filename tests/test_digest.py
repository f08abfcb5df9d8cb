"""`files.digest.sha256_file`: the file's SHA-256, read in chunks; a FIFO is refused."""

from __future__ import annotations

import hashlib
import os

import pytest

from cam_cli.files import digest
from cam_cli.files.digest import sha256_file


def test_digest_of_a_file_in_several_chunks(tmp_path, monkeypatch) -> None:
    data = os.urandom(10_000)
    (tmp_path / "w.pth").write_bytes(data)
    monkeypatch.setattr(digest, "CHUNK_BYTES", 4096)
    assert sha256_file(tmp_path / "w.pth") == hashlib.sha256(data).hexdigest()


def test_a_fifo_is_refused_not_read_forever(tmp_path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match="FIFO"):
        sha256_file(tmp_path / "pipe")
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "missing")
