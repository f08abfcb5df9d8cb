"""Localization evaluation, what `cam-cli eval` runs, in one call: `evaluate` takes one
`EvalOptions` and gives one `report.Report`.

The ground truth comes from `truth.load_truth` (whatever its format); every file read is
checked against every output before any work (`inputs.check_outputs`); the source the options
name (`open_source`: a model run, `cam-cli bbox` records, score maps someone made) yields the
images one by one, and each evaluator (`evaluators.registry.EVALUATORS`) counts each image,
then puts its figure into the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import cast

from cam_cli.data.ground_truth import GroundTruth
from cam_cli.errors import SetupError
from cam_cli.eval_options import EvalOptions
from cam_cli.evaluation.evaluators.base import ScoredImage, Setup
from cam_cli.evaluation.evaluators.registry import make_evaluators
from cam_cli.evaluation.inputs import check_outputs
from cam_cli.evaluation.report import FailedImage, MissingCounts, Report, json_text
from cam_cli.evaluation.report_settings import input_settings
from cam_cli.evaluation.sources.base import Source
from cam_cli.evaluation.sources.given_maps import GivenMaps
from cam_cli.evaluation.sources.records import Records
from cam_cli.evaluation.truth import load_truth
from cam_cli.files.atomic import write_text_atomic
from cam_cli.runtime.distributed import is_main_process


def evaluate(options: EvalOptions, on_image: Callable[[ScoredImage], None] | None = None) -> Report:
    """Every figure `options` asks for, on the ground truth it names; the JSON report written
    when ``outputs.json_report`` names a file. Raises `errors.EvaluationError` (or another
    `errors.SetupError`) naming the options or the file when they cannot give a correct
    report, before the first image is run; images that fail are figures (counted as wrong).
    ``on_image``: shown each image once every evaluator has counted it (its per-image line
    whole), so a caller keeps what it wants of the run as it goes (`report.eval_run`)."""
    options.validate()
    truth = load_truth(options.truth)
    check_outputs(options, truth)
    with open_source(options, truth) as source:
        evaluators = make_evaluators(Setup(options, truth, source.mode))
        images, failed = 0, []
        for image in source.images(evaluators):
            for evaluator in evaluators:
                evaluator.accumulate(image)
            if on_image is not None:
                on_image(image)
            images += 1
            if image.error is not None:
                failed.append(FailedImage(path=image.path, error=image.error))

        def make() -> Report:
            settings = {"mode": source.mode, **input_settings(options), **source.settings}
            missing = cast(MissingCounts, source.missing.as_dict())
            report = Report(images, len(failed), failed, missing, settings)
            report = replace(report, resumed_images=source.resumed)
            for evaluator in evaluators:
                report = evaluator.compute(report)
            return report

        report = source.report(make)
    write_json_report(report, options.outputs.json_report)
    return report


@contextmanager
def open_source(options: EvalOptions, truth: GroundTruth) -> Iterator[Source]:
    """The source the options name (`EvalOptions.mode`); a new kind is one more branch."""
    if options.mode == "scoremaps":
        yield GivenMaps(options, truth)
    elif options.mode == "predictions":
        yield Records(options, truth)
    else:  # torch is imported only when a model runs: records and maps need none
        from cam_cli.evaluation.sources.model_run import model_run

        with model_run(options, truth) as source:
            yield source


def write_json_report(report: Report, path: str | Path | None) -> None:
    """The JSON report, atomically, by rank 0 alone under torchrun (``-``: the caller's)."""
    if path is None or str(path) == "-" or not is_main_process():
        return
    try:
        write_text_atomic(json_text(report), path)
    except OSError as error:
        raise SetupError(f"{path}: cannot write ({error})") from None
