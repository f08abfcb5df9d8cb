"""What `cam-cli bbox` and `cam-cli cam` do, as library calls: `write_boxes` and `write_cams`.

Both take image sources as the command line does (files, folders, ``-`` for paths on stdin),
never stop for one bad image (it gets an error record or is skipped, is named in one line on
the ``cam_cli`` logger, and is counted), and write every file atomically. Under torchrun they
share the images out among the processes, and rank 0 writes what one process would write
(`runtime.group`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

import numpy as np

from cam_cli.data.classes import resolve_class
from cam_cli.data.images import check_image_size, find_images
from cam_cli.errors import SetupError
from cam_cli.files.atomic import write_bytes_atomic
from cam_cli.files.checks import (
    check_input_size,
    check_output_file,
    check_outputs_spare_inputs,
    printable_path,
)
from cam_cli.inference.analysis import Analysis
from cam_cli.inference.computation import check_threshold
from cam_cli.inference.localizer import Localizer, compile_or_warn
from cam_cli.inference.map_methods import load_for_method, method_settings
from cam_cli.inference.results import ImageResult
from cam_cli.models.loading import LoadedModel
from cam_cli.outputs.datasets import DatasetOptions, DatasetWriter
from cam_cli.outputs.draw import boxes_png, check_drawings_spare_inputs, output_stem
from cam_cli.outputs.writers import RecordWriter, open_output
from cam_cli.runtime.device import resolve_device
from cam_cli.runtime.distributed import is_main_process, process_device
from cam_cli.runtime.group import Group, open_group
from cam_cli.settings import CamFileOptions, CamOptions, ModelOptions, RunOptions

if TYPE_CHECKING:  # the type only: `write_cams` imports it when it runs
    from cam_cli.outputs.cam_files import CamWriter

logger = logging.getLogger(__name__)
Maps = Sequence[np.ndarray] | np.ndarray  # the maps of one file: a list, or a stack [k, H, W]


@dataclass(frozen=True)
class RunSummary:
    images: int  # inputs, after folders were walked
    failed: int  # inputs that gave no result (each was named on the logger)


def collect_images(sources: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Image sources -> (paths to run, [(source, problem)] for those that do not exist)."""
    if not sources:
        raise SetupError("no images given: use `images` DIR|FILE|- (see `help`)")
    paths, missing = [], []
    for path, problem in find_images(sources):
        (missing.append((str(path), problem)) if problem else paths.append(str(path)))
    return paths, missing


def _rank_zero_summary(group: Group) -> RunSummary:
    """On another rank of a torchrun group: the summary rank 0 shares when it is done."""
    summary: RunSummary | None = group.shared(None)
    assert summary is not None  # rank 0 shares its RunSummary
    return summary


def _localizer(
    model: LoadedModel | ModelOptions,
    classes: Sequence[str] | None,
    cam: CamOptions,
    run: RunOptions,
    group: Group,
    compile_now: bool,
) -> Localizer:
    """The model loaded (from options) and prepared for ``run``, with `class` queries
    resolved against its classes, compiled when asked and ``compile_now``. A model loaded here
    is prepared in place, not copied."""
    loaded_here = isinstance(model, ModelOptions)
    if isinstance(model, ModelOptions):
        model = load_for_method(model, cam, str(process_device(run.device)))
    if classes:
        try:
            indices = tuple(resolve_class(query, model.classes) for query in classes)
        except ValueError as error:
            raise SetupError(str(error)) from None
        cam = replace(cam, class_indices=indices)
    localizer = Localizer(model, cam, run, group=group, copy_model=not loaded_here)
    if run.compile_model and compile_now:
        compile_or_warn(localizer, run.batch_size)
    return localizer


@contextmanager
def _command_group(model: LoadedModel | ModelOptions | Localizer, run: RunOptions) -> Iterator:
    """The command's group of processes (`open_group`); a prepared `Localizer` brings its own."""
    if isinstance(model, Localizer):
        yield model.group or Group()
        return
    with open_group(run.device) as group:
        yield group


def check_output_spares(output: str | Path | IO[str] | None, inputs: dict) -> None:
    """`output` FILE, before any work: not a directory, and none of the files read
    (``inputs``: ``{option: paths}``, as the walk and stdin gave them); a stream is the
    caller's."""
    if isinstance(output, str | Path):
        check_output_file(output, "`output`")
        check_outputs_spare_inputs({"`output`": output}, inputs)


