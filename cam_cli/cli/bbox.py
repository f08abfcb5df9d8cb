"""`cam-cli bbox`: options -> `outputs.runs.write_boxes` -> exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cam_cli.cli import options as o
from cam_cli.settings import BboxFormat, CamOptions, DatasetFormat, LabelBy, choices


@o.with_option_groups
def bbox(
    images: o.Images = None,
    extra_images: o.ExtraImages = None,
    model: o.ModelOrOnnxArgs = o.ModelOrOnnxArgs(),
    topk: Annotated[
        int | None,
        typer.Option(
            "--topk",
            "-k",
            min=1,
            help="Boxes for the k most probable classes. [default: 5; 1 for a dataset --format]",
            show_default=False,
        ),
    ] = None,
    threshold: o.ModelThreshold = None,
    class_query: o.ClassQuery = None,
    box_rule: o.BoxRuleOption = o.BoxRule.paper,
    ten_crop: o.TenCrop = False,
    method: o.Method = "cam",
    layer: o.Layer = None,
    run: o.RunArgs = o.RunArgs(),
    output_format: Annotated[
        BboxFormat,
        typer.Option(
            "--format",
            help="jsonl, csv, or coco: one COCO JSON document (images, categories, and "
            "annotations as detection results, bbox [x, y, w, h]). Or a pseudo-label dataset "
            "in the folder --output: voc (Pascal VOC XML), yolo (labels/ and data.yaml) or "
            "coco-dataset (COCO instances); see docs/interchange.md.",
        ),
    ] = BboxFormat.jsonl,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="File to write (default stdout); the dataset's folder for voc, yolo and "
            "coco-dataset (new or empty, or one this command is resuming).",
        ),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(
            "--min-score",
            min=0.0,
            max=1.0,
            help="Dataset formats: keep only boxes whose class score is at least this "
            "(an image with none left is left out of the dataset).",
            show_default=False,
        ),
    ] = None,
    label_by: Annotated[
        LabelBy,
        typer.Option("--label-by", help="Dataset formats: the classes by name, wnid or index."),
    ] = LabelBy.name,
    draw: Annotated[
        Path | None, typer.Option(help="Also write each image with its boxes as PNG here.")
    ] = None,
    html_report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Also write one self-contained HTML page of the run to FILE: the top-1 "
            "classes' histogram and a gallery of the highest-scoring images with their CAM and "
            "boxes (JSON Lines output only). Needs matplotlib: pip install 'cam-cli[report]'.",
            show_default=False,
        ),
    ] = None,
    quiet: o.Quiet = False,
) -> None:
    """Boxes for the top-k classes of every image, as JSON Lines (one object per image).

    Each object: path, width, height and predictions [{rank, class_index, wnid, name, score,
    box: [xmin, ymin, xmax, ymax]}], boxes in the image's own pixels (inclusive). An image that
    cannot be read gives {path, error}, a line on stderr, and exit code 1 at the end.

    Examples:

      cam-cli bbox --arch mobilenet_v2 --weights mobilenet_v2-imagenet.pth
      --classes LOC_synset_mapping.txt --images val/ --topk 5 > boxes.jsonl

      find photos -name '*.jpg' | cam-cli bbox --checkpoint runs/x/best.pt --images - --format csv

      cam-cli bbox --checkpoint best.pt --images unlabelled/ --format yolo --output pseudo/
    """
    o.configure_logging(quiet)
    sources = [*(images or []), *(extra_images or [])]
    dataset = output_format.value in choices(DatasetFormat)
    if dataset and output is None:
        raise o.fail(f"--format {output_format.value} writes a dataset folder: give --output DIR")
    if not dataset and (min_score is not None or label_by != LabelBy.name):
        raise o.fail("--min-score and --label-by go with a dataset --format (voc, yolo, "
                     "coco-dataset)")  # fmt: skip
    if dataset and draw is not None:
        raise o.fail("--draw goes with the record formats (jsonl, csv, coco)")
    if html_report is not None and output_format != BboxFormat.jsonl:
        raise o.fail("--report reads the records as JSON Lines; leave out --format")
    if html_report is not None and output is not None and output.resolve() == html_report.resolve():
        raise o.fail("--report and --output must be different files")
    o.check_before_work(
        inputs=model.inputs(sources),
        outputs={} if dataset else {"--output": output, "--report": html_report},
        output_dirs={"--draw": draw, **({"--output": output} if dataset else {})},
        input_size=model.input_size,
    )
    cam = CamOptions(
        topk=topk if topk is not None else 1 if dataset else 5,
        threshold=threshold,
        box_rule=box_rule.value,
        ten_crop=ten_crop,
        method=method,
        layer=layer,
    )
    if html_report is not None:
        from cam_cli.report.bbox_run import write_boxes_with_report

        with o.errors_as_exit():
            summary = write_boxes_with_report(
                model.options(),
                sources,
                html_report,
                output=output,
                cam=cam,
                classes=class_query,
                draw=draw,
                run=run.options(quiet),
            )
        o.end_of_run(summary)
        return
    from cam_cli.outputs.datasets import DatasetOptions
    from cam_cli.outputs.runs import write_boxes

    target: Path | DatasetOptions | None = output
    if dataset:
        assert output is not None
        target = DatasetOptions(output_format.value, output, min_score, label_by.value)
    with o.errors_as_exit():
        summary = write_boxes(
            model.options(),
            sources,
            output=target,
            fmt=output_format.value,
            cam=cam,
            classes=class_query,
            draw=draw,
            run=run.options(quiet),
        )
    o.end_of_run(summary)
