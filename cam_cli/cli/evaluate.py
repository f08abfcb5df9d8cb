"""`cam-cli eval`: options -> `evaluation.evaluate.evaluate` -> the table and the JSON.

Every mismatch the library finds is a usage error (exit 2); failed images are figures, not
errors (exit 1, after the table).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cam_cli.cli import options as o
from cam_cli.settings import CubSplit, MaxBoxAccProtocolName

MODEL_OPTIONS = (
    "arch",
    "weights",
    "checkpoint",
    "normalize",
    "input_size",
    "threshold",
    "fast",
    "compile_model",
    "decode",
    "box_rule",
    "ten_crop",
)


def _given(ctx: typer.Context, name: str) -> bool:
    """Was the option on the command line (not just its default)?"""
    source = ctx.get_parameter_source(name)  # click's ParameterSource (typer vendors click)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _same(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _option(name: str) -> str:
    return {"compile_model": "--compile"}.get(name, "--" + name.replace("_", "-"))


@o.with_option_groups
def eval_command(
    ctx: typer.Context,
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations",
            help="Ground truth: a folder of ILSVRC XML, Kaggle LOC_val_solution.csv, or the "
            "devkit's ILSVRC2012_validation_ground_truth.txt (with --meta; labels only).",
            show_default=False,
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            "-i",
            help="Folder of images (flat, or <wnid>/ sub-folders), matched to the annotations "
            "by file stem.",
            show_default=False,
        ),
    ] = None,
    predictions: Annotated[
        str | None,
        typer.Option(
            "--predictions",
            help="Score the JSON Lines of `cam-cli bbox --topk 5` (FILE, or '-' for stdin) "
            "instead of running a model.",
            show_default=False,
        ),
    ] = None,
    meta: Annotated[
        Path | None,
        typer.Option(
            help="The devkit's meta.mat, to read ILSVRC2012_IDs as wnids.", show_default=False
        ),
    ] = None,
    cub: Annotated[
        Path | None,
        typer.Option(
            help="CUB_200_2011 folder: images, boxes, labels and classes from its own files.",
            show_default=False,
        ),
    ] = None,
    split: Annotated[CubSplit, typer.Option(help="CUB split: test, train or all.")] = CubSplit.test,
    wsol_metadata: Annotated[
        Path | None,
        typer.Option(
            "--wsol-metadata",
            help="Ground truth in wsolevaluation's metadata: a split folder with image_ids.txt, "
            "class_labels.txt, image_sizes.txt, localization.txt (boxes, or masks: PxAP). "
            "Images are --images ROOT/<id>.",
            show_default=False,
        ),
    ] = None,
    mask_root: Annotated[
        Path | None,
        typer.Option(
            "--mask-root",
            help="Folder the mask paths of --wsol-metadata are relative to (default: --images).",
            show_default=False,
        ),
    ] = None,
    model: o.ModelArgs = o.ModelArgs(),
    threshold: o.ModelThreshold = None,
    box_rule: o.BoxRuleOption = o.BoxRule.paper,
    ten_crop: o.TenCrop = False,
    boxes: Annotated[
        int,
        typer.Option(
            "--boxes",
            min=1,
            max=2,
            help="2: also score each class's second box, either box, and the released "
            "bboxCombine, as ILSVRC_evaluate_bbox.m did (needs --box-rule zhou2016, or records "
            "made with it).",
        ),
    ] = 1,
    maxboxacc: Annotated[
        bool,
        typer.Option(
            "--maxboxacc",
            help="Also MaxBoxAccV2 (CAM threshold sweep, every box, IoU 0.3/0.5/0.7) from the "
            "true class's CAM, as wsolevaluation computes it (see --maxboxacc-protocol).",
        ),
    ] = False,
    maxboxacc_protocol: Annotated[
        MaxBoxAccProtocolName,
        typer.Option(
            "--maxboxacc-protocol",
            help="wsol: wsolevaluation's BoxEvaluator rule for rule (bicubic 224x224 score map, "
            "truncated ground truth, every contour's boundingRect). cam-cli: the figure before "
            "(bilinear CAM, outward-rounded ground truth, tight component boxes).",
        ),
    ] = MaxBoxAccProtocolName.wsol,
    save_scoremaps: Annotated[
        Path | None,
        typer.Option(
            "--save-scoremaps",
            help="Write each image's true-class score map as wsolevaluation's inference.py "
            "does: DIR/<image id>.npy (e.g. DIR/val/ILSVRC2012_val_00000001.JPEG.npy), 224x224 "
            "float64 in [0, 1]; the id is the image's path below the folder above --images.",
            show_default=False,
        ),
    ] = None,
    scoremaps: Annotated[
        Path | None,
        typer.Option(
            "--scoremaps",
            help="Score the .npy score maps in DIR (wsolevaluation's layout, anyone's) with "
            "MaxBoxAccV2, no model; matched to the annotations by image file stem.",
            show_default=False,
        ),
    ] = None,
    cam_threshold_from: Annotated[
        Path | None,
        typer.Option(
            "--cam-threshold-from",
            help="An earlier `eval --maxboxacc --json` report (another split): also report "
            "MaxBoxAccV2 at its best CAM thresholds, not this split's.",
            show_default=False,
        ),
    ] = None,
    class_predictions: Annotated[
        Path | None,
        typer.Option(
            "--class-predictions",
            help='Another classifier\'s top-k classes per image (JSON Lines {"image", '
            '"classes"} or CSV image,class1,class2,...; wnids or indices, best first): '
            "classification and top-1/top-5 localization error use them, each class boxed "
            "from its own CAM.",
            show_default=False,
        ),
    ] = None,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="Evaluate the matched images when some images or annotations have no "
            "counterpart (the output says how many were left out).",
        ),
    ] = False,
    json_out: Annotated[
        str | None,
        typer.Option(
            "--json",
            help="Write every figure, the counts and the settings as JSON to FILE, or '-' "
            "(stdout; the table then goes to stderr).",
            show_default=False,
        ),
    ] = None,
    per_image: Annotated[
        Path | None,
        typer.Option(
            "--per-image",
            help="JSON Lines, one per image: predictions, ground truth, IoUs, right or wrong. "
            "With a model it is written as the run goes and an interrupted run resumes from it.",
            show_default=False,
        ),
    ] = None,
    run: o.RunArgs = o.RunArgs(),
    quiet: o.Quiet = False,
) -> None:
    """ILSVRC localization error (top-1/top-5, GT-known, baselines; MaxBoxAccV2 on request).

    Runs a model over annotated images, or scores the output of `cam-cli bbox --topk 5`
    (--predictions) with no model. Images and annotations are matched by file stem; anything
    unmatched, an unknown label or a class-order mismatch stops with exit code 2
    (--allow-missing evaluates the matched ones and says how many were left out). Images that
    fail to load count as wrong and give exit code 1 after the table.

    Examples:

    \b
      cam-cli eval --arch mobilenet_v2 --weights mobilenet_v2-imagenet.pth \\
        --classes LOC_synset_mapping.txt --images val/ --annotations LOC_val_solution.csv

    \b
      cam-cli bbox --checkpoint best.pt --images val/ --topk 5 \\
        | cam-cli eval --predictions - --annotations val_xml/

    \b
      cam-cli eval --checkpoint cub.pt --cub CUB_200_2011 --maxboxacc --json report.json

    \b
      cam-cli eval ... --maxboxacc --save-scoremaps maps/        # wsolevaluation's layout
      cam-cli eval --scoremaps maps/ --annotations val_xml/      # anyone's maps, no model
    """
    _check_options(
        ctx, annotations, images, predictions, meta, cub, model.classes, scoremaps, wsol_metadata
    )
    _check_wsol_options(ctx, predictions, scoremaps, save_scoremaps, cam_threshold_from, maxboxacc)
    if class_predictions is not None and (predictions is not None or scoremaps is not None):
        raise o.fail("--class-predictions goes with a model run (its boxes come from the CAMs)")
    if mask_root is not None and wsol_metadata is None:
        raise o.fail("--mask-root goes with --wsol-metadata")
    if per_image is not None and str(per_image) == "-":
        raise o.fail("--per-image needs a FILE (stdout carries the table or the JSON)")
    if json_out not in (None, "-") and per_image is not None and _same(json_out, per_image):
        raise o.fail("--json and --per-image must be different files")
    o.configure_logging(quiet)
    inputs = {"--annotations": annotations, "--images": images, "--predictions": predictions,
              "--meta": meta, "--cub": cub, "--scoremaps": scoremaps,
              "--cam-threshold-from": cam_threshold_from,
              "--class-predictions": class_predictions,
              "--wsol-metadata": wsol_metadata, "--mask-root": mask_root}  # fmt: skip
    o.check_before_work(
        inputs={**inputs, **model.inputs()},
        outputs={"--json": json_out, "--per-image": per_image},
        input_size=model.input_size,
    )
    from cam_cli.evaluation.evaluate import evaluate
    from cam_cli.evaluation.report import format_report

    with o.errors_as_exit():
        report = evaluate(
            annotations=annotations,
            cub=cub,
            split=split.value,
            meta=meta,
            images=images,
            predictions=predictions,
            model=None if predictions is not None or scoremaps is not None else model.options(),
            classes_file=model.classes if predictions is not None else None,
            allow_missing=allow_missing,
            threshold=threshold,
            maxboxacc=maxboxacc,
            per_image=per_image,
            box_rule=box_rule.value,
            ten_crop=ten_crop,
            boxes=boxes,
            outputs={"--json": json_out},
            maxboxacc_protocol=maxboxacc_protocol.value,
            save_scoremaps=save_scoremaps,
            scoremaps=scoremaps,
            cam_threshold_from=cam_threshold_from,
            class_predictions=class_predictions,
            wsol_metadata=wsol_metadata,
            mask_root=mask_root,
            run=None if predictions is not None or scoremaps is not None else run.options(quiet),
        )
    if not o.main_process():  # under torchrun rank 0 writes the report and ends the run
        return
    from cam_cli.files.checks import printable, strict_json

    report = strict_json(printable(report))  # names that are not UTF-8 escaped, no NaN
    with o.errors_as_exit():  # a closed stdout (`| head`) ends it quietly
        _write_outputs(report, format_report(report), json_out)
    raise typer.Exit(o.EXIT_SOME_FAILED if report["failed_images"] else o.EXIT_OK)


def _check_wsol_options(ctx, predictions, scoremaps, save_scoremaps, threshold_from, maxboxacc):
    """The wsolevaluation options: which mode each belongs to."""
    if scoremaps is not None:
        extra = [_option(n) for n in (*MODEL_OPTIONS, "boxes") if _given(ctx, n)]
        extra += [name for name, value in (("--predictions", predictions),
                  ("--save-scoremaps", save_scoremaps)) if value is not None]  # fmt: skip
        extra += ["--per-image"] if _given(ctx, "per_image") else []
        if extra:
            raise o.fail(
                f"--scoremaps scores saved maps without a model; leave out {', '.join(extra)}"
            )
    elif save_scoremaps is not None and predictions is not None:
        raise o.fail("--save-scoremaps needs a model run; leave out --predictions")
    model_run = scoremaps is None and predictions is None
    if model_run and threshold_from is not None and not maxboxacc:
        raise o.fail("--cam-threshold-from carries MaxBoxAccV2's thresholds: add --maxboxacc")
    if predictions is not None and threshold_from is not None:
        raise o.fail("--cam-threshold-from needs MaxBoxAccV2: a model run or --scoremaps")
    if save_scoremaps is not None and save_scoremaps.exists() and not save_scoremaps.is_dir():
        raise o.fail(f"{save_scoremaps}: --save-scoremaps needs a folder; this is a file")


def _check_options(
    ctx, annotations, images, predictions, meta, cub, classes, scoremaps=None, wsol=None
) -> None:
    """Which mode, which ground truth; refuse options that would be silently ignored."""
    if sum(source is not None for source in (annotations, cub, wsol)) != 1:
        raise o.fail(
            "give the ground truth: --annotations PATH or --cub ROOT or --wsol-metadata DIR "
            "(one of them)"
        )
    if meta is not None and annotations is None:
        raise o.fail("--meta goes with --annotations ILSVRC2012_validation_ground_truth.txt")
    if _given(ctx, "split") and cub is None:
        raise o.fail("--split goes with --cub")
    if cub is not None and classes is not None:
        raise o.fail("with --cub the classes come from CUB's classes.txt; leave out --classes")
    if scoremaps is not None:
        return  # the images are optional there (image sizes); see _check_wsol_options
    if predictions is not None:
        extra = [_option(n) for n in (*MODEL_OPTIONS, "maxboxacc") if _given(ctx, n)]
        if images is not None:
            extra.append("--images")
        if extra:
            raise o.fail(
                f"--predictions scores records without a model; leave out {', '.join(extra)} "
                "(GT-known error and --maxboxacc need a model run)"
            )
    elif cub is None and images is None and wsol is not None:
        raise o.fail("give the images: --images ROOT, the folder the ids of image_ids.txt are in")
    elif cub is None and images is None:
        raise o.fail("give the images: --images DIR (or --predictions FILE|- from `cam-cli bbox`)")
    elif cub is not None and images is not None:
        raise o.fail("with --cub the images come from ROOT/images; leave out --images")


def _write_outputs(report: dict, table: str, json_out: str | None) -> None:
    """Table on stdout (stderr when the JSON goes to stdout); JSON atomically to its file."""
    from cam_cli.files.atomic import write_text_atomic

    text = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if json_out == "-":
        typer.echo(table, err=True)
        typer.echo(text, nl=False)
        return
    typer.echo(table)
    if json_out is not None:
        try:
            write_text_atomic(text, json_out)
        except OSError as error:
            raise o.fail(f"{json_out}: cannot write ({error})") from None
