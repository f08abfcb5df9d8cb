"""The one line `train` says before its first step: what it chose, and where from.

A user who typed `cam-cli train` with a `data` DIR and an `out` RUN sees, before the time is
spent, what a run is about to do with their images: which recipe, whether the backbone
learns, how many images (and how many each epoch's last partial batch leaves out), the
learning rate and how the CAM threshold will be chosen.
"""

from __future__ import annotations

import math
import os

from cam_cli.training.config import TrainConfig
from cam_cli.training.data import TrainData

CPU_SOURCE = "CPU recipe"


def choices_summary(
    config: TrainConfig, data: TrainData, sources: dict[str, str], workers: int
) -> str:
    """One line; ``sources``: key -> where its value came from (`resolve_config`)."""
    n, classes = len(data.train), len(data.classes)
    cpu = any(source.startswith(CPU_SOURCE) for source in sources.values())
    parts = [f"{config.arch}" + (" (the CPU recipe: no GPU, no config file)" if cpu else "")]
    parts.append("backbone frozen" if config.freeze_backbone else "every layer trained")
    if config.zero_init_head:
        parts.append(f"classifier from zero (first loss ln {classes} = {math.log(classes):.2f})")
    per_class = config.train_images_per_class
    parts.append(f"{n} training images of {classes} classes"
                 + (f" (the first {per_class} of each)" if per_class else " (all)"))  # fmt: skip
    if data.val:
        parts.append(f"{len(data.val)} val images" + (" (all)" if not config.val_images else ""))
    else:
        parts.append("no val images")
    steps = n // config.batch_size
    left = n - steps * config.batch_size
    batch = f"{config.epochs} epochs of {steps} steps of {config.batch_size}"
    if left:
        batch += f" (each epoch leaves out its last partial batch: {left} images, others each time)"
    parts.append(batch)
    new_lr = config.lr * config.new_layers_lr_mult
    parts.append(f"lr {config.lr:g} ({new_lr:g} for the new layers)")
    parts.append(f"{workers} loader workers on {os.cpu_count() or 1} cores")
    if config.threshold_boxes is not None:
        parts.append(f"CAM threshold chosen on the boxes of {config.threshold_boxes}")
    elif config.threshold_images_per_class:
        parts.append(f"CAM threshold chosen on {config.threshold_images_per_class} boxed "
                     "training images per class")  # fmt: skip
    else:
        parts.append("no CAM threshold chosen (bbox uses 0.2 unless told)")
    return "settings: " + "; ".join(parts)