def _model_files(model: LoadedModel | ModelOptions | Localizer) -> dict:
    """The files a model is loaded from (already loaded: none left to protect)."""
    if not isinstance(model, ModelOptions):
        return {}
    weights = None if model.weights in (None, "imagenet") else model.weights
    return {"`weights`": weights, "`checkpoint`": model.checkpoint,
            "`classes_file`": model.classes_file, "`onnx`": model.onnx}  # fmt: skip


def _failed(path: str, reason: str) -> None:
    logger.warning("%s: %s", path, reason)


class _Drawing(Analysis):
    """`draw`'s picture of every image, drawn and PNG-encoded beside the network; an error
    is kept for the main loop to report."""

    def on_host(self, result: ImageResult) -> None:
        try:
            result.analysis = boxes_png(result.path, [p.as_dict() for p in result.predictions])
        except (ValueError, OSError) as error:
            result.analysis = error


def write_boxes(
    model: LoadedModel | ModelOptions | Localizer,
    images: Sequence[str],
    *,
    output: str | Path | IO[str] | DatasetOptions | None = None,
    fmt: str = "jsonl",
    cam: CamOptions = CamOptions(),
    classes: Sequence[str] | None = None,
    draw: str | Path | None = None,
    run: RunOptions = RunOptions(),
) -> RunSummary:
    """Boxes for the top-k classes (or the given ``classes``) of every image, one record per
    image in input order, to ``output`` (a file written atomically, an open stream, or stdout
    for None/``-``), as JSON Lines or CSV. ``draw``: also a PNG per image with its boxes
    (`outputs.draw`), named by its record's ``"drawing"`` (a field only ``draw`` adds).
    ``cam``: the CAMs and boxes (`CamOptions`: ``topk``, ``threshold``, None for the
    checkpoint's own else 0.2, ``box_rule`` and ``ten_crop``, the paper's by default).
    ``model``: options to load it from, a loaded model, or a prepared `Localizer` (its own CAM
    and run settings then stand for ``cam``; it is left open, for the caller to run again). In
    a group of processes, rank 0 writes everything, and every rank returns rank 0's summary."""
    if isinstance(output, DatasetOptions):
        output.check()
    with _command_group(model, run) as group:  # under torchrun: the group
        paths, missing = group.from_rank_zero(lambda: collect_images(images))
        inputs = {"`images`": paths, **_model_files(model)}
        if not isinstance(output, DatasetOptions):
            check_output_spares(output, inputs)
        if draw is not None:
            check_drawings_spare_inputs(paths, draw)
        given = isinstance(model, Localizer)
        localizer = model if isinstance(model, Localizer) else _localizer(
            model, classes, cam, run, group, bool(paths)
        )  # fmt: skip
        try:
            if isinstance(output, DatasetOptions):
                return _write_dataset(localizer, group, paths, missing, output, inputs)
            return _write_records(localizer, group, paths, missing, output, fmt, draw)
        finally:
            if not given:  # a prepared Localizer is the caller's, left open
                localizer.close()


