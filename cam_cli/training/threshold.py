"""The CAM threshold of a trained network, chosen on a few hundred TRAINING images with boxes.

The paper's 0.2 (segment above 20% of the CAM's max) suits maps that peak on a small part of
the object; a network trained on large objects (Tiny ImageNet's median box is 86% x 72% of the
image) peaks far above it and 0.2 keeps too little. Choe et al. (CVPR 2020) show that choosing
such a hyper-parameter needs only a few full-supervision images; these are training images
(the last N of every class, with their ``<wnid>_boxes.txt`` boxes), never the val split, so the
choice does not depend on what it is then measured on. The winner goes into the checkpoint
(``cam_threshold``) and is what `bbox` and `eval` use with it unless `threshold` is given.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cam_cli.boxes.geometry import IOU_THRESHOLD, iou_inclusive
from cam_cli.boxes.rules import boxes_for_image
from cam_cli.data.classes import ClassInfo
from cam_cli.data.ground_truth import ImageAnnotation
from cam_cli.data.images import list_images
from cam_cli.data.tiny_imagenet import read_train_boxes
from cam_cli.files.atomic import save_torch_atomic
from cam_cli.inference.localizer import Localizer
from cam_cli.models.loading import LoadedModel, load_model
from cam_cli.settings import CamOptions, ModelOptions, RunOptions

logger = logging.getLogger(__name__)

PAPER_THRESHOLD = 0.2
CANDIDATES: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05..0.95


def few_shot_images(
    data_dir: str | Path, classes: Sequence[ClassInfo], per_class: int
) -> list[tuple[str, int, ImageAnnotation]]:
    """The last ``per_class`` images (sorted) of every class that have a training box:
    ``(path, class index, annotation)``. Raises ValueError when the data has no such boxes."""
    train_dir = Path(data_dir) / "train"
    boxes = read_train_boxes(train_dir)
    chosen = []
    for info in classes:
        paths = [p for p in list_images(train_dir / str(info.wnid)) if p.stem in boxes]
        chosen += [(str(p), info.index, boxes[p.stem]) for p in paths[-per_class:]]
    return chosen


def threshold_accuracies(
    loaded: LoadedModel,
    images: Sequence[tuple[str, int, ImageAnnotation]],
    run: RunOptions | None = None,
    candidates: Sequence[float] = CANDIDATES,
) -> tuple[np.ndarray, int]:
    """GT-known box accuracy (IoU >= 0.5, the paper's box rule) at every candidate threshold:
    one forward pass, the true class's CAM boxed at each threshold. Returns (accuracies in
    [0, 1], images that failed to load, which count as wrong)."""
    run = run or RunOptions(fast=False, progress=False)
    label = {path: index for path, index, _ in images}
    annotation = {path: a for path, _, a in images}
    localizer = Localizer(loaded, CamOptions(topk=1), run, copy_model=True)
    hits = np.zeros(len(candidates))
    failed = 0
    try:
        results = localizer.localize(
            list(label), extra_classes=lambda p: [label[p]], extra_cams="input"
        )
        for result in results:
            if result.extra_cams is None:
                failed += 1
                continue
            cam = np.asarray(result.extra_cams[0], dtype=np.float32)
            gt = np.array([box for _, box in annotation[result.path].boxes], dtype=np.int64)
            for i, threshold in enumerate(candidates):
                box = boxes_for_image(cam, (result.width, result.height), "paper", threshold)[0]
                hits[i] += float(iou_inclusive(box, gt).max(initial=0.0)) >= IOU_THRESHOLD
    finally:
        localizer.close()
    return hits / max(len(images), 1), failed


def choose_threshold(
    loaded: LoadedModel,
    images: Sequence[tuple[str, int, ImageAnnotation]],
    run: RunOptions | None = None,
) -> dict[str, Any]:
    """The candidate with the best GT-known accuracy on ``images`` (on a tie, the one nearest
    the paper's 0.2), and the sweep, for the log and the checkpoint."""
    accuracies, failed = threshold_accuracies(loaded, images, run)
    tied = np.flatnonzero(accuracies == accuracies.max())
    best = int(min(tied, key=lambda i: (abs(CANDIDATES[i] - PAPER_THRESHOLD), CANDIDATES[i])))
    return {
        "cam_threshold": CANDIDATES[best],
        "images": len(images),
        "failed_images": failed,
        "accuracy": {
            f"{t:.2f}": round(float(a), 4) for t, a in zip(CANDIDATES, accuracies, strict=True)
        },
    }


def threshold_images(
    data_dir: str | Path, classes: Sequence[ClassInfo], per_class: int
) -> list[tuple[str, int, ImageAnnotation]]:
    """`few_shot_images`, refusing data without any (ValueError naming the folder): what
    `train` reads before its first step, so a malformed ``<wnid>_boxes.txt`` stops the run
    before training, not after it with best.pt left without its threshold."""
    images = few_shot_images(data_dir, classes, per_class)
    if not images:
        raise ValueError(f"{data_dir}: no training images with boxes to choose a threshold on")
    return images


def calibrate_checkpoints(
    run_dir: str | Path,
    data_dir: str | Path,
    per_class: int,
    device: str = "cpu",
    images: Sequence[tuple[str, int, ImageAnnotation]] | None = None,
) -> dict[str, Any]:
    """Choose the threshold for ``run_dir/best.pt`` and write it into best.pt and last.pt
    (atomically), as `train` does at the end when ``threshold_images_per_class`` is set.
    ``images``: `threshold_images` read already (else read here)."""
    run_dir = Path(run_dir)
    best = run_dir / "best.pt"
    loaded = load_model(ModelOptions(checkpoint=best), device=device)
    if images is None:
        images = threshold_images(data_dir, loaded.classes, per_class)
    choice = choose_threshold(loaded, images, RunOptions(device=device, fast=False,
                                                         progress=False, workers=0))  # fmt: skip
    for name in ("best.pt", "last.pt"):
        path = run_dir / name
        if path.is_file():
            data = torch.load(path, map_location="cpu", weights_only=True)
            data["cam_threshold"] = choice["cam_threshold"]
            data["cam_threshold_choice"] = choice
            save_torch_atomic(data, path, derived=True)
    return choice
