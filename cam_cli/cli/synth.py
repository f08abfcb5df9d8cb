"""`cam-cli synth`: options -> `synthetic.dataset.generate_dataset` -> one line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cam_cli.cli.options import as_flags, fail


def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create (ILSVRC layout).")],
    num_classes: Annotated[int, typer.Option(min=2, max=64, help="Classes.")] = 6,
    train_per_class: Annotated[int, typer.Option(min=1, help="Training images per class.")] = 200,
    val_images: Annotated[int, typer.Option(min=1, help="Validation images (with boxes).")] = 300,
    image_size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 64,
    seed: Annotated[int, typer.Option(help="Same seed, byte-identical dataset.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a dataset this command made.")] = False,
    masks: Annotated[
        bool,
        typer.Option(
            "--masks",
            help="Also write each val object's pixel mask (OpenImages30k layout, masks/val/) "
            "and wsolevaluation metadata (wsol/val/), for PxAP.",
        ),
    ] = False,
) -> None:
    """Generate a synthetic localization benchmark in exactly the ILSVRC layout and formats.

    train/<wnid>/*.JPEG, flat val/*.JPEG, annotations/*.xml, LOC_val_solution.csv and
    LOC_synset_mapping.txt: objects whose shape, texture and colour make the class, at random
    positions and scales (5-50% of the image) on cluttered backgrounds with distractors.

    Example: cam-cli synth data/synth && cam-cli train --arch small-gap --data data/synth ...
    """
    from cam_cli.synthetic.dataset import generate_dataset

    try:
        summary = generate_dataset(
            out_dir,
            num_classes=num_classes,
            train_per_class=train_per_class,
            val_images=val_images,
            image_size=image_size,
            seed=seed,
            overwrite=overwrite,
            masks=masks,
        )
    except (ValueError, FileExistsError, OSError) as error:
        raise fail(as_flags(str(error))) from None
    typer.echo(
        f"cam-cli: wrote {summary.train_images} training and {summary.val_images} validation "
        f"images of {summary.num_classes} classes to {out_dir} in {summary.seconds:.1f}s",
        err=True,
    )
