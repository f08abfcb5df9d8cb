"""Every file an evaluation reads (`input_files`), whatever option brought it in, and the check
that no output is one of them (`check_outputs`), both before the first image is run.

The inputs are the ground truth's files (annotations, a CUB root's tables, the four metadata
files, the masks), the images (a folder's, CUB's, those an ``images`` root gives a metadata
split), the model's files, the records, the score maps, the report thresholds are carried from
and another classifier's classes. The outputs are the JSON report, the per-image file, the
HTML report and the score maps to save.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cam_cli.data.ground_truth import GroundTruth
from cam_cli.data.images import list_images
from cam_cli.errors import EvaluationError
from cam_cli.eval_options import EvalOptions
from cam_cli.evaluation.resume import check_per_image_file
from cam_cli.evaluation.scoremap_files import scoremap_id, scoremap_path, scoremaps_to_read
from cam_cli.files.checks import (
    check_output_dir,
    check_output_file,
    check_outputs_spare_inputs,
    printable_path,
)
from cam_cli.settings import ModelOptions

Files = dict[str, list[str | Path]]


def input_files(options: EvalOptions, truth: GroundTruth) -> Files:
    """Every file the evaluation reads, by the option that named it (folders walked, a
    metadata split's ids resolved); ``-`` (stdin) is no file."""
    files: Files = {name: list(paths) for name, paths in truth.files.items()}
    mode = options.mode
    if mode != "predictions" and truth.images is not None:
        files["images"] = _images(truth.images)
    source, metrics = options.source, options.metrics
    if isinstance(source.model, ModelOptions):
        model = source.model
        if mode == "model":
            files["weights"] = [w for w in (model.weights,) if w not in (None, "imagenet")]
            files["checkpoint"] = [c for c in (model.checkpoint,) if c is not None]
            files["onnx"] = [f for f in (model.onnx,) if f is not None]
        if mode != "scoremaps" and model.classes_file is not None:
            files["classes_file"] = [model.classes_file]
    if isinstance(source.predictions, str | Path) and str(source.predictions) != "-":
        files["predictions"] = [source.predictions]
    if source.scoremaps is not None:
        files["scoremaps"] = list(scoremaps_to_read(source.scoremaps, truth.image_ids).values())
    for name in ("cam_threshold_from", "class_predictions"):
        given = getattr(metrics, name)
        if given is not None:
            files[name] = [given]
    return files


def _images(images: str | Path | Mapping[str, str | Path]) -> list[str | Path]:
    if isinstance(images, Mapping):
        return list(images.values())
    if Path(images).is_dir():
        return list(list_images(images))
    return [images]


def check_outputs(options: EvalOptions, truth: GroundTruth) -> None:
    """Every output writable, and none of them a file the evaluation reads (`input_files`),
    nor a score map it will save; a per-image file must be one of cam-cli's (never cut,
    appended to or replaced otherwise). Each failure one `SetupError` naming the file."""
    outputs = options.outputs
    written = {"`json_report`": outputs.json_report, "`per_image`": outputs.per_image}
    if outputs.html_report is not None:  # a default run's checks stay exactly as they were
        written["`html_report`"] = outputs.html_report
    for option, path in written.items():
        check_output_file(path, option)
    if outputs.save_scoremaps is not None:
        check_output_dir(outputs.save_scoremaps, "`save_scoremaps`")
    files = [path for path in written.values() if path is not None and str(path) != "-"]
    if files:
        inputs = {f"`{name}`": paths for name, paths in input_files(options, truth).items()}
        check_outputs_spare_inputs(written, inputs)
        if outputs.save_scoremaps is not None:
            _check_not_a_saved_map(written, outputs.save_scoremaps, truth)
    if outputs.per_image is not None:
        check_per_image_file(outputs.per_image)


def _check_not_a_saved_map(
    written: Mapping[str, str | Path | None], folder: str | Path, truth: GroundTruth
) -> None:
    """An output inside the score-map folder must not be the map of an image to run."""
    root = Path(os.path.abspath(folder))
    inside = {
        option: Path(os.path.abspath(path))
        for option, path in written.items()
        if path is not None and str(path) != "-" and root in Path(os.path.abspath(path)).parents
    }
    base = truth.base()
    if not inside or base is None or truth.images is None:
        return
    planned = {scoremap_path(root, scoremap_id(image, base)) for image in _images(truth.images)}
    for option, path in inside.items():
        if path in planned:
            raise EvaluationError(
                f"{option} {printable_path(path)}: is the score map `save_scoremaps` writes for "
                "an image; give another file"
            )
