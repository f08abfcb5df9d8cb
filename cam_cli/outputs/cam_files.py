"""Files written by `cam-cli cam`: a PNG overlay per image and class, optionally the raw maps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cam_cli.cam.maps import upsample_cams
from cam_cli.data.images import open_rgb
from cam_cli.files.atomic import atomic_file, write_bytes_atomic
from cam_cli.inference.results import ImageResult
from cam_cli.outputs.draw import heatmap_overlay, output_stem, png_bytes, safe_name
from cam_cli.settings import NpyMaps, choices

NPY_CHOICES = choices(NpyMaps)


@dataclass
class RenderedCams:
    size: tuple[int, int]  # (width, height) of the original image
    pngs: list[bytes]  # one overlay per CAM, PNG-encoded


class CamWriter:
    """Names say image, rank and class: ``IMAGE_rank1_n01440764-tench.png``."""

    def __init__(
        self,
        out_dir: Path,
        inputs: list[str],
        npy: str = "none",
        alpha: float = 0.5,
        make_dir: bool = True,  # False: only `render` will be used (a rank that never writes)
    ) -> None:
        if npy not in NPY_CHOICES:
            raise ValueError(f"npy must be one of {', '.join(NPY_CHOICES)}, not {npy!r}")
        self.out_dir = Path(out_dir)
        if make_dir:
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

    def render(self, result: ImageResult) -> None:
        """The costly half of `write` (decode the original, blend, PNG-encode), kept on
        ``result.analysis``. Thread-safe, so `cam` runs it as `localize`'s ``finish``, beside
        the network; an error is kept too, and raised by `write`."""
        try:
            image, _ = open_rgb(result.path)
            assert result.cams is not None  # `cam` keeps every image's maps
            pngs = [png_bytes(heatmap_overlay(image, cam, self.alpha)) for cam in result.cams]
            result.analysis = RenderedCams(image.size, pngs)
        except (ValueError, OSError) as error:
            result.analysis = error

    def write(self, result: ImageResult) -> list[Path]:
        if not isinstance(result.analysis, RenderedCams | Exception):
            self.render(result)
        rendered = result.analysis
        if isinstance(rendered, Exception):
            raise rendered
        assert isinstance(rendered, RenderedCams)  # what `render` keeps when it does not fail
        stem = output_stem(result.path, self._taken)
        written = []
        assert result.cams is not None  # `cam` keeps every image's maps
        maps = zip(result.predictions, result.cams, rendered.pngs, strict=True)
        for prediction, cam, png in maps:
            label = "-".join(x for x in (prediction.wnid, prediction.name) if x)
            name = f"{stem}_rank{prediction.rank}_{safe_name(label or str(prediction.class_index))}"
            target = self._target(f"{name}.png")
            write_bytes_atomic(png, target, derived=True)
            written.append(target)
            if self.npy in ("feature", "both"):
                written.append(self._save_npy(f"{name}.feature.npy", cam))
            if self.npy in ("image", "both"):
                width, height = rendered.size
                full = upsample_cams(torch.from_numpy(cam)[None, None], (height, width))[0, 0]
                written.append(self._save_npy(f"{name}.image.npy", full.numpy()))
        return written

    def _save_npy(self, name: str, array: np.ndarray) -> Path:
        path = self._target(name)
        with atomic_file(path, "wb", derived=True) as handle:
            np.save(handle, array.astype(np.float32))
        return path
