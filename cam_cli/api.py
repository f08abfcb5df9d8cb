"""The library's public calls, one per command, with the same results as the command line:
`write_boxes` (``cam-cli bbox``), `write_cams` (``cam-cli cam``), `write_heatmap_boxes`
(``cam-cli boxes``), `evaluate` (``cam-cli eval``: one `EvalOptions` in, one `Report` out) and
`train` (``cam-cli train``), and the settings they take (`cam_cli.settings`,
`cam_cli.eval_options`). For your own loops, the pieces underneath: `Localizer` (and the
`Analysis` it takes), `load_model`, and `GroundTruth` (annotations read in Python, to evaluate).
"""

from __future__ import annotations

from cam_cli.data.ground_truth import GroundTruth
from cam_cli.eval_options import (
    EvalOptions,
    MetricOptions,
    OutputOptions,
    SourceOptions,
    TruthOptions,
)
from cam_cli.evaluation.report import Report
from cam_cli.inference.analysis import Analysis
from cam_cli.inference.localizer import Localizer
from cam_cli.models.loading import LoadedModel, load_model
from cam_cli.outputs.runs import RunSummary, write_boxes, write_cams, write_heatmap_boxes
from cam_cli.report.eval_run import evaluate_and_report as evaluate
from cam_cli.settings import CamFileOptions, CamOptions, ModelOptions, RunOptions
from cam_cli.training.trainer import train_from_options as train

__all__ = [
    "Analysis",
    "CamFileOptions",
    "CamOptions",
    "EvalOptions",
    "GroundTruth",
    "LoadedModel",
    "Localizer",
    "MetricOptions",
    "ModelOptions",
    "OutputOptions",
    "Report",
    "RunOptions",
    "RunSummary",
    "SourceOptions",
    "TruthOptions",
    "evaluate",
    "load_model",
    "train",
    "write_boxes",
    "write_cams",
    "write_heatmap_boxes",
]
