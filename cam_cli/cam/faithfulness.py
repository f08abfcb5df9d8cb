"""How faithful a map is to the classifier, as explainability tools report it, computed as
torchcam 0.5's metrics do (`torchcam.metrics`), for a whole batch at once:

- Average Drop and Increase in Confidence (Chattopadhay et al., WACV 2018; torchcam's
  ``ClassificationMetric``): the input multiplied by the map (min-max scaled, resized to the
  input) is scored again; the drop is ``max(0, s - s_masked) / (s + 1e-7)``, the increase
  ``s < s_masked``, for the image's top-1 class and its softmax score ``s``.
- Deletion and Insertion AUC (Petsiuk et al., BMVC 2018, RISE; torchcam's
  ``DeletionInsertionMetric``): the input's pixels ranked by the map, highest first (a stable
  sort); deletion replaces the first ``n`` of them by the baseline, insertion starts from the
  baseline and puts them back, for ``n`` every ``ceil(pixels / steps)`` up to all of them; the
  areas under the two softmax-score curves over the fraction changed (trapezoid rule).
  Baseline: zeros in the network's input space (torchcam's default, the mean image after
  normalisation), ``steps`` 20 (torchcam's default).

Why here and batched: the figures need the network's forward on perturbed copies of each
input (the masked input, then 2 x (points - 2) + 1 points of the curves), so they are made
where the inputs and the network are: the pipeline's batch, one forward of the whole batch per
perturbation (never one per image).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

STEPS = 20  # torchcam's default
FIGURES = ("average_drop", "increase_in_confidence", "deletion_auc", "insertion_auc")

# inputs [n, 3, S, S] -> softmax scores [n, classes]
ScoreFn = Callable[[Tensor], Tensor]


def scaled_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """torchcam's map as its metrics use it: min-max scaled (``m - min``, divided by the max +
    1e-8, its ``_normalize``), then resized bilinearly (``align_corners=False``) to the input."""
    flat = maps.float().flatten(1)
    flat = flat - flat.amin(dim=1, keepdim=True)
    flat = flat / (flat.amax(dim=1, keepdim=True) + 1e-8)
    scaled = flat.reshape(maps.shape)
    return F.interpolate(scaled[:, None], size, mode="bilinear", align_corners=False)[:, 0]


def points(pixels: int, steps: int = STEPS) -> list[int]:
    """The counts of pixels changed along the curves: torchcam's ``counts``."""
    step = (pixels + steps - 1) // steps
    return [*range(0, pixels, step), pixels]


def faithfulness(
    score: ScoreFn,
    inputs: Tensor,
    maps: Tensor,
    classes: Tensor,
    steps: int = STEPS,
) -> Tensor:
    """``[B, 4]``: each image's Average Drop, Increase in Confidence (0 or 1), Deletion AUC and
    Insertion AUC (`FIGURES`), for ``classes`` ``[B]`` and their ``maps`` ``[B, h, w]`` of
    ``inputs`` ``[B, 3, S, S]`` (preprocessed). Means over images are torchcam's summaries."""
    size = (inputs.shape[2], inputs.shape[3])
    scaled = scaled_maps(maps, size)  # [B, S, S]
    original = score(inputs).gather(1, classes[:, None])[:, 0]
    masked = score(scaled[:, None] * inputs).gather(1, classes[:, None])[:, 0]
    drop = torch.relu(original - masked) / (original + 1e-7)
    increase = (original < masked).float()

    pixels = size[0] * size[1]
    counts = points(pixels, steps)
    order = torch.argsort(scaled.flatten(1), dim=1, descending=True, stable=True)
    ranks = torch.argsort(order, dim=1)  # [B, pixels]: each pixel's place in the order
    flat = inputs.flatten(2)  # [B, 3, pixels]
    baseline = torch.zeros_like(flat)

    def scored(changed: Tensor, deleting: bool) -> Tensor:
        # deletion: the first n pixels from the baseline; insertion: only they from the input
        keep = ~changed if deleting else changed
        return score(torch.where(keep[:, None], flat, baseline).reshape(inputs.shape)).gather(
            1, classes[:, None]
        )[:, 0]

    # one forward of the whole batch per point of the curves (the images stay batched)
    at_baseline = score(baseline.reshape(inputs.shape)).gather(1, classes[:, None])[:, 0]
    inner = [ranks < count for count in counts[1:-1]]
    deletion = torch.stack(
        [original, *[scored(changed, True) for changed in inner], at_baseline], dim=1
    )
    insertion = torch.stack(
        [at_baseline, *[scored(changed, False) for changed in inner], original], dim=1
    )
    fractions = torch.tensor(counts, device=inputs.device, dtype=torch.float32) / pixels
    deletion_auc = torch.trapezoid(deletion, fractions, dim=1)
    insertion_auc = torch.trapezoid(insertion, fractions, dim=1)
    return torch.stack([drop, increase, deletion_auc, insertion_auc], dim=1)
