"""`cam-cli bbox`: options -> `outputs.runs.write_boxes` -> exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cam_cli.cli import options as o
from cam_cli.settings import BboxFormat, CamOptions


@o.with_option_groups
def bbox(
    images: o.Images = None,
    extra_images: o.ExtraImages = None,
    model: o.ModelArgs = o.ModelArgs(),
    topk: o.TopK = 5,
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
            "annotations as detection results, bbox [x, y, w, h]).",
        ),
    ] = BboxFormat.jsonl,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default stdout).")
    ] = None,
    draw: Annotated[
        Path | None, typer.Option(help="Also write each image with its boxes as PNG here.")
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
    """
    o.configure_logging(quiet)
    sources = [*(images or []), *(extra_images or [])]
    o.check_before_work(
        inputs=model.inputs(sources),
        outputs={"--output": output},
        output_dirs={"--draw": draw},
        input_size=model.input_size,
    )
    from cam_cli.outputs.runs import write_boxes

    with o.errors_as_exit():
        summary = write_boxes(
            model.options(),
            sources,
            output=output,
            fmt=output_format.value,
            cam=CamOptions(
                topk=topk,
                threshold=threshold,
                box_rule=box_rule.value,
                ten_crop=ten_crop,
                method=method,
                layer=layer,
            ),
            classes=class_query,
            draw=draw,
            run=run.options(quiet),
        )
    o.end_of_run(summary)
