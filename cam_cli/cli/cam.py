"""`cam-cli cam`: options -> `outputs.runs.write_cams` -> exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cam_cli.cli import options as o
from cam_cli.settings import CamFileOptions, CamOptions, NpyMaps


@o.with_option_groups
def cam(
    out: Annotated[Path, typer.Option("--out", help="Folder for the overlays and maps.")],
    images: o.Images = None,
    extra_images: o.ExtraImages = None,
    model: o.ModelOrOnnxArgs = o.ModelOrOnnxArgs(),
    topk: o.TopK = 1,
    class_query: o.ClassQuery = None,
    ten_crop: o.TenCrop = False,
    method: o.Method = "cam",
    layer: o.Layer = None,
    npy: Annotated[
        NpyMaps,
        typer.Option(help="Also save raw maps: none, feature (h x w), image (H x W) or both."),
    ] = NpyMaps.none,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Heat-map opacity.")] = 0.5,
    pseudo_masks: Annotated[
        Path | None,
        typer.Option(
            "--pseudo-masks",
            help="Also write one segmentation pseudo-mask per image here: an 8-bit PNG with "
            "Pascal VOC's palette, class index + 1 inside the thresholded CAM region at the "
            "image's size, 0 outside.",
            show_default=False,
        ),
    ] = None,
    run: o.RunArgs = o.RunArgs(),
    quiet: o.Quiet = False,
) -> None:
    """Write each image's class activation maps as colour overlays (PNG), optionally raw (.npy).

    Files are named IMAGE_rankR_CLASS.png (and .feature.npy / .image.npy); inputs are never
    overwritten.

    Examples:

      cam-cli cam --arch mobilenet_v2 --weights mobilenet_v2-imagenet.pth
      --classes LOC_synset_mapping.txt --images dog.jpg --topk 3 --out cams/

      cam-cli cam --checkpoint best.pt --images val/ --class n01440764 --npy both --out cams/
    """
    o.configure_logging(quiet)
    sources = [*(images or []), *(extra_images or [])]
    o.check_before_work(
        inputs=model.inputs(sources),
        output_dirs={"--out": out, "--pseudo-masks": pseudo_masks},
        input_size=model.input_size,
    )
    from cam_cli.outputs.runs import write_cams

    with o.errors_as_exit():
        summary = write_cams(
            model.options(),
            sources,
            out,
            cam=CamOptions(topk=topk, ten_crop=ten_crop, method=method, layer=layer),
            classes=class_query,
            files=CamFileOptions(npy=npy.value, alpha=alpha, pseudo_masks=pseudo_masks),
            run=run.options(quiet),
        )
    o.end_of_run(summary)
