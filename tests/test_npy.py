"""The one `.npy` reader (`data.npy.read_npy`): the header first, every limit on it, then the
data, so a map that cannot be used costs its header, not its declared size."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import fifo, takes_under

from cam_cli.data.images import DEFAULT_MAX_PIXELS
from cam_cli.data.npy import read_npy


def header_only(path, shape, dtype="<f8", size: int | None = None) -> None:
    """A .npy whose header declares ``shape`` and ``dtype``, with no data after it (or the
    file extended to ``size`` bytes: a sparse file, holes read as zeros)."""
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": dtype, "fortran_order": False, "shape": shape}
        )
        if size is not None:
            handle.truncate(size)


def test_a_good_file_reads_as_np_load(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "m.npy", array)
    np.save(tmp_path / "f.npy", np.asfortranarray(array.astype(">f8")))
    for name in ("m.npy", "f.npy"):
        got = read_npy(tmp_path / name)
        want = np.load(tmp_path / name)
        assert got.dtype == want.dtype
        assert got.flags.f_contiguous == want.flags.f_contiguous
        np.testing.assert_array_equal(got, want)


def test_a_declared_size_over_the_pixel_limit_is_refused_from_the_header(tmp_path):
    """Issue 25 (8): a header declaring 200000 x 200000 float64 ended in an allocation
    traceback."""
    path = tmp_path / "huge.npy"
    header_only(path, (200_000, 200_000))
    with pytest.raises(ValueError, match=r"declares shape \[200000, 200000\]: 40000000000 values"):
        read_npy(path)
    assert path.stat().st_size < 200
    header_only(path, (DEFAULT_MAX_PIXELS + 1,), "|u1", DEFAULT_MAX_PIXELS + 1 + 128)
    with pytest.raises(ValueError, match="over the limit of 178956970"):
        read_npy(path)


def test_a_file_shorter_than_its_header_declares_is_refused_before_reading(tmp_path):
    path = tmp_path / "torn.npy"
    header_only(path, (224, 224))
    with open(path, "ab") as handle:
        handle.write(b"\0" * 1000)
    with pytest.raises(ValueError, match=r"shorter than its header declares \(1000 of 401408"):
        read_npy(path)


def test_the_callers_check_sees_the_header_before_the_data(tmp_path):
    """A sparse 12000 x 12000 map (1.15 GB declared, 4 KB on disk) that a score map's check
    refuses: refused from its header, its data never read."""
    path = tmp_path / "sparse.npy"
    header_only(path, (12_000, 12_000), size=128 + 12_000 * 12_000 * 8)
    seen = []

    def check(shape, dtype):
        seen.append((shape, dtype))
        raise ValueError(f"a score map must be 224x224, not {shape[0]}x{shape[1]}")

    started = time.monotonic()
    with pytest.raises(ValueError, match="must be 224x224, not 12000x12000"):
        read_npy(path, check=check)
    takes_under(1, started)
    assert seen == [((12_000, 12_000), np.dtype("<f8"))]


def test_objects_garbage_and_fifos_are_refused(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"it holds Python objects"):
        read_npy(tmp_path / "objects.npy")
    (tmp_path / "garbage.npy").write_bytes(b"\xff\xd8 a JPEG")
    with pytest.raises(ValueError, match=r"^not a \.npy map file \(no NumPy header\)$"):
        read_npy(tmp_path / "garbage.npy")
    (tmp_path / "bad-header.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 5}    \n")
    with pytest.raises(ValueError, match=r"^not a readable \.npy header"):
        read_npy(tmp_path / "bad-header.npy")
    with fifo(tmp_path / "pipe.npy") as pipe:
        started = time.monotonic()
        with pytest.raises(ValueError, match=r"^not a regular file \(a FIFO\)$"):
            read_npy(pipe)
        takes_under(5, started)
