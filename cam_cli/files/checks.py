"""Checks every command makes before any work: outputs that would overwrite an input, outputs
that cannot be written, sizes out of range. Each failure is a `SetupError` whose one line names
the file (`cam-cli: error: ...`, exit 2). Also the one rule for writing a file name that is not
valid UTF-8 (`printable_path`). No torch here.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cam_cli.errors import SetupError
from cam_cli.files.image_names import is_image_file

MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 4096  # 4096x4096 already takes GBs of activations/image
logger = logging.getLogger(__name__)


_LOOKS_ESCAPED = re.compile(r"\\(?=x[0-9a-fA-F]{2})")  # a backslash that reads as \xNN


def printable_path(path: str | os.PathLike) -> str:
    """A file name as text that can always be written as UTF-8, one-to-one.

    Python gives a name that is not valid UTF-8 (``bad\\xff.jpg`` on disk) with surrogates
    (``os.fsdecode``); each byte that is not UTF-8 is written as ``\\xNN`` (backslashreplace of
    the raw bytes). So that two names never print alike, a backslash of the name that would read
    as such an escape (followed by ``x`` and two hex digits) is itself written ``\\x5c``: the
    name literally called ``a\\xff.jpg`` prints ``a\\x5cxff.jpg``, the one with the byte 0xFF
    prints ``a\\xff.jpg``. Every other name (all ordinary UTF-8 names) is returned unchanged.
    The rule is the same in every output (bbox/boxes/eval records, per-image lines, reports);
    `eval`'s `predictions` matches records by it (`record_name`).
    """
    text = os.fspath(path)
    if "\\" in text:
        text = _LOOKS_ESCAPED.sub(r"\\x5c", text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def record_name(text: str) -> str:
    """A name as a record gives it, in `printable_path`'s form: a record read from JSON already
    holds the printed text (kept as it is); one made in Python (``ImageResult.as_record()``)
    may hold the raw name, with surrogates, which is printed."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return printable_path(text)
    return text


# C0 controls, DEL and C1 controls (CSI is U+009B): what a terminal acts on instead of showing
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


def printable_line(text: str) -> str:
    """A message as one line that a terminal shows as it is: each control character (an ANSI
    escape ``\\x1b[2J`` or a newline in a file name) written as ``\\xNN``. Used for
    everything the tool writes on stderr; outputs on stdout keep names as they are (JSON
    escapes them itself)."""
    return text.translate(_CONTROLS)


