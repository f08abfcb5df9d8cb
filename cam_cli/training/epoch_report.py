"""What a training run shows of itself after each epoch: ``report.html`` in the run folder
(`report.training_page`: the curves of ``metrics.jsonl`` and the CAMs of a fixed handful of val
images, so a user sees the maps form) and, with ``tensorboard``, TensorBoard event files in
``run/tensorboard`` for those who live there.

The page needs matplotlib (the ``report`` extra): without it the run trains as before and says
once how to get the page. TensorBoard's writer needs the ``tensorboard`` package (the
``tensorboard`` extra): asked for without it, the run stops before any work, in one line.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cam_cli import __version__
from cam_cli.cam.maps import compute_cams
from cam_cli.data.classes import ClassInfo
from cam_cli.data.images import load_resized
from cam_cli.errors import SetupError
from cam_cli.files.checks import printable_path
from cam_cli.models.preprocess import Preprocessing

GRID_IMAGES = 6  # val images whose CAMs the page follows, one per class while classes last
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_INSTALL = "`tensorboard` writes TensorBoard's files: pip install 'cam-cli[tensorboard]'"
REPORT_INSTALL = "no report.html: its plots need matplotlib: pip install 'cam-cli[report]'"

logger = logging.getLogger(__name__)


def check_tensorboard() -> None:
    """One line, before any work, where the TensorBoard writer cannot be imported."""
    if importlib.util.find_spec("tensorboard") is None:
        raise SetupError(TENSORBOARD_INSTALL)


def grid_images(val: Sequence[tuple[str, int]], count: int = GRID_IMAGES) -> list[tuple[str, int]]:
    """The handful followed: the first val image (by path) of each class, classes in order of
    their first image, at most ``count``; the same on every epoch and on a resumed run."""
    chosen: dict[int, str] = {}
    for path, label in sorted(val):
        if label not in chosen:
            chosen[label] = path
        if len(chosen) == count:
            break
    return [(path, label) for label, path in chosen.items()]


class EpochReport:
    """Called after each epoch with the network and the metrics so far (`after_epoch`)."""

    def __init__(
        self,
        run_dir: Path,
        val: Sequence[tuple[str, int]],
        classes: Sequence[ClassInfo],
        size: int,
        preprocessing: Preprocessing,
        settings: Mapping[str, str],
        tensorboard: bool = False,
    ) -> None:
        self.run_dir = run_dir
        self.page = importlib.util.find_spec("matplotlib") is not None
        if not self.page:
            logger.info("note: %s", REPORT_INSTALL)
        self.started = datetime.now().astimezone().isoformat(timespec="seconds")
        self.settings = dict(settings)
        self.preprocessing = preprocessing
        self.images: list[tuple[str, int]] = []
        pixels = []
        for path, label in grid_images(val):
            try:
                pixels.append(load_resized(path, size)[0])
            except (OSError, ValueError):  # the run names it when it meets it; not followed
                continue
            self.images.append((path, label))
        self.pixels = torch.from_numpy(np.stack(pixels)) if pixels else None
        self.names = {c.index: c.name or c.wnid or str(c.index) for c in classes}
        self.epochs: list[int] = []
        self.cams: list[list[np.ndarray]] = []
        self.writer = None
        if tensorboard:
            check_tensorboard()
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR))

    def _grid_cams(self, module: torch.nn.Module, device: torch.device) -> list[np.ndarray]:
        """Each followed image's CAM of its own class, at feature resolution."""
        if self.pixels is None:
            return []
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                x = self.preprocessing.apply(self.pixels.to(device))
                _, features = module(x)
                weight, _ = module.class_weights()  # type: ignore[operator]
                labels = torch.tensor([[label] for _, label in self.images], device=device)
                cams = compute_cams(features.float(), None if weight is None else weight.float(),
                                    labels)  # fmt: skip
        finally:
            module.train(was_training)
        return list(cams[:, 0].cpu().numpy())

    def after_epoch(
        self, module: torch.nn.Module, device: torch.device, history: Sequence[Mapping[str, Any]]
    ) -> None:
        """The page rewritten (atomically) with this epoch, and its TensorBoard scalars."""
        row = history[-1]
        if self.writer is not None:
            epoch = int(row["epoch"])
            for key in ("train_loss", "train_acc", "val_acc", "lr"):
                if row.get(key) is not None:
                    self.writer.add_scalar(key, float(row[key]), epoch)
            self.writer.flush()
        if not self.page:
            return
        from cam_cli.report.inputs import (
            CamGrid,
            GridImage,
            RunInfo,
            TrainingReportInput,
            command_line,
        )
        from cam_cli.report.training_page import write_training_report

        self.epochs.append(int(row["epoch"]))
        self.cams.append(self._grid_cams(module, device))
        grid = CamGrid(
            [GridImage(path, self.names.get(label, str(label))) for path, label in self.images],
            list(self.epochs),
            [list(cams) for cams in self.cams],
        )
        run = RunInfo(
            command=command_line(),
            version=__version__,
            started=self.started,
            seconds=sum(float(r.get("seconds") or 0) for r in history),
            network=self.settings.get("arch"),
            data={"data": printable_path(self.settings.get("data", ""))},
            device=str(device),
            settings={k: v for k, v in self.settings.items() if k not in ("arch", "data")},
        )
        planned = int(self.settings["epochs"]) if self.settings.get("epochs") else None
        data = TrainingReportInput(run, list(history), grid if self.images else None, planned)
        write_training_report(data, self.run_dir)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