def _identity(localizer: Localizer) -> dict:
    """What decides a dataset's boxes (its journal refuses another run's): the prepared
    network's weights by content, and the CAM settings."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in localizer.model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"model": digest.hexdigest()[:16], "threshold": localizer.threshold,
            "topk": localizer.topk, "box_rule": localizer.box_rule,
            "ten_crop": localizer.ten_crop, "class_indices": localizer.fixed_classes}  # fmt: skip


def _write_dataset(
    localizer: Localizer,
    group: Group,
    paths: Sequence[str],
    missing: Sequence[tuple[str, str]],
    dataset: DatasetOptions,
    inputs: dict,
) -> RunSummary:
    """The run of `write_boxes` into a pseudo-label dataset (`outputs.datasets`): images a
    resumed run has done are skipped; images that fail are named and counted, and left out."""
    identity = _identity(localizer)
    writers: list[DatasetWriter] = []

    def open_writer() -> list[str]:  # rank 0 alone (under torchrun): lock, resume
        try:
            writers.append(DatasetWriter(dataset, localizer.classes, paths, identity, inputs))
        except ValueError as error:
            raise SetupError(str(error)) from None
        return [path for path in paths if path not in writers[0].done]

    todo = group.from_rank_zero(open_writer)
    if not is_main_process():  # another rank of a torchrun group: its share, no output
        for _ in localizer.localize(todo, None):
            pass
        return _rank_zero_summary(group)
    writer = writers[0]
    failures, left_out = len(missing), 0
    try:
        for path, problem in missing:
            _failed(path, problem)
        if len(todo) < len(paths):
            done = len(paths) - len(todo)
            logger.info("%s: resuming, %d of %d images already done",
                        printable_path(dataset.out), done, len(paths))  # fmt: skip
        for result in localizer.localize(todo, None):
            if result.error is not None:
                failures += 1
                _failed(result.path, result.error)
                continue
            try:
                left_out += writer.write(result) == 0
            except (ValueError, OSError) as error:
                failures += 1
                _failed(result.path, str(error))
    finally:
        images, boxes = writer.close()
    logger.info("%s: %d images, %d boxes", printable_path(dataset.out), images, boxes)
    if left_out:  # a note: it changes what the dataset holds, so `quiet` keeps it
        logger.info("note: %d images left out of %s: no box scoring at least `min_score`",
                    left_out, printable_path(dataset.out))  # fmt: skip
    return group.shared(RunSummary(len(paths) + len(missing), failures))


def _write_records(
    localizer: Localizer,
    group: Group,
    paths: Sequence[str],
    missing: Sequence[tuple[str, str]],
    output: str | Path | IO[str] | None,
    fmt: str,
    draw: str | Path | None,
) -> RunSummary:
    """The run of `write_boxes`: ``missing`` are inputs that were not found, written as
    errors."""
    analysis = None if draw is None else _Drawing()
    if not is_main_process():  # another rank of a torchrun group: its share, no output
        for _ in localizer.localize(paths, analysis):
            pass
        return _rank_zero_summary(group)
    draw_dir = None if draw is None else Path(draw)
    if draw_dir is not None:
        draw_dir.mkdir(parents=True, exist_ok=True)
    failures = len(missing)
    taken: set[str] = set()
    with open_output(output) as handle:
        writer = RecordWriter(handle, fmt, drawing=draw_dir is not None)
        for path, problem in missing:
            _failed(path, problem)
            writer.write(ImageResult(path, error=problem).as_record())
        made_by = method_settings(localizer.maps)  # nothing for the paper's CAM
        for result in localizer.localize(paths, analysis):
            record = result.as_record()
            if made_by and result.error is None:
                record.update(made_by)
            if result.error is not None:
                failures += 1
                _failed(result.path, result.error)
            elif draw_dir is not None:
                drawing = _save_drawing(result, draw_dir, taken)
                if isinstance(drawing, Path):  # the record names its picture
                    record["drawing"] = str(drawing)
                else:  # counted as failed, so its record says why
                    failures += 1
                    record["error"] = drawing
            writer.write(record)
        writer.close()
    return group.shared(RunSummary(len(paths) + len(missing), failures))


def _save_drawing(result: ImageResult, draw_dir: Path, taken: set[str]) -> Path | str:
    """Writes the image's `draw` PNG: the file written, else the problem (also logged) why it
    could not be drawn or written. The record then keeps its predictions and gains ``"error"``
    with that problem."""
    if isinstance(result.analysis, Exception):
        problem = f"not drawn (--draw): {result.analysis}"
    else:
        target = draw_dir / f"{output_stem(result.path, taken)}_boxes.png"
        try:
            write_bytes_atomic(cast(bytes, result.analysis), target, derived=True)
            return target
        except OSError as error:
            problem = f"not drawn (--draw): {target}: {error.strerror or error}"
    _failed(result.path, problem)
    return problem


class _CamRendering(Analysis):
    """`write_cams`' pictures, rendered beside the network (`CamWriter.render`)."""

    def __init__(self, writer: CamWriter) -> None:
        super().__init__(keep_cams=True)
        self.writer = writer

    def on_host(self, result: ImageResult) -> None:
        self.writer.render(result)


