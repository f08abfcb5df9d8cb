"""`cam-cli train`: options -> `training.trainer.train_from_options` -> a JSON summary.

Every setting option defaults to None ("not given"), so the config layers underneath show through:
option > --config FILE > the run's saved config (--resume) > the arch's recipe > built-ins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cam_cli.cli import options as o
from cam_cli.errors import TrainingDiverged
from cam_cli.settings import AnnotationsFormat

HELP = """Train a CAM network (last conv -> GAP -> linear) on image labels.

--data DIR holds train/<class>/<images> (ImageNet's train/<wnid>/*.JPEG layout; names from
DIR/LOC_synset_mapping.txt when present) and optionally val/: class folders, or flat ILSVRC
images with DIR/annotations/*.xml or DIR/LOC_val_solution.csv (top-1 accuracy each epoch).
--val-annotations FILE labels the val images from any ground truth eval reads instead.
A Tiny ImageNet root is taken as downloaded (train/<wnid>/images/, wnids.txt, words.txt,
val/images/ with val/val_annotations.txt).

--out RUN_DIR receives config.toml, metrics.jsonl (one line per epoch), last.pt (resume)
and best.pt; both checkpoints work with `cam-cli bbox/cam/eval --checkpoint`. A bad image
is named once on stderr and skipped. A NaN/inf loss stops the run (exit 1) and keeps the
last good checkpoint.

On a machine without a GPU, with no --config (and not resuming), the CPU recipe fills in what
is not given: --arch mobilenet_v2, its ImageNet backbone frozen, the new classifier from zero,
5 epochs over every image at batch 32, a learning rate set by the number of classes, loader
workers below the core count. A one-line summary of the choices goes to stderr before the
first step. Offline, pass the ImageNet weights with --backbone-weights FILE.

--batch-size is the GLOBAL batch: with torchrun each of N processes takes batch/N images per
step (DistributedDataParallel; nccl on GPUs, gloo on CPU; only rank 0 writes).

Examples:

\b
  cam-cli train --data my_data --out runs/mine --threshold-boxes my_boxes.csv
  cam-cli train --arch vgg16-gap --data imagenet/ --out runs/vgg \\
      --backbone-weights vgg16-397923af.pth
  cam-cli train --config configs/small-cpu.toml --data synth/ --out runs/small
  torchrun --nproc_per_node=8 -m cam_cli train --data imagenet/ \\
      --config configs/googlenet-gap.toml --out runs/googlenet --resume
"""

Opt = typer.Option
# The options that are not training settings; every other option is a `TrainConfig` key of
# the same name (None: not given), so a new setting is one new option below.
NOT_SETTINGS = ("data", "out", "config", "resume", "quiet", "tensorboard")


def train(
    ctx: typer.Context,
    data: Annotated[Path, Opt("--data", help="Dataset folder (train/ [val/]).")],
    out: Annotated[Path, Opt("--out", help="Run folder for checkpoints and metrics.")],
    arch: Annotated[
        str | None, Opt("--arch", "-a", help="Network from `cam-cli models`.", show_default=False)
    ] = None,
    config: Annotated[
        Path | None, Opt("--config", help="TOML file of training settings.", show_default=False)
    ] = None,
    resume: Annotated[
        bool, Opt("--resume", help="Continue RUN_DIR/last.pt (a fresh start if there is none).")
    ] = False,
    epochs: Annotated[int | None, Opt(min=1, help="Epochs in all.", show_default=False)] = None,
    batch_size: Annotated[
        int | None, Opt(min=1, help="Global batch size.", show_default=False)
    ] = None,
    lr: Annotated[float | None, Opt(help="Backbone learning rate.", show_default=False)] = None,
    new_layers_lr_mult: Annotated[
        float | None, Opt(help="lr multiplier of the added CAM conv + fc.", show_default=False)
    ] = None,
    lr_schedule: Annotated[
        str | None, Opt(help="step, multistep, cosine or constant.", show_default=False)
    ] = None,
    lr_step_size: Annotated[
        float | None, Opt(help="Epochs between decays (step).", show_default=False)
    ] = None,
    lr_milestones: Annotated[
        str | None, Opt(help="Comma-separated decay epochs (multistep).", show_default=False)
    ] = None,
    lr_gamma: Annotated[float | None, Opt(help="Decay factor.", show_default=False)] = None,
    warmup_epochs: Annotated[
        float | None, Opt(help="Linear lr warm-up epochs.", show_default=False)
    ] = None,
    weight_decay: Annotated[float | None, Opt(show_default=False)] = None,
    momentum: Annotated[float | None, Opt(show_default=False)] = None,
    image_size: Annotated[
        int | None, Opt(help="Training crop / network input size.", show_default=False)
    ] = None,
    augment: Annotated[
        bool | None,
        Opt("--augment/--no-augment", help="Random resized crop + flip.", show_default=False),
    ] = None,
    workers: Annotated[
        int | None, Opt(min=0, help="DataLoader decoding processes.", show_default=False)
    ] = None,
    device: Annotated[str | None, Opt(help="auto, cpu, cuda.", show_default=False)] = None,
    pretrained: Annotated[
        bool | None,
        Opt(
            "--pretrained/--no-pretrained",
            help="Start from torchvision's ImageNet weights (default when the arch has them).",
            show_default=False,
        ),
    ] = None,
    backbone_weights: Annotated[
        Path | None,
        Opt(
            help="Local torchvision state_dict (or cam-cli checkpoint) to start from: the "
            "backbone of a paper net, else the whole net. Used instead of the download.",
            show_default=False,
        ),
    ] = None,
    amp: Annotated[
        bool | None,
        Opt("--amp/--no-amp", help="Mixed precision (fp16 CUDA, bf16 CPU).", show_default=False),
    ] = None,
    seed: Annotated[int | None, Opt(min=0, show_default=False)] = None,
    freeze_backbone: Annotated[
        bool | None,
        Opt(
            "--freeze-backbone/--no-freeze-backbone",
            help="Train only the new layers; the ImageNet backbone stays fixed (default on a CPU).",
            show_default=False,
        ),
    ] = None,
    zero_init_head: Annotated[
        bool | None,
        Opt(
            "--zero-init-head/--no-zero-init-head",
            help="Start the new classifier at zero: first loss ln(classes) (default on a CPU).",
            show_default=False,
        ),
    ] = None,
    train_images_per_class: Annotated[
        int | None,
        Opt(
            min=0,
            help="Train on the first N images (sorted) of every class; 0: all.",
            show_default=False,
        ),
    ] = None,
    val_images: Annotated[
        int | None,
        Opt(min=0, help="Validate on the first N val images (sorted); 0: all.", show_default=False),
    ] = None,
    threshold_images_per_class: Annotated[
        int | None,
        Opt(
            min=0,
            help="Choose the CAM threshold on the last N training images of every class "
            "with a box in train/<class>/<class>_boxes.txt; 0: choose none.",
            show_default=False,
        ),
    ] = None,
    threshold_boxes: Annotated[
        Path | None,
        Opt(
            help="CSV of boxes you drew (path,class,xmin,ymin,xmax,ymax): choose the CAM "
            "threshold on them; stored in best.pt for bbox/cam/eval.",
            show_default=False,
        ),
    ] = None,
    val_annotations: Annotated[
        Path | None,
        Opt(
            help="Ground truth of the val images (CSV path,class,xmin,ymin,xmax,ymax, Pascal "
            "VOC, YOLO or COCO, as eval reads it): their classes, matched to the train/ folders "
            "by name. Images under DATA/val, else beside the file.",
            show_default=False,
        ),
    ] = None,
    val_annotations_format: Annotated[
        AnnotationsFormat | None,
        Opt(help="Format of --val-annotations (default: detected).", show_default=False),
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        Opt(min=0, help="Also write last.pt every N steps (0: epoch ends).", show_default=False),
    ] = None,
    tensorboard: Annotated[
        bool,
        Opt(
            "--tensorboard",
            help="Also write TensorBoard event files (loss, accuracy, lr per epoch) in "
            "OUT/tensorboard. Needs the tensorboard package: pip install 'cam-cli[tensorboard]'.",
        ),
    ] = False,
    quiet: Annotated[
        bool,
        Opt(
            "--quiet", "-q", help="No progress bar nor progress messages; notes and problems stay."
        ),
    ] = False,
) -> None:
    milestones = None
    if lr_milestones is not None:
        try:
            milestones = [float(v) for v in lr_milestones.split(",") if v.strip()]
        except ValueError:
            message = f"--lr-milestones: expected numbers like 30,60,80, got {lr_milestones!r}"
            raise o.fail(message) from None
    overrides = {
        option.name: ctx.params[option.name]
        for option in ctx.command.params  # in declaration order
        if option.name not in NOT_SETTINGS
    }
    overrides["lr_milestones"] = milestones
    overrides["backbone_weights"] = None if backbone_weights is None else str(backbone_weights)
    overrides["threshold_boxes"] = None if threshold_boxes is None else str(threshold_boxes)
    overrides["val_annotations"] = None if val_annotations is None else str(val_annotations)
    if val_annotations_format is not None:
        overrides["val_annotations_format"] = val_annotations_format.value
    o.configure_logging(quiet)
    o.check_before_work(output_dirs={"--out": out}, input_size=image_size,
                        input_size_option="--image-size")  # fmt: skip
    from cam_cli.files.checks import check_run_folder
    from cam_cli.training.trainer import train_from_options

    with o.errors_as_exit(advice={TrainingDiverged: "Lower --lr and start again."}):
        check_run_folder(out, data, backbone_weights)
        result = train_from_options(
            overrides,
            data,
            out,
            config_file=config,
            resume=resume,
            progress=o.progress(quiet),
            tensorboard=tensorboard,
        )
    if result.main_process:
        best = "-" if result.best_metric is None else f"{100 * result.best_metric:.2f}%"
        typer.echo(
            f"done: {result.epochs} epochs; best {result.best_metric_name} {best} "
            f"(epoch {result.best_epoch}) in {result.best_checkpoint}",
            err=True,
        )
        typer.echo(json.dumps(result.as_dict()))
