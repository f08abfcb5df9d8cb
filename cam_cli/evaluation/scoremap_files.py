"""Score maps in wsolevaluation's layout: what `eval` writes (``save_scoremaps``) and reads
(``scoremaps``), so their ``BoxEvaluator`` (or anyone's code) can score cam-cli's maps and
cam-cli can score anyone's.

Their ``inference.py`` saves each image's map with ``np.save(scoremaps/<image_id>)``, and
``np.save`` appends ``.npy``: the map of ``val/ILSVRC2012_val_00000001.JPEG`` is
``DIR/val/ILSVRC2012_val_00000001.JPEG.npy``, 2-D float64 (their ``t2n`` casts to float64 and
``cv2.resize`` keeps it), min-max normalised to [0, 1], 224x224.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cam_cli.errors import EvaluationError
from cam_cli.evaluation.maxboxacc.wsol_protocol import SCOREMAP_SIZE, check_scoremap
from cam_cli.files.atomic import atomic_file, is_temp_name
from cam_cli.files.checks import printable_path

SUFFIX = ".npy"


def scoremap_id(image: str | Path, base: str | Path) -> str:
    """wsolevaluation's image id of an image: its path below ``base``, with ``/``.

    ``images`` DIR gives the folder above DIR as ``base`` (``val/ILSVRC2012_val_...JPEG``,
    their ILSVRC ids); ``cub`` ROOT gives ``ROOT/images`` (``001.Black_footed_Albatross/...``).
    Symbolic links are not followed (a linked image keeps the id of its link). An image outside
    ``base`` gets its file name, so no map is ever written outside the folder asked for.
    """
    relative = Path(os.path.relpath(os.path.abspath(image), os.path.abspath(base)))
    if relative.parts and relative.parts[0] == "..":
        return Path(image).name
    return relative.as_posix()


def scoremap_path(root: str | Path, image_id: str) -> Path:
    """Where the map of ``image_id`` lives under ``root`` (``np.save`` adds ``.npy``)."""
    return Path(root) / (image_id + SUFFIX)


def save_scoremap(root: str | Path, image_id: str, scoremap: np.ndarray) -> Path:
    """Write one map atomically (`files.atomic`), creating its folders; returns its path."""
    target = scoremap_path(root, image_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target, "wb", derived=True) as handle:
        np.save(handle, np.asarray(scoremap))
    return target


def find_scoremaps(root: str | Path) -> dict[str, Path]:
    """Every ``.npy`` below ``root`` by the stem of the image it names
    (``val/ILSVRC2012_val_00000001.JPEG.npy`` -> ``ILSVRC2012_val_00000001``, as `eval` matches
    images to annotations). Two maps for one stem are refused (ValueError). A writer's temp
    file never ends in ``.npy`` (`files.atomic.temp_path`), so every map is taken, a map of
    ``.dot.JPEG`` too."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder of score maps")
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*" + SUFFIX)):
        if not path.is_file() or is_temp_name(path.name):
            continue
        stem = printable_path(Path(path.name[: -len(SUFFIX)]).stem)
        if stem in found:
            raise ValueError(f"two score maps for image {stem}: {found[stem]} and {path}")
        found[stem] = path
    if not found:
        raise ValueError(f"{root}: no .npy score maps in it")
    return found


def scoremaps_of_ids(root: str | Path, image_ids: Sequence[str]) -> dict[str, Path]:
    """The maps of a metadata split's ids, looked up as their evaluator loads them
    (``root/<image_id>.npy``), by file stem; ids without a map are left out (the caller names
    them). Other maps in ``root`` (another split's, a whole run's) are not looked at."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder of score maps")
    found: dict[str, Path] = {}
    for image_id in image_ids:
        path = scoremap_path(root, image_id)
        if path.is_file():
            found[printable_path(Path(image_id).stem)] = path
    return found


def scoremaps_to_read(root: str | Path, image_ids: Sequence[str] | None = None) -> dict[str, Path]:
    """The score maps to read, by image stem: every ``.npy`` below ``root`` (`find_scoremaps`),
    or with a metadata split's ``image_ids`` only ``root/<id>.npy`` of those
    (`scoremaps_of_ids`). An `EvaluationError` for a folder that holds none."""
    try:
        return find_scoremaps(root) if image_ids is None else scoremaps_of_ids(root, image_ids)
    except ValueError as error:
        raise EvaluationError(str(error)) from None


def load_scoremap(path: str | Path) -> np.ndarray:
    """One map, checked as their ``check_scoremap_validity`` checks it (ValueError if not):
    its shape and type from the header, before the data is read (`data.npy.read_npy`)."""
    from cam_cli.data.npy import read_npy

    scoremap = read_npy(path, check=check_scoremap_header)
    check_scoremap(scoremap)
    return scoremap


def check_scoremap_header(shape: tuple[int, ...], dtype: np.dtype) -> None:
    """`check_scoremap`'s type and shape rules, on a ``.npy`` header."""
    if dtype.kind != "f":
        raise ValueError(f"a score map must be a float array, not {dtype}")
    if len(shape) != 2:
        raise ValueError(f"a score map must be 2-D, not of shape {shape}")
    if shape != (SCOREMAP_SIZE, SCOREMAP_SIZE):
        rows, cols = shape
        raise ValueError(f"a score map must be {SCOREMAP_SIZE}x{SCOREMAP_SIZE}, not {rows}x{cols}")
