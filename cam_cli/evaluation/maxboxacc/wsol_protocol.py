"""wsolevaluation's MaxBoxAccV2 rules (Choe et al., CVPR 2020; clovaai/wsolevaluation), one
function per rule, so cam-cli's figure is theirs on the same CAMs, not a close cousin.

The rules, as their ``inference.py`` and ``evaluation.py`` apply them (own code, same arithmetic):

- the CAM at feature resolution, as float64, is resized to 224x224 with OpenCV's bicubic
  (``cv2.INTER_CUBIC``), then min-max normalised (a NaN or constant map becomes zeros):
  `scoremap_from_cam`;
- ground-truth boxes go from the annotated image's pixels to 224x224 with every coordinate
  truncated (their ``resize_bbox``: ``int(x * 224 / width)``), not clipped: `truncated_gt_boxes`;
- per CAM threshold t, the map is quantised to ``uint8(map * 255)`` and kept above
  ``int(t * max)`` (``cv2.threshold``, ``THRESH_BINARY``); every contour that
  ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` finds, the holes' too, gives
  ``cv2.boundingRect``'s ``[x, y, x + w, y + h]`` clipped to ``223``; no contour gives the box
  ``[0, 0, 0, 0]`` (scored like any other): `scoremap_boxes`.

OpenCV is used for the two steps whose exact output defines the figure (bicubic resampling
with OpenCV's float coefficients and border rule; Suzuki's border following with its hole
contours), since a replica would have to be proved equal to them bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

SCOREMAP_SIZE = 224  # wsolevaluation's _RESIZE_LENGTH: score maps and gt boxes live here
RESIZES = ("cubic", "bilinear")


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """Min-max normalised copy in float64; NaN anywhere or a constant map gives zeros (their
    ``normalize_scoremap``, which works in place on its argument; this one does not)."""
    cam = np.array(cam, dtype=np.float64)
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def resize_cam(cam: np.ndarray, size: int = SCOREMAP_SIZE, resize: str = "cubic") -> np.ndarray:
    """A feature-resolution CAM ``[h, w]`` at ``size x size`` in float64.

    ``cubic``: ``cv2.resize(..., INTER_CUBIC)`` of the float64 map (wsolevaluation).
    ``bilinear``: torch's ``interpolate(bilinear, align_corners=False)`` of the float32 map,
    as cam-cli's pipeline upsamples CAMs (a named variant, to measure the difference).
    """
    cam = np.asarray(cam)
    if cam.ndim != 2:
        raise ValueError(f"expected one map [H, W], got shape {cam.shape}")
    if resize == "cubic":
        return cv2.resize(cam.astype(np.float64), (size, size), interpolation=cv2.INTER_CUBIC)
    if resize == "bilinear":
        import torch
        import torch.nn.functional as F

        tensor = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
        out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
        return out[0, 0].numpy().astype(np.float64)
    raise ValueError(f"unknown resize {resize!r}; expected one of {', '.join(RESIZES)}")


def scoremap_from_cam(cam: np.ndarray, resize: str = "cubic") -> np.ndarray:
    """The 224x224 score map wsolevaluation's ``inference.py`` scores and saves for a CAM."""
    return normalize_scoremap(resize_cam(cam, SCOREMAP_SIZE, resize))


def truncated_gt_boxes(
    boxes: np.ndarray, image_size: tuple[int, int], size: int = SCOREMAP_SIZE
) -> np.ndarray:
    """Boxes ``[n, 4]`` from an image of ``(width, height)`` to ``size x size``, each
    coordinate scaled and truncated (their ``resize_bbox``); nothing is clipped."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width, height = map(float, image_size)
    frame = np.array([width, height, width, height])
    # x * new / old in this order, as theirs, then int() (towards zero)
    return np.trunc(boxes * float(size) / frame).astype(np.int64)


def threshold_cuts(quantised_max: int, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """``int(t * max)`` per threshold: the 8-bit level a pixel must exceed."""
    return np.trunc(np.asarray(thresholds, dtype=np.float64) * float(quantised_max)).astype(
        np.int64
    )


def scoremap_boxes(
    scoremap: np.ndarray, thresholds: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every box of every threshold of a score map in [0, 1]: ``(map_index [n], boxes [n, 4])``
    (see the module doc). Each threshold has at least one box ([0, 0, 0, 0] when empty)."""
    scoremap = np.asarray(scoremap)
    if scoremap.ndim != 2:
        raise ValueError(f"expected one map [H, W], got shape {scoremap.shape}")
    height, width = scoremap.shape
    quantised = (scoremap * 255).astype(np.uint8)
    cuts = threshold_cuts(int(quantised.max()), thresholds)
    by_cut: dict[int, np.ndarray] = {}
    index_parts, box_parts = [], []
    for t, cut in enumerate(cuts.tolist()):
        boxes = by_cut.get(cut)
        if boxes is None:
            boxes = by_cut[cut] = _contour_boxes(quantised, cut, width, height)
        index_parts.append(np.full(len(boxes), t, dtype=np.int64))
        box_parts.append(boxes)
    return np.concatenate(index_parts), np.concatenate(box_parts)


def _contour_boxes(quantised: np.ndarray, cut: int, width: int, height: int) -> np.ndarray:
    _, binary = cv2.threshold(quantised, cut, 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    rects = np.array([cv2.boundingRect(contour) for contour in contours], dtype=np.int64)
    x, y, w, h = rects.T
    return np.stack(
        [x, y, np.minimum(x + w, width - 1), np.minimum(y + h, height - 1)], axis=1
    ).astype(np.int64)


def check_scoremap(scoremap: np.ndarray, size: int = SCOREMAP_SIZE) -> None:
    """Refuse what their ``check_scoremap_validity`` refuses (2-D, no NaN, in [0, 1]), and a
    map that is not ``size x size``, the frame their ground truth is mapped to."""
    if not isinstance(scoremap, np.ndarray) or scoremap.dtype.kind != "f":
        kind = getattr(scoremap, "dtype", type(scoremap).__name__)
        raise ValueError(f"a score map must be a float array, not {kind}")
    if scoremap.ndim != 2:
        raise ValueError(f"a score map must be 2-D, not of shape {scoremap.shape}")
    if scoremap.shape != (size, size):
        rows, cols = scoremap.shape
        raise ValueError(f"a score map must be {size}x{size}, not {rows}x{cols}")
    if np.isnan(scoremap).any():
        raise ValueError("a score map must not contain NaN")
    if (scoremap < 0).any() or (scoremap > 1).any():
        raise ValueError(
            f"a score map must lie in [0, 1] (min {scoremap.min():.4g}, max {scoremap.max():.4g})"
        )
