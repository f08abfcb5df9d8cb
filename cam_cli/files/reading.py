"""Reading the files a command is given, bounded: the one way text lines and JSON come in.

Every text or JSON input (a `cam_threshold_from` report, `class_predictions`,
`predictions`, `per_image` resume lines, wsolevaluation's metadata, Tiny ImageNet's
tables, ground truth, class lists) is read here, so each gets the same guarantees:

- Only a regular file is opened for good (`open_regular`): the open itself does not wait
  (``O_NONBLOCK`` on POSIX, so a FIFO returns at once) and the file's kind is checked on the
  open descriptor; a FIFO, a device or a folder is refused by name ("not a regular file (a
  FIFO)"), never read, never waited on.
- A line is at most ``max_line`` bytes (`MAX_LINE_BYTES` by default) and a file at most
  ``max_bytes``: a longer line is refused after reading ``max_line + 1`` bytes of it, so a
  300 MB line costs 1 MB, not the line. Memory is what the caller keeps of the lines.
- Text is UTF-8 (a byte order mark on the first line is dropped); a file that is not is
  refused naming the file, the line and the first odd byte.
- JSON is parsed only after its nesting is known to be at most `MAX_JSON_DEPTH` (a 200,000-deep
  document is refused, never a ``RecursionError``), and NaN or Infinity, which JSON does not
  have and cam-cli never writes, are refused too.
- Every error is one `InputFileError` line naming the file (and line) and quoting at most
  `EXCERPT` characters of what was found (`excerpt`).

The cost is one pass over the file, line by line; nothing here keeps what it has read.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from cam_cli.errors import InputFileError
from cam_cli.files.descriptors import BINARY, CLOEXEC, NONBLOCK, POSIX

MAX_LINE_BYTES = 1 << 20  # no line of a format cam-cli reads comes near 1 MiB
MAX_TEXT_BYTES = 1 << 33  # 8 GiB: ILSVRC train's metadata is under 100 MB
MAX_JSON_BYTES = 1 << 28  # one JSON document (an `eval` `json_report`): 256 MiB
MAX_JSON_DEPTH = 100  # cam-cli's own records nest 4 deep
EXCERPT = 60  # characters an error quotes of a line


def file_kind(mode: int) -> str:
    """What a path that is not a regular file is, in words (a FIFO is not an empty file)."""
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def regular_file(path: str | os.PathLike) -> os.stat_result:
    """``os.stat`` of a file about to be read, or ValueError when it is not a regular file:
    reading a FIFO waits forever for a writer, a device never ends (OSError if it is missing)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"not a regular file ({file_kind(info.st_mode)})")
    return info


def excerpt(text: str | bytes, limit: int = EXCERPT) -> str:
    """At most ``limit`` characters of ``text``, quoted, with ``...`` where it was cut: what
    an error line may quote of an input, whatever its size."""
    if isinstance(text, bytes):
        text = text[: 4 * limit].decode("utf-8", "backslashreplace")
    cut = len(text) > limit
    return repr(text[:limit]) + ("..." if cut else "")


def open_regular(path: str | os.PathLike, named: bool = True) -> BinaryIO:
    """``path`` open for reading in binary, if it is a regular file; `InputFileError` naming it
    otherwise (missing, unreadable, a FIFO, a device, a folder). The open never waits.
    ``named=False``: the error says only the reason (for a caller that names the file)."""
    name = os.fsdecode(path) if named else ""
    try:
        if not POSIX:  # no FIFOs to wait on there; a device or a folder is told by stat
            regular_file(path)
        fd = os.open(path, os.O_RDONLY | NONBLOCK | CLOEXEC | BINARY)
    except ValueError as error:
        raise InputFileError(_named(name, str(error))) from None
    except OSError as error:
        raise InputFileError(_named(name, f"cannot read ({error.strerror or error})")) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise InputFileError(_named(name, f"not a regular file ({file_kind(info.st_mode)})"))
    if NONBLOCK:  # a regular file reads alike either way; plain blocking reads from here on
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _named(name: str, problem: str) -> str:
    return f"{name}: {problem}" if name else problem


