"""PxAP (Choe et al., CVPR 2020): pixel average precision of CAMs against ground-truth masks, as
clovaai/wsolevaluation's ``MaskEvaluator`` computes it on OpenImages30k.

Their rules, each reproduced here:
- Thresholds ``np.arange(0, 1, interval)`` (``--cam_curve_interval``, 0.01 in their
  ``evaluation.py``), with right edges ``[..., 1, 2, 3]`` added: bins ``[0, 0.01)`` ..
  ``[0.99, 1)``, ``[1, 2)``, ``[2, 3]``. Every score map (min-max normalised to [0, 1]) is
  histogrammed over its foreground pixels and over its background pixels, summed over the set.
- Ground truth: every instance mask of the image and its one ignore mask, read as 8-bit grey,
  resized to the score map's grid (224 x 224 there) with ``cv2.INTER_NEAREST`` and kept where
  ``> 0.5``. Foreground = any instance; ignored = the ignore mask minus the foreground (value
  255 in their combined mask), left out of both histograms. An image with no ignore mask (an
  empty field in localization.txt, which crashed their code: wsolevaluation #33) ignores nothing.
- ``tp``, ``fp`` = reversed cumulative sums of the two histograms (pixels at or above each
  threshold, from the top), precision ``tp / (tp + fp)``, recall ``tp / P``, and
  PxAP = ``100 * sum(precision[1:] * diff(recall))`` over the thresholds where something is
  predicted, their right-Riemann area under the precision-recall curve.

Everything is histograms: one ``np.histogram`` per image (or per batch) over the selected
pixels, never a loop over thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

DEFAULT_INTERVAL = 0.01  # their evaluation.py's --cam_curve_interval


def wsol_thresholds(interval: float = DEFAULT_INTERVAL) -> np.ndarray:
    """Their CAM threshold grid, ``np.arange(0, 1, interval)`` (so 0.07 is 0.07000000000000001)."""
    if not 0 < interval < 1:
        raise ValueError(f"the threshold interval must be in (0, 1), got {interval}")
    return np.arange(0, 1, interval)


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (float64), as their ``normalize_scoremap``: a constant map, or one with a
    NaN, becomes zeros. Works on ``[H, W]`` or a batch ``[B, H, W]`` (each map on its own)."""
    cam = np.array(cam, dtype=np.float64)  # a copy: the caller's map is left alone
    flat = cam.reshape(-1, *cam.shape[-2:]) if cam.ndim >= 2 else cam[None, None]
    for m in flat:  # at most B maps; the work inside is whole-array
        if np.isnan(m).any() or m.min() == m.max():
            m[...] = 0.0
        else:
            m -= m.min()
            m /= m.max()
    return cam


def resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)``: output pixel ``x`` takes
    source pixel ``min(floor(x * (1 / (w_out / w_in))), w_in - 1)``, in doubles as OpenCV's
    ``resizeNN`` computes it (not the centre rule of PIL's NEAREST)."""
    mask = np.asarray(mask)
    rows, cols = shape

    def index(n_out: int, n_in: int) -> np.ndarray:
        inverse = 1.0 / (n_out / n_in)
        return np.minimum(np.floor(np.arange(n_out) * inverse).astype(np.int64), n_in - 1)

    return mask[index(rows, mask.shape[0])[:, None], index(cols, mask.shape[1])[None, :]]


def read_grey(path: str | Path) -> np.ndarray:
    """A mask file as 8-bit grey ``[H, W]`` (``cv2.IMREAD_GRAYSCALE``): grey PNGs as stored,
    colour ones through the ITU-R 601 luma, 16-bit ones scaled to 8 bits. Opened as every
    image is (`data.images.open_image`): a mask over the pixel limit is refused from its
    header, before decoding; a FIFO is never opened. ValueError naming the file otherwise."""
    from PIL import Image

    from cam_cli.data.images import open_image, regular_file

    try:
        regular_file(path)
        with open_image(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.int64) >> 8
                return np.clip(array, 0, 255).astype(np.uint8)
            if image.mode != "L":
                image = image.convert("L")
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: cannot read the mask ({reason})") from None


def ground_truth_mask(
    mask_paths: Sequence[str | Path],
    ignore_path: str | Path | None,
    shape: tuple[int, int] = (224, 224),
) -> tuple[np.ndarray, np.ndarray]:
    """``(foreground, ignored)`` boolean ``[H, W]`` masks in a score map's grid (their
    ``get_mask``): instances united, the ignore region minus the foreground."""
    if not mask_paths:
        raise ValueError("an image needs at least one instance mask")
    foreground = np.zeros(shape, dtype=bool)
    for path in mask_paths:
        foreground |= resize_nearest(read_grey(path).astype(np.float32), shape) > 0.5
    if ignore_path is None:
        return foreground, np.zeros(shape, dtype=bool)
    ignored = resize_nearest(read_grey(ignore_path).astype(np.float32), shape) > 0.5
    return foreground, ignored & ~foreground


def check_scoremap(scoremap: np.ndarray, where: str) -> np.ndarray:
    """Their ``check_scoremap_validity``: a 2-D float map in [0, 1] without NaN."""
    scoremap = np.asarray(scoremap)
    if scoremap.ndim != 2:
        raise ValueError(f"{where}: a score map must be 2-D, got shape {list(scoremap.shape)}")
    if not np.issubdtype(scoremap.dtype, np.floating):
        raise ValueError(f"{where}: a score map must be float, got {scoremap.dtype}")
    if np.isnan(scoremap).any():
        raise ValueError(f"{where}: the score map has NaN")
    if scoremap.size and (scoremap.min() < 0 or scoremap.max() > 1):
        raise ValueError(
            f"{where}: a score map must be in [0, 1] (min {scoremap.min():.6g}, "
            f"max {scoremap.max():.6g})"
        )
    return scoremap.astype(np.float64, copy=False)


def _check_scoremap_header(shape: tuple[int, ...], dtype: np.dtype) -> None:
    """`check_scoremap`'s shape and type rules, on a ``.npy`` header (before the data)."""
    if len(shape) != 2:
        raise ValueError(f"a score map must be 2-D, got shape {list(shape)}")
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"a score map must be float, got {dtype}")