def printable(value: Any) -> Any:
    """`printable_path` applied to every string in a JSON-like value (dicts, lists)."""
    if isinstance(value, str):
        return printable_path(value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


def strict_json(value: Any) -> Any:
    """NaN and infinities (not JSON) as null, in a JSON-like value; everything else as it is."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def check_run_folder(
    out: str | os.PathLike, data: str | os.PathLike, backbone: str | os.PathLike | None = None
) -> None:
    """`train`'s `out` must not be the `data` folder nor inside it (its files would mix with the
    data, a folder under train/ would become a class), and must not write over the
    `backbone_weights` file (a run folder's last.pt or best.pt)."""
    out, data = Path(out), Path(data)
    for name in ("last.pt", "best.pt"):
        check_not_an_input({"`out`": out / name}, {"`backbone_weights`": backbone})
    if same_file(out, data) or (data.is_dir() and _inside(out, data)):
        raise SetupError(
            f"`out` {printable_path(out)}: is inside the `data` folder {printable_path(data)}; "
            "give a run folder outside the data"
        )


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Do ``a`` and ``b`` name one file (resolved paths, or the same inode where both exist)?"""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_not_an_input(
    outputs: Mapping[str, str | os.PathLike | None],
    inputs: Mapping[str, str | os.PathLike | Iterable[str | os.PathLike] | None],
) -> None:
    """Refuse an output FILE that is one of the inputs: ``{option: path}`` on both sides (an
    input option may hold several paths, e.g. `images`; ``-`` is stdin/stdout and skipped). An
    input folder (`images` DIR) counts for the image files already in it."""
    for out_option, output in outputs.items():
        if output is None or str(output) == "-":
            continue
        for in_option, given in inputs.items():
            if given is None:
                continue
            paths = [given] if isinstance(given, str | os.PathLike) else list(given)
            for source in paths:
                if str(source) == "-":
                    continue
                source = Path(source)
                if same_file(output, source) or (
                    source.is_dir()
                    and is_image_file(output)
                    and Path(output).is_file()
                    and _inside(Path(output), source)
                ):
                    raise SetupError(
                        f"{out_option} {printable_path(output)}: is an input ({in_option} "
                        f"{printable_path(source)}); refusing to overwrite it, give another file"
                    )


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """The file ``path`` names (links followed) as (device, inode); None where there is none."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def check_outputs_spare_inputs(
    outputs: Mapping[str, str | os.PathLike | None],
    inputs: Mapping[str, str | os.PathLike | Iterable[str | os.PathLike] | None],
) -> None:
    """Refuse an output that is one of the files a command reads: ``{option: path}`` outputs,
    ``{option: path or paths}`` inputs, every input a FILE the command reads (folders walked
    by the caller, paths read from stdin included). Compared by what the names resolve to
    (device and inode): a symlink or a hard link to an input is that input. An output that
    does not exist yet cannot be one; ``-`` (stdin/stdout) is skipped. Raises `SetupError`."""
    targets: dict[tuple[int, int], tuple[str, str | os.PathLike]] = {}
    for option, output in outputs.items():
        if output is None or str(output) == "-":
            continue
        identity = _identity(output)
        if identity is not None and Path(output).is_file():
            targets.setdefault(identity, (option, output))
    if not targets:
        return
    for in_option, given in inputs.items():
        if given is None:
            continue
        paths = [given] if isinstance(given, str | os.PathLike) else given
        for source in paths:
            if str(source) == "-":
                continue
            identity = _identity(source)
            hit = None if identity is None else targets.get(identity)
            if hit is not None:
                out_option, output = hit
                raise SetupError(
                    f"{out_option} {printable_path(output)}: is an input ({in_option} "
                    f"{printable_path(source)}); refusing to overwrite it, give another file"
                )


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_parent(path: Path, option: str) -> None:
    parent = _nearest_existing(path.parent)
    if not parent.is_dir():
        raise SetupError(
            f"{option} {printable_path(path)}: cannot be written ({printable_path(parent)} is "
            "not a directory)"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SetupError(
            f"{option} {printable_path(path)}: cannot be written (no write permission in "
            f"{printable_path(parent)})"
        )


def check_output_file(path: str | os.PathLike | None, option: str) -> None:
    """An output FILE that can be written (atomically: its folder must take a temp file):
    not a directory, its folder (or the nearest one that exists) a writable directory."""
    if path is None or str(path) == "-":
        return
    path = Path(path)
    if path.is_dir():
        raise SetupError(f"{option} {printable_path(path)}: is a directory; give a FILE")
    if path.exists() and not path.is_file():
        return  # /dev/null, a FIFO: written directly (`files.atomic.atomic_file`)
    _check_parent(path, option)


def check_output_dir(path: str | os.PathLike | None, option: str) -> None:
    """An output folder that exists as a writable directory or can be made."""
    if path is None:
        return
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise SetupError(f"{option} {printable_path(path)}: not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise SetupError(
                f"{option} {printable_path(path)}: cannot be written (no write permission)"
            )
        return
    _check_parent(path, option)


def check_input_size(
    size: int | None, option: str = "`input_size`", low: int = MIN_INPUT_SIZE
) -> None:
    """A network input size (or a map's, `upsample`) wherever it comes from: an option, a
    training config, a checkpoint. ``option`` names where, e.g. ``"CKPT: its input_size"``."""
    if size is not None and not (
        isinstance(size, int) and not isinstance(size, bool) and low <= size <= MAX_INPUT_SIZE
    ):
        raise SetupError(f"{option} {size}: must be between {low} and {MAX_INPUT_SIZE}")


# torch's DataLoader warns when it starts more processes than the CPU has cores, which
# `max_workers` allows (at least 8) and `bounded_workers` already notes in its own words.
# Filtered by its text, so no other warning is hidden.
warnings.filterwarnings(
    "ignore", message="This DataLoader will create .* worker processes", category=UserWarning
)


def max_workers(cpus: int | None = None) -> int:
    """The most DataLoader processes a run starts: 2 per CPU core, at least 8 (the recipes'
    value). More only compete for the cores, and each holds a copy of the interpreter: a
    thousand exhaust memory or the process limit."""
    return max(8, 2 * (cpus or os.cpu_count() or 1))


def bounded_workers(workers: int, option: str = "`workers`") -> int:
    """``workers`` capped at `max_workers`, with a note when it was more (results never
    depend on the number of workers)."""
    top = max_workers()
    if workers > top:
        logger.info("note: %s %d capped to %d (at most 2 per CPU core, or 8)", option, workers, top)
        return top
    return workers
