"""What an evaluation is asked (`cam-cli eval`, `api.evaluate`), as plain data: the ground truth
(`TruthOptions`), where the maps or boxes come from (`SourceOptions`), which figures
(`MetricOptions`) and which files to write (`OutputOptions`), in one `EvalOptions` whose
`EvalOptions.validate` holds every rule on which of them go together.

Frozen dataclasses with nothing that runs, torch-free like `settings`: the command line builds
one without importing torch. Errors name the options by their field names in backticks
(```cub```, ```json_report```), which the command line turns into its flags
(`cli.options.FLAGS`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cam_cli.data.interchange import FORMATS
from cam_cli.errors import EvaluationError
from cam_cli.settings import CamOptions, MaxBoxAccProtocolName, ModelOptions, RunOptions, choices

if TYPE_CHECKING:
    from cam_cli.data.ground_truth import GroundTruth
    from cam_cli.models.loading import LoadedModel

PathLike = str | Path
MODES = ("model", "predictions", "scoremaps")


@dataclass(frozen=True)
class TruthOptions:
    """The ground truth, as files: ``annotations`` (a folder of ILSVRC XML, the Kaggle CSV,
    the devkit's ground-truth ``.txt`` with its ``meta``), a ``cub`` root and its ``split``
    (None: ``test``), or a split of wsolevaluation metadata (``wsol_metadata``, mask paths
    under ``mask_root``, default ``images``). ``images``: the folder of the images (matched by
    file stem), or with ``wsol_metadata`` the root its ids are relative to; CUB brings its own.
    ``annotations_format``: how ``annotations`` is read (`data.interchange.FORMATS`: Pascal
    VOC, YOLO, COCO instances or the plain CSV, with classes by name; ``ilsvrc``: ILSVRC's
    own); None tells it from the path.
    """

    annotations: PathLike | None = None
    meta: PathLike | None = None
    cub: PathLike | None = None
    split: str | None = None
    wsol_metadata: PathLike | None = None
    mask_root: PathLike | None = None
    images: PathLike | None = None
    annotations_format: str | None = None


@dataclass(frozen=True)
class SourceOptions:
    """Where each image's boxes or maps come from: a ``model`` run (`ModelOptions` to load it
    from, or a model already loaded), with its ``cam`` and ``run`` settings; the ``predictions``
    of a `cam-cli bbox` run (a file, ``-`` for stdin, an open stream or records in Python), whose
    classes ``model.classes_file`` checks; or a folder of ``scoremaps`` (wsolevaluation's
    layout). The mode is the first given of ``scoremaps``, ``predictions``, the model."""

    model: ModelOptions | LoadedModel = field(default_factory=ModelOptions)
    cam: CamOptions = field(default_factory=CamOptions)
    run: RunOptions = field(default_factory=RunOptions)
    predictions: PathLike | IO[str] | Iterable[Mapping[str, Any]] | None = None
    scoremaps: PathLike | None = None


@dataclass(frozen=True)
class MetricOptions:
    """Which figures besides the ILSVRC ones (top-1/top-5 classification and localization
    error, GT-known error with a model; PxAP comes with masks): ``maxboxacc`` (MaxBoxAccV2 by
    ``maxboxacc_protocol``, ``wsol`` or ``cam-cli``; also at the CAM thresholds of an earlier
    report, ``cam_threshold_from``), ``boxes=2`` (each class's second box, as the released
    evaluation), ``class_predictions`` (another classifier's classes, boxed from their own
    CAMs); ``allow_missing``: score the matched images when some have no counterpart;
    ``faithfulness``: Average Drop, Increase in Confidence and Deletion / Insertion AUC of each
    image's top-1 map (a model run; `cam.faithfulness`)."""

    maxboxacc: bool = False
    maxboxacc_protocol: str = MaxBoxAccProtocolName.wsol.value
    cam_threshold_from: PathLike | None = None
    boxes: int = 1
    class_predictions: PathLike | None = None
    allow_missing: bool = False
    faithfulness: bool = False


@dataclass(frozen=True)
class OutputOptions:
    """The files an evaluation writes: ``per_image`` (JSON Lines, one per image; a model run
    resumes from it), ``save_scoremaps`` (a folder of wsolevaluation's score maps) and
    ``json_report`` (the report as JSON; ``-``: the caller prints it, `report.json_text`),
    ``html_report`` (one HTML page of the run, `report.eval_run`; needs matplotlib). None of
    them may be a file the evaluation reads."""

    per_image: PathLike | None = None
    save_scoremaps: PathLike | None = None
    json_report: PathLike | None = None
    html_report: PathLike | None = None