def write_cams(
    model: LoadedModel | ModelOptions,
    images: Sequence[str],
    out: str | Path,
    *,
    cam: CamOptions = CamOptions(topk=1),
    classes: Sequence[str] | None = None,
    files: CamFileOptions = CamFileOptions(),
    run: RunOptions = RunOptions(),
) -> RunSummary:
    """For each image and class, ``IMAGE_rankR_CLASS.png`` (a jet overlay of the CAM) in
    ``out``, and what ``files`` asks for beside it: the raw maps (``npy``: ``.feature.npy``,
    h x w, and/or ``.image.npy``, upsampled bilinearly to the image's H x W) and a folder of
    one segmentation pseudo-mask per image (``pseudo_masks``, `outputs.masks`). Inputs are
    never overwritten. ``cam``: its ``topk`` classes of each image, its map ``method`` and
    ``layer``; with its ``ten_crop``, the maps are the merged ten-crop maps (256 x 256 for a
    224 network; `ten_crop`), and
    ``.feature.npy`` holds that frame."""
    from cam_cli.outputs.cam_files import CamWriter
    from cam_cli.outputs.masks import MaskWriter

    with open_group(run.device) as group:  # under torchrun: the group
        paths, missing = group.from_rank_zero(lambda: collect_images(images))
        cam = CamOptions(  # the rest is for boxes
            topk=cam.topk, ten_crop=cam.ten_crop, method=cam.method, layer=cam.layer
        )
        localizer = _localizer(model, classes, cam, run, group, bool(paths))
        main = is_main_process()  # the others of a torchrun group render, never write
        try:
            writer = CamWriter(Path(out), paths, npy=files.npy, alpha=files.alpha, make_dir=main)
            masks = None
            if files.pseudo_masks is not None:  # every rank checks; results come to rank 0 alone
                masks = MaskWriter(files.pseudo_masks, paths, localizer.threshold)
        except (ValueError, SetupError) as error:
            localizer.close()
            raise SetupError(str(error)) from None
        for path, problem in missing if main else ():
            _failed(path, problem)
        failures = len(missing)
        try:
            for result in localizer.localize(paths, _CamRendering(writer)):  # none elsewhere
                if result.error is not None:
                    failures += 1
                    _failed(result.path, result.error)
                    continue
                try:
                    writer.write(result)
                    if masks is not None:
                        masks.write(result)
                except (ValueError, OSError) as error:
                    failures += 1
                    _failed(result.path, str(error))
        finally:
            localizer.close()
        return group.shared(RunSummary(len(paths) + len(missing), failures))


def _heatmap_boxer(
    rule: str, threshold: float, size: tuple[int, int] | None, box_backend: str, device: str
) -> Callable[[Maps], list[np.ndarray]]:
    """The ranked boxes of each map of a file, in the pixels `write_heatmap_boxes` gives them:
    per map on the host (every rule), or, for the paper's rule with a device box backend, every
    map of the file of one size and dtype in one call there (same boxes)."""
    from cam_cli.boxes.backends import resolve_box_backend
    from cam_cli.boxes.components import scale_boxes
    from cam_cli.boxes.rules import PAPER, ZHOU2016, boxes_for_image

    at_size = size is not None and rule == ZHOU2016

    def on_host(maps: Maps) -> list[np.ndarray]:
        return [
            boxes_for_image(cam, size or (cam.shape[1], cam.shape[0]), rule, threshold,
                            at_image_size=at_size)
            for cam in maps
        ]  # fmt: skip

    where = resolve_device(device)
    step = resolve_box_backend(box_backend, where) if rule == PAPER else "scipy"
    if step == "scipy":
        return on_host
    import torch

    from cam_cli.boxes.backends import device_boxes

    def on_device(maps: Maps) -> list[np.ndarray]:
        shapes = {(cam.shape, cam.dtype) for cam in maps}
        # numpy thresholds float16 maps in float16 and uint8 heatmaps in float64: the device
        # path is exact for float32/float64 (and uint8, taken as float64), the rest stay here.
        if len(shapes) != 1 or maps[0].dtype not in (np.float32, np.float64, np.uint8):
            return on_host(maps)
        stack = np.stack(list(maps))  # a stack is iterated as np.stack would
        stack = stack.astype(np.float64) if stack.dtype == np.uint8 else stack
        boxes = device_boxes(step, torch.from_numpy(stack).to(where), threshold).cpu().numpy()
        height, width = stack.shape[1:]
        target = np.tile(size or (width, height), (len(boxes), 1))
        return list(scale_boxes(boxes, (width, height), target)[:, None])

    return on_device


