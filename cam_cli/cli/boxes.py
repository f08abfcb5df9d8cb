"""`cam-cli boxes`: options -> `outputs.runs.write_heatmap_boxes` -> exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cam_cli.cli import options as o
from cam_cli.settings import CamOptions, OutputFormat, RunOptions


def boxes(
    maps: Annotated[
        list[str] | None,
        typer.Option(
            "--maps",
            "-m",
            help=".npy map ([H, W] or [k, H, W]) or grey image file, directory (walked "
            "recursively for .npy and image files) or '-' (paths from stdin). Repeatable; "
            "extra arguments are taken as maps too.",
            show_default=False,
        ),
    ] = None,
    extra_maps: o.ExtraImages = None,
    box_rule: o.BoxRuleOption = o.BoxRule.paper,
    threshold: o.Threshold = 0.2,
    size: Annotated[
        str | None,
        typer.Option(
            help="WIDTHxHEIGHT of the image the maps belong to: boxes in its pixels.",
            show_default=False,
        ),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="An image whose size the maps belong to (instead of --size).", show_default=False
        ),
    ] = None,
    upsample: Annotated[
        int | None,
        typer.Option(
            help="Resize each map bilinearly to N x N first, as `bbox` resizes a CAM to the "
            "network's input size (224): with a .feature.npy and --reference this gives "
            "`bbox`'s box exactly.",
            show_default=False,
        ),
    ] = None,
    box_backend: o.BoxBackendOption = o.BoxBackend.auto,
    device: Annotated[
        str,
        typer.Option(
            help="Where --box-step torch or triton runs: auto (CUDA when there is one), cpu, "
            "cuda or cuda:N."
        ),
    ] = "auto",
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="jsonl or csv.")
    ] = OutputFormat.jsonl,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default stdout).")
    ] = None,
    quiet: o.Quiet = False,
) -> None:
    """Boxes from saved heatmaps, with no model: one JSON object per map.

    Each object: path (and map, the index in a [k, H, W] stack), width, height, and boxes
    [[xmin, ymin, xmax, ymax], ...] ranked by the box rule, in inclusive pixels of the map,
    or of the image given by --size / --reference. A file that cannot be used gives
    {path, error}, a line on stderr, and exit code 1 at the end.

    Examples:

      cam-cli boxes cams/dog_rank1_n02084071-dog.image.npy

      cam-cli boxes --box-rule zhou2016 heatmap_6.jpg

      cam-cli boxes --upsample 224 --reference dog.jpg cams/dog_rank1_n02084071-dog.feature.npy

      find maps -name '*.npy' | cam-cli boxes --maps - --format csv
    """
    o.configure_logging(quiet)
    sources = [*(maps or []), *(extra_maps or [])]
    o.check_before_work(
        inputs={"--maps": sources, "--reference": reference}, outputs={"--output": output}
    )
    from cam_cli.data.heatmaps import parse_size
    from cam_cli.outputs.runs import write_heatmap_boxes

    with o.errors_as_exit():
        try:
            wanted = None if size is None else parse_size(size)
        except ValueError as error:
            raise o.fail(o.as_flags(str(error))) from None
        summary = write_heatmap_boxes(
            sources,
            output=output,
            fmt=output_format.value,
            cam=CamOptions(box_rule=box_rule.value, threshold=threshold),
            size=wanted,
            reference=reference,
            upsample=upsample,
            run=RunOptions(device=device, box_backend=box_backend.value),
        )
    o.end_of_run(summary, "files")