@dataclass(frozen=True)
class EvalOptions:
    """One evaluation: `evaluation.evaluate.evaluate` takes it whole. ``truth`` may also be a
    `data.ground_truth.GroundTruth` already in memory (annotations read in Python)."""

    truth: TruthOptions | GroundTruth
    source: SourceOptions = field(default_factory=SourceOptions)
    metrics: MetricOptions = field(default_factory=MetricOptions)
    outputs: OutputOptions = field(default_factory=OutputOptions)

    @property
    def mode(self) -> str:
        """``scoremaps``, ``predictions`` or ``model``: where the figures come from."""
        if self.source.scoremaps is not None:
            return "scoremaps"
        if self.source.predictions is not None:
            return "predictions"
        return "model"

    def validate(self) -> None:
        """Every rule on which options go together, before anything is read: raises
        `EvaluationError` naming the options that clash (and what to do)."""
        if isinstance(self.truth, TruthOptions):
            _check_truth(self.truth, self.source)
        checks = {"scoremaps": _check_scoremaps, "predictions": _check_predictions}
        checks.get(self.mode, _check_model_run)(self)
        _check_metrics(self)
        _check_outputs(self)


# --- the rules, in the order they are checked ---------------------------------------------------


def _model_given(model: ModelOptions | LoadedModel) -> list[str]:
    """The model options set (beyond the class list, which checks records too)."""
    if not isinstance(model, ModelOptions):
        return ["model"]
    names = ("arch", "weights", "checkpoint", "normalize", "input_size", "onnx")
    return [name for name in names if getattr(model, name) is not None]


def _model_run_given(source: SourceOptions) -> list[str]:
    """The options only a model run takes, set to anything but their defaults, in the order
    of the command line's help (`MODEL_OPTIONS` of `cli.evaluate`)."""
    cam, run = source.cam, source.run
    given = {
        "threshold": cam.threshold is not None,
        "fast": run.fast is not None,
        "compile_model": run.compile_model,
        "decode": run.decode != "auto",
        "box_rule": cam.box_rule != "paper",
        "ten_crop": cam.ten_crop,
    }
    return _model_given(source.model) + [name for name, value in given.items() if value]


def _check_truth(truth: TruthOptions, source: SourceOptions) -> None:
    """Which ground truth; options that would be silently ignored."""
    if sum(given is not None for given in (truth.annotations, truth.cub, truth.wsol_metadata)) != 1:
        raise EvaluationError(
            "give the ground truth: `annotations` PATH or `cub` ROOT or `wsol_metadata` DIR "
            "(one of them)"
        )
    if truth.meta is not None and truth.annotations is None:
        raise EvaluationError(
            "`meta` goes with `annotations` ILSVRC2012_validation_ground_truth.txt"
        )
    if truth.annotations_format is not None and truth.annotations is None:
        raise EvaluationError("`annotations_format` goes with `annotations`")
    if truth.annotations_format is not None and truth.annotations_format not in FORMATS:
        raise EvaluationError(
            f"`annotations_format` must be one of {', '.join(FORMATS)}, "
            f"not {truth.annotations_format!r}"
        )
    if truth.split is not None and truth.cub is None:
        raise EvaluationError("`split` goes with `cub`")
    if truth.split is not None and truth.split not in ("test", "train", "all"):
        raise EvaluationError(f"`split` must be test, train or all, not {truth.split!r}")
    classes = source.model.classes_file if isinstance(source.model, ModelOptions) else None
    if truth.cub is not None and classes is not None:
        raise EvaluationError(
            "with `cub` the classes come from CUB's classes.txt; leave out `classes_file`"
        )
    if truth.mask_root is not None and truth.wsol_metadata is None:
        raise EvaluationError("`mask_root` goes with `wsol_metadata`")


def _check_scoremaps(options: EvalOptions) -> None:
    """Score maps are scored without a model: nothing of a model run may be set."""
    source, outputs = options.source, options.outputs
    extra = _model_run_given(source) + (["boxes"] if options.metrics.boxes != 1 else [])
    extra += [name for name, value in (("predictions", source.predictions),
              ("save_scoremaps", outputs.save_scoremaps),
              ("per_image", outputs.per_image)) if value is not None]  # fmt: skip
    if extra:
        named = ", ".join(f"`{name}`" for name in extra)
        raise EvaluationError(f"`scoremaps` scores saved maps without a model; leave out {named}")


