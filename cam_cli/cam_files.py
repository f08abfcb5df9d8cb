"""Files written by `cam-cli cam`: a PNG overlay per image and class, optionally the raw maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cam_cli.cam import upsample_cams
from cam_cli.draw import heatmap_overlay, output_stem, safe_name, save_png_atomic
from cam_cli.images import open_rgb
from cam_cli.pipeline import ImageResult


class CamWriter:
    """Names say image, rank and class: ``IMAGE_rank1_n01440764-tench.png``."""

    def __init__(self, out_dir: Path, inputs: list[str], npy: str = "none", alpha: float = 0.5):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.inputs = {Path(p).resolve() for p in inputs}
        self.npy = npy
        self.alpha = alpha
        self._taken: set[str] = set()

    def _target(self, name: str) -> Path:
        path = self.out_dir / name
        if path.resolve() in self.inputs:
            raise ValueError(f"refusing to overwrite input file {path}")
        return path

    def write(self, result: ImageResult) -> list[Path]:
        image, _ = open_rgb(result.path)
        stem = output_stem(result.path, self._taken)
        written = []
        for prediction, cam in zip(result.predictions, result.cams, strict=True):
            label = "-".join(x for x in (prediction.wnid, prediction.name) if x)
            name = f"{stem}_rank{prediction.rank}_{safe_name(label or str(prediction.class_index))}"
            png = self._target(f"{name}.png")
            save_png_atomic(heatmap_overlay(image, cam, self.alpha), png)
            written.append(png)
            if self.npy in ("feature", "both"):
                written.append(self._save_npy(f"{name}.feature.npy", cam))
            if self.npy in ("image", "both"):
                full = upsample_cams(torch.from_numpy(cam)[None, None], image.size[::-1])[0, 0]
                written.append(self._save_npy(f"{name}.image.npy", full.numpy()))
        return written

    def _save_npy(self, name: str, array: np.ndarray) -> Path:
        path = self._target(name)
        tmp = path.with_name(f".{path.name}.tmp.npy")
        np.save(tmp, array.astype(np.float32))
        tmp.replace(path)
        return path
