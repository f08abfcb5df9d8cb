"""`cam-cli eval`: options -> one `EvalOptions` -> `report.eval_run.evaluate_and_report` (which is
`evaluation.evaluate.evaluate` unless ``--report`` asks for a page too) -> the table
(and the JSON on stdout with ``--json -``).

Every rule on which options go together is the library's (`EvalOptions.validate`); every
mismatch it finds is a usage error (exit 2); failed images are figures, not errors (exit 1,
after the table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cam_cli.cli import options as o
from cam_cli.eval_options import (
    EvalOptions,
    MetricOptions,
    OutputOptions,
    SourceOptions,
    TruthOptions,
)
from cam_cli.settings import AnnotationsFormat, CamOptions, CubSplit, MaxBoxAccProtocolName


@o.with_option_groups
def eval_command(
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations",
            help="Ground truth: a folder of ILSVRC XML, Kaggle LOC_val_solution.csv, or the "
            "devkit's ILSVRC2012_validation_ground_truth.txt (with --meta; labels only); or "
            "labelled data with class names: a Pascal VOC folder, a YOLO folder (labels/ with "
            "data.yaml or classes.txt), a COCO instances .json, a CSV "
            "path,class,xmin,ymin,xmax,ymax (inclusive 0-based pixels).",
            show_default=False,
        ),
    ] = None,
    annotations_format: Annotated[
        AnnotationsFormat | None,
        typer.Option(
            "--annotations-format",
            help="How to read --annotations (default: told from the path). Class names are "
            "matched to the model's classes (checkpoint, --classes).",
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
    split: Annotated[
        CubSplit | None,
        typer.Option(help="CUB split: test (the default), train or all.", show_default=False),
    ] = None,
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
    model: o.ModelOrOnnxArgs = o.ModelOrOnnxArgs(),
    threshold: o.ModelThreshold = None,
    box_rule: o.BoxRuleOption = o.BoxRule.paper,
    ten_crop: o.TenCrop = False,
    method: o.Method = "cam",
    layer: o.Layer = None,
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
    faithfulness: Annotated[
        bool,
        typer.Option(
            "--faithfulness",
            help="Also Average Drop, Increase in Confidence (Chattopadhay et al. 2018) and "
            "Deletion/Insertion AUC (Petsiuk et al. 2018; 20 steps, zero baseline after "
            "normalisation) of each image's top-1 map, as torchcam 0.5 computes them. About 40 "
            "extra forward passes per image.",
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
    html_report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Also write one self-contained HTML page of the run to FILE: what was run, "
            "the figures, curves, IoU histogram, failure categories with galleries, per-class "
            "table (docs/report.md). Needs matplotlib: pip install 'cam-cli[report]'.",
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
      cam-cli eval ... --maxboxacc --report report.html   # open it in a browser

    \b
      cam-cli eval ... --maxboxacc --save-scoremaps maps/        # wsolevaluation's layout
      cam-cli eval --scoremaps maps/ --annotations val_xml/      # anyone's maps, no model
    """
    options = EvalOptions(
        truth=TruthOptions(
            annotations=annotations,
            meta=meta,
            cub=cub,
            split=None if split is None else split.value,
            wsol_metadata=wsol_metadata,
            mask_root=mask_root,
            images=images,
            annotations_format=None if annotations_format is None else annotations_format.value,
        ),
        source=SourceOptions(
            model=model.options(),
            cam=CamOptions(
                threshold=threshold,
                box_rule=box_rule.value,
                ten_crop=ten_crop,
                method=method,
                layer=layer,
            ),
            run=run.options(quiet),
            predictions=predictions,
            scoremaps=scoremaps,
        ),
        metrics=MetricOptions(
            maxboxacc=maxboxacc,
            faithfulness=faithfulness,
            maxboxacc_protocol=maxboxacc_protocol.value,
            cam_threshold_from=cam_threshold_from,
            boxes=boxes,
            class_predictions=class_predictions,
            allow_missing=allow_missing,
        ),
        outputs=OutputOptions(
            per_image=per_image,
            save_scoremaps=save_scoremaps,
            json_report=json_out,
            html_report=html_report,
        ),
    )
    o.configure_logging(quiet)
    from cam_cli.report.eval_run import evaluate_and_report
    from cam_cli.report.inputs import ReportOptions

    with o.errors_as_exit():  # the page words the table as printed below (`as_flags`)
        report = evaluate_and_report(options, ReportOptions(describe=o.as_flags))
    if not o.main_process():  # under torchrun rank 0 writes the report and ends the run
        return
    from cam_cli.evaluation.report import json_text
    from cam_cli.evaluation.table import format_report

    table = o.as_flags(format_report(report))
    with o.errors_as_exit():  # a closed stdout (`| head`) ends it quietly
        if json_out == "-":  # the JSON on stdout, the table for people on stderr
            typer.echo(table, err=True)
            typer.echo(json_text(report), nl=False)
        else:
            typer.echo(table)
    raise typer.Exit(o.EXIT_SOME_FAILED if report.failed_images else o.EXIT_OK)