class PxAP:
    """Pixel histograms over a data set, then PxAP (module docstring)."""

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        self.interval = interval
        self.thresholds = wsol_thresholds(interval)
        self.edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        self.foreground = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.background = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.images = 0

    def histograms(
        self, scoremaps: np.ndarray, foreground: np.ndarray, ignored: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The foreground and background histograms of one map ``[H, W]`` or a batch
        ``[B, H, W]`` with its masks (same shape), without counting them (pure)."""
        scoremaps = np.asarray(scoremaps, dtype=np.float64)
        foreground = np.asarray(foreground, dtype=bool)
        if foreground.shape != scoremaps.shape:
            raise ValueError(
                f"score maps {list(scoremaps.shape)} and masks {list(foreground.shape)} differ"
            )
        background = ~foreground
        if ignored is not None:
            background &= ~np.asarray(ignored, dtype=bool)
        fg, _ = np.histogram(scoremaps[foreground], bins=self.edges)
        bg, _ = np.histogram(scoremaps[background], bins=self.edges)
        return fg, bg

    def add(
        self, scoremaps: np.ndarray, foreground: np.ndarray, ignored: np.ndarray | None = None
    ) -> None:
        """Count one map or a batch (see `histograms`); maps must already be in [0, 1]."""
        fg, bg = self.histograms(scoremaps, foreground, ignored)
        self.add_histograms(fg, bg, 1 if np.ndim(scoremaps) == 2 else len(scoremaps))

    def add_histograms(self, foreground: np.ndarray, background: np.ndarray, images: int) -> None:
        self.foreground += np.asarray(foreground, dtype=np.int64)
        self.background += np.asarray(background, dtype=np.int64)
        self.images += images

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(precision, recall, predicted)`` from the top threshold down (their ``compute``);
        ``predicted`` marks the thresholds where some pixel is predicted."""
        tp = self.foreground[::-1].cumsum().astype(np.float64)
        fp = self.background[::-1].cumsum().astype(np.float64)
        positives = float(self.foreground.sum())
        if positives <= 0:
            raise ValueError("PxAP: no foreground pixel in the ground truth of these images")
        predicted = (tp + fp) != 0
        if not predicted.any():
            raise ValueError("PxAP: no pixel at all was scored")
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
        return precision, tp / positives, predicted

    def value(self) -> float:
        """PxAP in %, their right-Riemann area under the precision-recall curve."""
        precision, recall, predicted = self.curve()
        return float((precision[1:] * np.diff(recall))[predicted[1:]].sum() * 100)

    def summary(self) -> dict:
        return {
            "pxap": self.value(),
            "images": self.images,
            "threshold_interval": self.interval,
            "foreground_pixels": int(self.foreground.sum()),
            "background_pixels": int(self.background.sum()),
        }


def pxap_of_scoremaps(
    scoremaps: Mapping[str, np.ndarray],
    masks: Mapping[str, Sequence[str | Path]],
    ignore: Mapping[str, str | Path | None],
    interval: float = DEFAULT_INTERVAL,
) -> dict:
    """PxAP of ``{image_id: map in [0, 1]}`` against ``{image_id: mask paths}`` and
    ``{image_id: ignore path or None}``; the masks are resized to each map's own grid."""
    scorer = PxAP(interval)
    for image_id, scoremap in scoremaps.items():
        if image_id not in masks:
            raise ValueError(f"{image_id}: a score map without a ground-truth mask")
        scoremap = check_scoremap(scoremap, image_id)
        foreground, ignored = ground_truth_mask(
            masks[image_id], ignore.get(image_id), scoremap.shape
        )
        scorer.add(scoremap, foreground, ignored)
    return scorer.summary()


def pxap_from_scoremap_dir(
    metadata_dir: str | Path,
    scoremap_dir: str | Path,
    mask_root: str | Path,
    interval: float = DEFAULT_INTERVAL,
) -> dict:
    """PxAP of ``scoremap_dir/<image_id>.npy`` (what their ``inference.py`` saves) for every
    image of a mask metadata split, masks under ``mask_root`` (their ``--mask_root``/OpenImages)."""
    from cam_cli.data.npy import read_npy
    from cam_cli.data.wsol_metadata import read_wsol_metadata

    metadata = read_wsol_metadata(metadata_dir)
    if metadata.kind != "masks":
        raise ValueError(f"{metadata_dir}: localization.txt holds boxes, not masks; no PxAP")
    root, maps = Path(mask_root), Path(scoremap_dir)
    masks = {i: [root / p for p in paths] for i, paths in metadata.masks.items()}
    ignore = {i: (root / p if p else None) for i, p in metadata.ignore.items()}
    scorer = PxAP(interval)
    for image_id in metadata.image_ids:
        if image_id not in masks:
            raise ValueError(f"{metadata_dir}: no mask for {image_id} in localization.txt")
        path = maps / f"{image_id}.npy"
        if not path.is_file():
            raise ValueError(f"{path}: no score map for {image_id}")
        try:
            loaded = read_npy(path, check=_check_scoremap_header)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        scoremap = check_scoremap(loaded, str(path))
        foreground, ignored = ground_truth_mask(masks[image_id], ignore[image_id], scoremap.shape)
        scorer.add(scoremap, foreground, ignored)
    return scorer.summary()