def write_heatmap_boxes(
    sources: Sequence[str],
    *,
    output: str | Path | IO[str] | None = None,
    fmt: str = "jsonl",
    cam: CamOptions = CamOptions(),
    size: tuple[int, int] | None = None,
    reference: str | Path | None = None,
    upsample: int | None = None,
    run: RunOptions = RunOptions(),
) -> RunSummary:
    """What `cam-cli boxes` does: boxes from saved heatmaps, with no model.

    ``sources``: ``.npy`` maps (``[H, W]`` or ``[k, H, W]``) and grey image files, as files,
    folders or ``-`` (`data.heatmaps`). One record per map, in input order:
    ``{"path", "width", "height", "boxes"}`` (``"map": i`` after the path for a stack), the
    boxes ranked by ``cam.box_rule`` (`boxes.rules`) at ``cam.threshold`` (None: the paper's
    0.2). ``upsample``: the map is first resized bilinearly
    to ``N x N``, as `bbox` resizes a CAM to the network's input size. ``size`` (W, H) or the
    size of the ``reference`` image: the boxes are given in that image's pixels, as `bbox`
    does (the paper's and all-components' boxes are scaled, rounding outwards; ``zhou2016``
    resizes the map to the image and boxes it there, as the released code did). Without
    either, boxes are in the map's own pixels. A file that cannot be used gives
    ``{"path", "error"}``, a line on the logger, and counts as failed; the run goes on.

    ``run.box_backend`` (`boxes.backends`): for the paper's rule, the maps of a file are boxed in
    one call on ``run.device`` with ``torch`` or ``triton`` (``auto``: as `bbox` picks for the
    device, scipy on the CPU); the boxes are the same as scipy's."""
    from cam_cli.boxes.rules import check_rule, resize_map
    from cam_cli.data.heatmaps import HEATMAP_EXTENSIONS, read_maps, reference_size
    from cam_cli.outputs.writers import BoxRecordWriter

    rule, box_backend, device = cam.box_rule, run.box_backend, run.device
    threshold = 0.2 if cam.threshold is None else cam.threshold  # the paper's

    try:
        check_rule(rule)
    except ValueError as error:
        raise SetupError(str(error)) from None
    check_threshold(threshold)
    if size is not None and reference is not None:
        raise SetupError("give `size` WxH or `reference` IMAGE, not both")
    check_input_size(upsample, "`upsample`", low=1)
    check_image_size(size)
    if reference is not None:
        try:
            size = reference_size(reference)
        except ValueError as error:
            raise SetupError(str(error)) from None
        check_image_size(size, f"`reference` {printable_path(reference)}: its size")
    if not sources:
        raise SetupError("no heatmaps given: use `maps` DIR|FILE|- (see `help`)")
    box_maps = _heatmap_boxer(rule, threshold, size, box_backend, device)
    found = list(find_images(sources, HEATMAP_EXTENSIONS))
    check_output_spares(output, {"`maps`": [path for path, _ in found], "`reference`": reference})
    failures = 0
    with open_output(output) as handle:
        writer = BoxRecordWriter(handle, fmt)
        for path, problem in found:
            try:
                if problem is not None:
                    raise ValueError(problem)
                maps: Maps
                maps, stacked = read_maps(path)
            except ValueError as error:
                failures += 1
                _failed(str(path), str(error))
                writer.write({"path": str(path), "error": str(error)})
                continue
            if upsample is not None:
                maps = [resize_map(heatmap, (upsample, upsample)) for heatmap in maps]
            for index, (heatmap, boxes) in enumerate(zip(maps, box_maps(maps), strict=True)):
                target = size or (heatmap.shape[1], heatmap.shape[0])
                record = {"path": str(path), **({"map": index} if stacked else {})}
                record |= {"width": target[0], "height": target[1], "boxes": boxes.tolist()}
                writer.write(record)
    return RunSummary(len(found), failures)
