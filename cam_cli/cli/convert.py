"""`cam-cli convert`: options -> `evaluation.wsol_convert.convert_to_wsol` -> one JSON line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cam_cli.cli import options as o
from cam_cli.settings import CubSplit


def convert(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the four metadata files (created).")],
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations",
            help="Ground truth: a folder of ILSVRC XML, Kaggle LOC_val_solution.csv, or the "
            "devkit's ground-truth .txt (with --meta; labels only).",
            show_default=False,
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            "-i",
            help="The images the annotations describe (matched by file stem).",
            show_default=False,
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Data root the image ids are relative to (default: the folder above --images, "
            "so ids read val/<file>; for --cub, ROOT/images).",
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
        typer.Option(help="CUB_200_2011 folder (images, boxes and labels).", show_default=False),
    ] = None,
    split: Annotated[CubSplit, typer.Option(help="CUB split: test, train or all.")] = CubSplit.test,
    classes: o.ClassesFile = None,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="Convert the matched images when some images or annotations have no counterpart.",
        ),
    ] = False,
    quiet: o.Quiet = False,
) -> None:
    """Write wsolevaluation's metadata (image_ids.txt, class_labels.txt, image_sizes.txt,
    localization.txt) from any ground truth `cam-cli eval` reads, so the data set can be
    scored by clovaai/wsolevaluation and the methods built on it.

    Labels become 0-based indices of --classes (sorted wnids: LOC_synset_mapping.txt); boxes
    are written as they are (inclusive pixels, one row per box); image sizes come from the
    image files. Stdout: one JSON line saying what was written.

    Examples:

    \b
      cam-cli convert wsol/ILSVRC/test --annotations val_xml/ --images val/ \\
        --classes LOC_synset_mapping.txt

    \b
      cam-cli convert wsol/CUB/test --cub CUB_200_2011
    """
    if (annotations is None) == (cub is None):
        raise o.fail("give the ground truth: --annotations PATH or --cub ROOT (one of them)")
    if cub is not None and images is not None:
        raise o.fail("with --cub the images come from ROOT/images; leave out --images")
    if annotations is not None and images is None:
        raise o.fail("give the images the annotations describe: --images DIR")
    o.configure_logging(quiet)
    inputs = {"--annotations": annotations, "--images": images, "--meta": meta, "--cub": cub,
              "--classes": classes}  # fmt: skip
    outputs = {f"OUT_DIR ({name})": out_dir / name for name in _FILES}
    o.check_before_work(inputs=inputs, outputs=outputs, output_dirs={"OUT_DIR": out_dir})
    from cam_cli.eval_options import TruthOptions
    from cam_cli.evaluation.wsol_convert import convert_to_wsol

    truth = TruthOptions(annotations=annotations, meta=meta, cub=cub, split=split.value,
                         images=images)  # fmt: skip
    with o.errors_as_exit():
        metadata = convert_to_wsol(
            out_dir, truth, root=root, classes_file=classes, allow_missing=allow_missing
        )
    summary = {
        "out": str(out_dir),
        "images": len(metadata.image_ids),
        "boxes": sum(len(b) for b in metadata.boxes.values()),
    }
    typer.echo(json.dumps(summary))


_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")
