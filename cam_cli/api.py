"""The library's public calls, one per command, with the same results as the command line:
`write_boxes` (``cam-cli bbox``), `write_cams` (``cam-cli cam``), `write_heatmap_boxes`
(``cam-cli boxes``), `evaluate` (``cam-cli eval``) and `train` (``cam-cli train``), and the
settings they take (`cam_cli.settings`). For your own loops, the pieces underneath:
`Localizer` (and the `Analysis` it takes), `load_model`, `evaluate_model`.
"""

from __future__ import annotations

from cam_cli.evaluation.evaluate import (
    evaluate,
    evaluate_mask_scoremaps,
    evaluate_predictions,
    evaluate_scoremaps,
)
from cam_cli.evaluation.model_run import evaluate_model
from cam_cli.inference.analysis import Analysis
from cam_cli.inference.jobs import RunSummary, write_boxes, write_cams, write_heatmap_boxes
from cam_cli.inference.localizer import Localizer
from cam_cli.models.loading import LoadedModel, load_model
from cam_cli.settings import CamOptions, ModelOptions, RunOptions
from cam_cli.training.trainer import train_from_options as train

__all__ = [
    "Analysis",
    "CamOptions",
    "LoadedModel",
    "Localizer",
    "ModelOptions",
    "RunOptions",
    "RunSummary",
    "evaluate",
    "evaluate_mask_scoremaps",
    "evaluate_model",
    "evaluate_predictions",
    "evaluate_scoremaps",
    "load_model",
    "train",
    "write_boxes",
    "write_cams",
    "write_heatmap_boxes",
]
