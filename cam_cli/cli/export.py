"""`cam-cli export`: options -> `models.onnx_export.export_onnx` -> one JSON line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cam_cli.cli import options as o


@o.with_option_groups
def export(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The ONNX FILE to write (atomically; never one of the inputs).",
            show_default=False,
        ),
    ],
    model: o.ModelArgs = o.ModelArgs(),
    quiet: o.Quiet = False,
) -> None:
    """Export a CAM network to ONNX: uint8 RGB images in, logits and every class's CAM out.

    The graph takes images [N, 3, S, S] as uint8 RGB, the whole image resized to the model's
    input size S (N dynamic), normalises them itself, and returns logits [N, C] and the class
    activation maps [N, C, h, w] of all C classes. Its metadata_props state the preprocessing
    (mean, std, channel order, input size), the classes (wnids and names), the CAM threshold of a
    checkpoint, the cam-cli version, the exporter and the opset. Run it with `cam-cli bbox
    --onnx FILE` (or `eval`, `cam`), or with ONNX Runtime anywhere. Only networks whose head is
    global average pooling + one linear layer are exported: their CAMs are exact. Needs the
    [onnx] extra. Prints one JSON line: output, arch, num_classes, input_size, opset, bytes.

    Examples:

      cam-cli export --arch mobilenet_v2 --weights mobilenet_v2-imagenet.pth
      --classes LOC_synset_mapping.txt --output mobilenet_v2-cam.onnx

      cam-cli export --checkpoint runs/x/best.pt -o best.onnx
    """
    o.configure_logging(quiet)
    o.check_before_work(
        inputs=model.inputs(),
        outputs={"--output": output},
        input_size=model.input_size,
    )
    from cam_cli.models.onnx_export import export_onnx

    with o.errors_as_exit():
        summary = export_onnx(model.options(), output)
    typer.echo(json.dumps(summary.as_dict()))