def read_bytes(path: str | os.PathLike, max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    """The whole of a regular file of at most ``max_bytes`` (refused by its size first)."""
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        data = handle.read(max_bytes + 1) if size <= max_bytes else b""
    if size > max_bytes or len(data) > max_bytes:
        raise InputFileError(
            f"{os.fsdecode(path)}: {max(size, len(data))} bytes; more than the {max_bytes} "
            "this file may hold"
        )
    return data


def raw_lines(
    handle: IO[bytes] | IO[str],
    name: str,
    max_line: int = MAX_LINE_BYTES,
    max_bytes: int = MAX_TEXT_BYTES,
) -> Iterator[tuple[int, bytes | str]]:
    """``(line number, line)`` of an open stream, each line as read (its ``\\n`` kept, the
    last one's may be missing), bounded (module docstring). A text stream gives ``str``
    lines, bounded in characters."""
    total, number = 0, 0
    while True:
        raw = handle.readline(max_line + 1)
        if not raw:
            return
        number += 1
        total += len(raw)
        ends = raw.endswith(b"\n") if isinstance(raw, bytes) else raw.endswith("\n")
        if len(raw) > max_line and not (len(raw) == max_line + 1 and ends):
            raise InputFileError(
                f"{name}:{number}: a line longer than {max_line} bytes (it starts "
                f"{excerpt(raw)}); not a file of this kind?"
            )
        if total > max_bytes:
            raise InputFileError(f"{name}: more than the {max_bytes} bytes this file may hold")
        yield number, raw


def decode_line(raw: bytes | str, where: str, bom: bool = False) -> str:
    """One line as UTF-8 text, without its ``\\n``; ``bom``: a leading byte order mark is
    dropped (the first line of a file saved by Windows tools)."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputFileError(
                f"{where}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                f"{error.start + 1}); save it as UTF-8"
            ) from None
    else:
        text = raw
    if bom and text.startswith("\ufeff"):
        text = text[1:]
    return text[:-1] if text.endswith("\n") else text


def text_lines(
    path: str | os.PathLike,
    max_line: int = MAX_LINE_BYTES,
    max_bytes: int = MAX_TEXT_BYTES,
) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line of a UTF-8 text file, without its ``\\n`` (a
    ``\\r`` before it is the caller's to strip), bounded (module docstring)."""
    name = os.fsdecode(path)
    with open_regular(path) as handle:
        for number, raw in raw_lines(handle, name, max_line, max_bytes):
            yield number, decode_line(raw, f"{name}:{number}", bom=number == 1)


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def json_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep the arrays and objects of JSON text nest, exactly when that is over ``limit``
    (else a bound at most ``limit``): brackets inside strings do not count."""
    opens = data.count(b"[") + data.count(b"{")
    if opens <= limit:
        return opens
    import numpy as np

    codes = np.frombuffer(_STRING.sub(b"", data), dtype=np.uint8)
    steps = np.isin(codes, (0x5B, 0x7B)).astype(np.int64) - np.isin(codes, (0x5D, 0x7D))
    return int(np.cumsum(steps).max(initial=0))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(
    data: str | bytes, where: str, expected: str = "", max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """JSON text -> its value, nesting bounded first (module docstring); `InputFileError`
    naming ``where`` otherwise (``expected``: what the file should have been, said after)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    advice = f"; expected {expected}" if expected else ""
    if json_depth(raw, max_depth) > max_depth:
        raise InputFileError(f"{where}: JSON nested deeper than {max_depth} levels{advice}")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        reason = str(error).splitlines()[0][:EXCERPT] if str(error) else type(error).__name__
        raise InputFileError(f"{where}: not JSON ({reason}){advice}") from None


def read_json(
    path: str | os.PathLike,
    expected: str = "",
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """One JSON document from a regular file of at most ``max_bytes`` (`loads`)."""
    return loads(read_bytes(path, max_bytes), os.fsdecode(path), expected, max_depth)


def json_lines(
    source: str | os.PathLike | IO[bytes] | IO[str],
    name: str | None = None,
    expected: str = "",
    max_line: int = MAX_LINE_BYTES,
) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of a JSON Lines file (a path, or an
    open stream named ``name``), each line bounded and parsed by `loads`."""
    if isinstance(source, str | os.PathLike):
        with open_regular(source) as handle:
            yield from json_lines(handle, name or os.fsdecode(source), expected, max_line)
        return
    stream: IO[Any] = getattr(source, "buffer", source)  # stdin's bytes, where it has them
    label = name or "<stream>"
    for number, raw in raw_lines(stream, label, max_line):
        if raw.strip():
            yield number, loads(raw, f"{label}:{number}", expected)


def is_text_stream(source: object) -> bool:
    """An open stream of text (not a path)."""
    return isinstance(source, io.TextIOBase) or (
        hasattr(source, "read") and not isinstance(source, str | Path)
    )
