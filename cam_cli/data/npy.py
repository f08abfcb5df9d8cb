"""The one ``.npy`` reader: the header first (shape, type, order), every limit checked on it,
then the data, so a map that could not be used costs its header, not its declared size.

Refused before any data is read: a file that is not a regular file (a FIFO is never waited
on), not a ``.npy`` at all, a header of Python objects (a pickle would run code), a declared
size over the pixel limit (`data.images.DEFAULT_MAX_PIXELS` values: an array that large is no
map of an image cam-cli decodes), a file shorter than its header declares (a torn or sparse
copy), and whatever the caller's ``check`` refuses of the header (a score map that is not
224x224). Errors are ValueError with a short reason; the caller names the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cam_cli.data.images import DEFAULT_MAX_PIXELS
from cam_cli.files.reading import open_regular

NPY_MAGIC = b"\x93NUMPY"
HeaderCheck = Callable[[tuple[int, ...], np.dtype], None]


def read_npy(
    path: str | Path, max_values: int = DEFAULT_MAX_PIXELS, check: HeaderCheck | None = None
) -> np.ndarray:
    """The array of a ``.npy`` file, as ``np.load(path, allow_pickle=False)`` gives it, after
    its header passed the limits (module docstring) and ``check(shape, dtype)``."""
    fmt = np.lib.format
    with open_regular(path, named=False) as handle:
        if handle.read(len(NPY_MAGIC)) != NPY_MAGIC:  # /dev/zero, a renamed JPEG, a pickle
            raise ValueError("not a .npy map file (no NumPy header)")
        handle.seek(0)
        try:
            version = fmt.read_magic(handle)
            read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = read_header[version](handle)
        except ValueError as error:
            raise ValueError(f"not a readable .npy header ({_first_line(error)})") from None
        if dtype.hasobject:
            raise ValueError("not a readable .npy array (it holds Python objects)")
        values = math.prod(shape)
        if values > max_values:
            raise ValueError(
                f"its header declares shape {list(shape)}: {values} values, over the limit of "
                f"{max_values} (the largest image cam-cli decodes)"
            )
        if check is not None:
            check(tuple(shape), dtype)
        needed = values * dtype.itemsize
        held = os.fstat(handle.fileno()).st_size - handle.tell()
        if held < needed:
            raise ValueError(
                f"shorter than its header declares ({held} of {needed} data bytes): torn?"
            )
        handle.seek(0)
        try:
            return fmt.read_array(handle, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"not a readable .npy array ({_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0][:120] if text else type(error).__name__
