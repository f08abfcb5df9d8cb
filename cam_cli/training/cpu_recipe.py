"""The recipe `train` falls back on when it runs on a CPU and no `config` gives one.

The built-in defaults (and the paper recipes) fine-tune a whole network for many epochs: a GPU
job. On a CPU, a user's own few hundred images train in minutes only as a linear probe: the
ImageNet backbone frozen, a new classifier that starts at zero (so the first loss is exactly
ln C and no class starts favoured), a handful of epochs over every image. This layer sits just
above the architecture's defaults, so every option and `config` key still wins, and a GPU
run, a resumed run and a run with a recipe file are exactly what they were before it.

Nothing here imports torch, so the command line's help answers at once.
"""

from __future__ import annotations

import os
from typing import Any

CPU_ARCH = "mobilenet_v2"  # ends in GAP + linear: its CAM is exact, and it is fast on a CPU
CPU_EPOCHS = 5
CPU_BATCH = 32
# The classifier's learning rate (lr x new_layers_lr_mult) for a zero-initialised linear probe
# on frozen ImageNet features. Measured on 3 and on 20 Tiny ImageNet classes of 60 images each
# (5 epochs, batch 32, cosine; docs/own-data.md): 0.03 was the best or within a point of it at
# both class counts (0.1 and 0.01 no better), so one rate serves; the class count enters
# through the zero start instead, whose first loss is ln C whatever C is.
HEAD_LR = 0.03
NEW_LAYERS_LR_MULT = 10.0


def cpu_workers(cpus: int | None = None) -> int:
    """DataLoader processes beside the one that runs the network: one core is left to it."""
    cores = cpus or os.cpu_count() or 1
    return max(0, min(4, cores - 1))


def cpu_recipe(pretrained: bool, cpus: int | None = None) -> dict[str, Any]:
    """The CPU layer's keys. ``pretrained``: the network starts from ImageNet weights (without
    them there is nothing to freeze, and the architecture's own recipe is kept but the workers)."""
    recipe: dict[str, Any] = {"workers": cpu_workers(cpus)}
    if pretrained:
        recipe |= {
            "freeze_backbone": True,
            "zero_init_head": True,
            "epochs": CPU_EPOCHS,
            "batch_size": CPU_BATCH,
            "lr": HEAD_LR / NEW_LAYERS_LR_MULT,
            "new_layers_lr_mult": NEW_LAYERS_LR_MULT,
            "lr_schedule": "cosine",
            "crop_scale_min": 0.35,
        }
    return recipe