def _check_predictions(options: EvalOptions) -> None:
    """Records are scored without a model: nothing of a model run may be set."""
    extra = _model_run_given(options.source) + (["maxboxacc"] if options.metrics.maxboxacc else [])
    if isinstance(options.truth, TruthOptions) and options.truth.images is not None:
        extra.append("images")
    if extra:
        named = ", ".join(f"`{name}`" for name in extra)
        raise EvaluationError(
            f"`predictions` scores records without a model; leave out {named} "
            "(GT-known error and `maxboxacc` need a model run)"
        )
    if options.outputs.save_scoremaps is not None:
        raise EvaluationError("`save_scoremaps` needs a model run; leave out `predictions`")
    if options.metrics.cam_threshold_from is not None:
        raise EvaluationError("`cam_threshold_from` needs MaxBoxAccV2: a model run or `scoremaps`")


def _check_model_run(options: EvalOptions) -> None:
    """A model needs images to run over."""
    truth = options.truth
    if isinstance(truth, TruthOptions):
        if truth.cub is None and truth.images is None and truth.wsol_metadata is not None:
            raise EvaluationError(
                "give the images: `images` ROOT, the folder the ids of image_ids.txt are in"
            )
        if truth.cub is None and truth.images is None:
            raise EvaluationError(
                "give the images: `images` DIR (or `predictions` FILE|- from `cam-cli bbox`)"
            )
        if truth.cub is not None and truth.images is not None:
            raise EvaluationError("with `cub` the images come from ROOT/images; leave out `images`")
    if options.metrics.cam_threshold_from is not None and not options.metrics.maxboxacc:
        raise EvaluationError(
            "`cam_threshold_from` carries MaxBoxAccV2's thresholds: add `maxboxacc`"
        )


def _check_metrics(options: EvalOptions) -> None:
    """The figures' own options."""
    metrics, mode = options.metrics, options.mode
    save = options.outputs.save_scoremaps
    if save is not None and Path(save).exists() and not Path(save).is_dir():
        raise EvaluationError(f"{save}: `save_scoremaps` needs a folder; this is a file")
    if metrics.class_predictions is not None and mode != "model":
        raise EvaluationError(
            "`class_predictions` goes with a model run (its boxes come from the CAMs)"
        )
    names = choices(MaxBoxAccProtocolName)
    if metrics.maxboxacc_protocol not in names:
        raise EvaluationError(
            f"unknown MaxBoxAccV2 protocol {metrics.maxboxacc_protocol!r}; expected one of "
            f"{', '.join(names)}"
        )
    if metrics.boxes not in (1, 2):
        raise EvaluationError(
            f"`boxes` must be 1 or 2 (as the released evaluation), not {metrics.boxes}"
        )
    if metrics.boxes == 2 and mode == "model" and options.source.cam.box_rule == "paper":
        raise EvaluationError("`boxes` 2 needs a rule that ranks boxes: `box_rule` zhou2016")
    if metrics.boxes == 2 and mode == "model" and options.outputs.per_image is not None:
        raise EvaluationError("`boxes` 2 cannot resume from `per_image` yet; leave one out")
    if save is not None and metrics.maxboxacc_protocol == MaxBoxAccProtocolName.cam_cli.value:
        raise EvaluationError(
            "`save_scoremaps` writes wsolevaluation's maps (bicubic from the "
            "feature-resolution CAM); use it with `maxboxacc_protocol` wsol"
        )


def _check_outputs(options: EvalOptions) -> None:
    """The files written: the per-image lines need a file of their own."""
    per_image, json_report = options.outputs.per_image, options.outputs.json_report
    if per_image is not None and str(per_image) == "-":
        raise EvaluationError("`per_image` needs a FILE (stdout carries the table or the JSON)")
    if (
        json_report is not None
        and per_image is not None
        and str(json_report) != "-"
        and Path(json_report).resolve() == Path(per_image).resolve()
    ):
        raise EvaluationError("`json_report` and `per_image` must be different files")
    if options.outputs.html_report is not None:
        _check_html_report(options.outputs)


def _check_html_report(outputs: OutputOptions) -> None:
    """A page of its own, and matplotlib to draw its plots: said now, before any image."""
    page = outputs.html_report
    if str(page) == "-":
        raise EvaluationError("`html_report` needs a FILE (stdout carries the table or the JSON)")
    for name in ("json_report", "per_image"):
        other = getattr(outputs, name)
        if (
            other is not None
            and str(other) != "-"
            and Path(other).resolve() == Path(str(page)).resolve()
        ):
            raise EvaluationError(f"`html_report` and `{name}` must be different files")
    if importlib.util.find_spec("matplotlib") is None:
        raise EvaluationError(
            "`html_report` draws its plots with matplotlib: pip install 'cam-cli[report]'"
        )
