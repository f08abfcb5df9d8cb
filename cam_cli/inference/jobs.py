"""What `cam-cli bbox` and `cam-cli cam` do, as library calls: `write_boxes` and `write_cams`.

Both take image sources as the command line does (files, folders, ``-`` for paths on stdin),
never stop for one bad image (it gets an error record or is skipped, is named in one line on
the ``cam_cli`` logger, and is counted), and write every file atomically. Under torchrun they
share the images out among the processes, and rank 0 writes what one process would write
(`inference.sharding`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cam_cli.common.atomic import write_bytes_atomic
from cam_cli.common.images import find_images
from cam_cli.errors import SetupError
from cam_cli.inference import sharding
from cam_cli.inference.draw import boxes_png, check_drawings_spare_inputs, output_stem
from cam_cli.inference.pipeline import Localizer, RunOptions
from cam_cli.inference.results import ImageResult
from cam_cli.inference.writers import RecordWriter, open_output
from cam_cli.models.classes import resolve_class
from cam_cli.models.loading import LoadedModel, ModelOptions, load_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    images: int  # inputs, after folders were walked
    failed: int  # inputs that gave no result (each was named on the logger)


def collect_images(sources: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Image sources -> (paths to run, [(source, problem)] for those that do not exist)."""
    if not sources:
        raise SetupError("no images given: use --images DIR|FILE|- (see --help)")
    paths, missing = [], []
    for path, problem in find_images(sources):
        (missing.append((str(path), problem)) if problem else paths.append(str(path)))
    return paths, missing


def _localizer(
    model: LoadedModel | ModelOptions,
    classes: Sequence[str] | None,
    run: RunOptions,
    compile_now: bool,
    **settings,
) -> Localizer:
    """The model loaded (from options) and prepared for ``run``, with ``--class`` queries
    resolved against its classes. A model loaded here is prepared in place, not copied."""
    loaded_here = isinstance(model, ModelOptions)
    if loaded_here:
        model = load_model(model, device=run.device)
    indices = None
    if classes:
        try:
            indices = [resolve_class(query, model.classes) for query in classes]
        except ValueError as error:
            raise SetupError(str(error)) from None
    return run.localizer(
        model,
        compile_now=compile_now,
        class_indices=indices,
        copy_model=not loaded_here,
        **settings,
    )


def _failed(path: str, reason: str) -> None:
    logger.warning("%s: %s", path, reason)


def _render_boxes(result: ImageResult) -> None:
    """`--draw`'s picture, drawn and PNG-encoded beside the network (a `localize` finish); an
    error is kept for the main loop to report."""
    try:
        result.analysis = boxes_png(result.path, [p.as_dict() for p in result.predictions])
    except (ValueError, OSError) as error:
        result.analysis = error


def write_boxes(
    model: LoadedModel | ModelOptions,
    images: Sequence[str],
    *,
    output: str | Path | IO[str] | None = None,
    fmt: str = "jsonl",
    topk: int = 5,
    threshold: float = 0.2,
    classes: Sequence[str] | None = None,
    draw: str | Path | None = None,
    run: RunOptions = RunOptions(),
) -> RunSummary:
    """Boxes for the top-k classes (or the given ``classes``) of every image, one record per
    image in input order, to ``output`` (a file written atomically, an open stream, or stdout
    for None/``-``), as JSON Lines or CSV. ``draw``: also a PNG per image with its boxes."""
    with run.processes() as run:  # under torchrun: the group, this process's device
        paths, missing = sharding.from_rank_zero(lambda: collect_images(images))
        if draw is not None:
            check_drawings_spare_inputs(paths, draw)
        localizer = _localizer(model, classes, run, bool(paths), topk=topk, threshold=threshold)
        try:
            return localize_to_records(
                localizer, paths, missing, output=output, fmt=fmt, draw=draw, run=run
            )
        finally:
            localizer.close()


def localize_to_records(
    localizer: Localizer,
    paths: Sequence[str],
    missing: Sequence[tuple[str, str]] = (),
    *,
    output: str | Path | IO[str] | None = None,
    fmt: str = "jsonl",
    draw: str | Path | None = None,
    run: RunOptions = RunOptions(),
) -> RunSummary:
    """The run of `write_boxes` with a prepared `Localizer` (scripts/bench_bbox.py times this,
    the model set-up apart): ``missing`` are inputs that were not found, written as errors.
    In a group of processes, rank 0 writes everything, and every rank returns rank 0's summary."""
    finish = None if draw is None else _render_boxes
    if not sharding.is_rank_zero():  # another rank of a torchrun group: its share, no output
        for _ in run.localize(localizer, paths, finish=finish):
            pass
        return sharding.shared(None)
    draw_dir = None if draw is None else Path(draw)
    if draw_dir is not None:
        draw_dir.mkdir(parents=True, exist_ok=True)
    failures = len(missing)
    taken: set[str] = set()
    with open_output(output) as handle:
        writer = RecordWriter(handle, fmt)
        for path, problem in missing:
            _failed(path, problem)
            writer.write(ImageResult(path, error=problem).as_record())
        for result in run.localize(localizer, paths, finish=finish):
            writer.write(result.as_record())
            if result.error is not None:
                failures += 1
                _failed(result.path, result.error)
            elif draw_dir is not None:
                failures += not _save_drawing(result, draw_dir, taken)
    return sharding.shared(RunSummary(len(paths) + len(missing), failures))


def _save_drawing(result: ImageResult, draw_dir: Path, taken: set[str]) -> bool:
    if isinstance(result.analysis, Exception):
        _failed(result.path, f"--draw: {result.analysis}")
        return False
    target = draw_dir / f"{output_stem(result.path, taken)}_boxes.png"
    try:
        write_bytes_atomic(result.analysis, target)
    except OSError as error:
        _failed(result.path, f"--draw: {error}")
        return False
    return True


def write_cams(
    model: LoadedModel | ModelOptions,
    images: Sequence[str],
    out: str | Path,
    *,
    topk: int = 1,
    classes: Sequence[str] | None = None,
    npy: str = "none",
    alpha: float = 0.5,
    run: RunOptions = RunOptions(),
) -> RunSummary:
    """For each image and class, ``IMAGE_rankR_CLASS.png`` (a jet overlay of the CAM) in
    ``out``, and with ``npy`` the raw maps: ``.feature.npy`` (h x w) and/or ``.image.npy``
    (upsampled bilinearly to the image's H x W). Inputs are never overwritten."""
    from cam_cli.inference.cam_files import CamWriter

    with run.processes() as run:  # under torchrun: the group, this process's device
        paths, missing = sharding.from_rank_zero(lambda: collect_images(images))
        localizer = _localizer(model, classes, run, bool(paths), topk=topk)
        main = sharding.is_rank_zero()  # the others of a torchrun group render, never write
        try:
            writer = CamWriter(Path(out), paths, npy=npy, alpha=alpha, make_dir=main)
        except ValueError as error:
            localizer.close()
            raise SetupError(str(error)) from None
        for path, problem in missing if main else ():
            _failed(path, problem)
        failures = len(missing)
        try:
            results = run.localize(localizer, paths, keep_cams=True, finish=writer.render)
            for result in results:  # none on the other ranks
                if result.error is not None:
                    failures += 1
                    _failed(result.path, result.error)
                    continue
                try:
                    writer.write(result)
                except (ValueError, OSError) as error:
                    failures += 1
                    _failed(result.path, str(error))
        finally:
            localizer.close()
        return sharding.shared(RunSummary(len(paths) + len(missing), failures))
