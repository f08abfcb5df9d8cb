"""What a report says about how it was made (`report.Report.settings`): the inputs (paths
absolute), then each source's own entries; only what differs from the defaults, so a default
run's report keeps the entries it always had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cam_cli.eval_options import EvalOptions, TruthOptions
from cam_cli.settings import ModelOptions


def absolute(path: str | Path) -> str:
    """Paths in the report are absolute, so a report says where its inputs were."""
    return str(Path(path).resolve()) if str(path) != "-" and Path(path).exists() else str(path)


def input_settings(options: EvalOptions) -> dict[str, Any]:
    """The inputs by option, in the report's order (ground truth given in Python has none)."""
    truth, source = options.truth, options.source
    files = TruthOptions() if not isinstance(truth, TruthOptions) else truth
    model = source.model if isinstance(source.model, ModelOptions) else ModelOptions()
    model_run = options.mode == "model"
    predictions = source.predictions if isinstance(source.predictions, str | Path) else None
    paths = {
        "predictions": predictions,
        "images": files.images,
        "annotations": files.annotations,
        "meta": files.meta,
        "cub": files.cub,
        "wsol_metadata": files.wsol_metadata,
        "mask_root": files.mask_root,
        "classes": model.classes_file if options.mode != "scoremaps" else None,
        "weights": model.weights if model_run else None,
        "checkpoint": model.checkpoint if model_run else None,
        "onnx": model.onnx if model_run else None,
        "scoremaps": source.scoremaps,
    }
    settings: dict[str, Any] = {k: absolute(v) for k, v in paths.items() if v is not None}
    if files.annotations_format is not None:
        settings["annotations_format"] = files.annotations_format
    if files.cub is not None:
        settings["split"] = files.split or "test"
    return settings


def box_settings(box_rule: str = "paper", ten_crop: bool = False, boxes: int = 1) -> dict:
    """The box settings that differ from the defaults (none for a default run)."""
    given = {"box_rule": box_rule, "ten_crop": ten_crop, "boxes": boxes}
    defaults = {"box_rule": "paper", "ten_crop": False, "boxes": 1}
    return {key: value for key, value in given.items() if value != defaults[key]}


def maxboxacc_settings(
    protocol: str | None, save_scoremaps: str | Path | None, carried_from: str | Path | None
) -> dict[str, Any]:
    """Report entries of the MaxBoxAcc options: its ``protocol`` (None: no MaxBoxAccV2), the
    score-map folder written, the report the thresholds were carried from."""
    settings: dict[str, Any] = {} if protocol is None else {"maxboxacc_protocol": protocol}
    if save_scoremaps is not None:
        settings["save_scoremaps"] = str(Path(save_scoremaps).resolve())
    if carried_from is not None:
        settings["cam_threshold_from"] = str(Path(carried_from).resolve())
    return settings
