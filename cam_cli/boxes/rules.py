"""Which boxes a CAM gives: the paper's one box, the released generator's ranked boxes, or the
box of every component. Shared by `cam-cli boxes`, `bbox` and `eval` (`box_rule`).

- ``paper``: the text of Zhou et al. (2016), section 3.1: threshold at 20% of the max, the box
  of the largest 8-connected component (`boxes.boxes_from_cams`). One box. The default.
- ``zhou2016``: what the released code ran to make the paper's Table 2 (`zhou2016`): the map
  max-normalised and quantised to 8 bits as the MATLAB code saved it, then ``dt_box`` with
  thresholds 20 100 110. Several boxes, ranked as the program printed them.
- ``all-components``: the box of every 8-connected component of the paper's mask, largest
  component first (so box 1 is the paper's box), as MaxBoxAccV2 looks at a mask.

Every rule returns at least one box: a map that yields none (max <= 0, constant, or no region
the released program keeps) gets the whole-map box, as the paper rule already does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cam_cli.boxes.components import (
    EIGHT_CONNECTED_WITHIN_MAP,
    boxes_from_cams,
    degenerate_maps,
    scale_boxes,
    threshold_masks,
    whole_map_box,
)
from cam_cli.settings import BoxRule, choices

BOX_RULES = choices(BoxRule)
PAPER, ZHOU2016, ALL_COMPONENTS = BOX_RULES


def check_rule(rule: str) -> str:
    """The rule itself, or ValueError naming the choices (callers turn it into a SetupError)."""
    if rule not in BOX_RULES:
        raise ValueError(f"box rule must be one of {', '.join(BOX_RULES)}, not {rule!r}")
    return rule


def rule_boxes(cam: np.ndarray, rule: str = PAPER, threshold: float = 0.2) -> np.ndarray:
    """Ranked boxes ``int64 [n, 4]`` (n >= 1, inclusive pixels) of one map ``[H, W]``, on the
    map's own grid. A ``uint8`` map is taken as an 8-bit heatmap already (a grey image file):
    ``zhou2016`` boxes it as it is, as ``dt_box`` read its JPEGs; a float map is quantised
    first (`zhou2016.quantize_heatmap`). ``threshold`` is the paper's fraction of the max, used
    by ``paper`` and ``all-components`` (``zhou2016`` has its own three levels)."""
    cam = np.asarray(cam)
    if cam.ndim != 2:
        raise ValueError(f"expected one map [H, W], got shape {cam.shape}")
    check_rule(rule)
    if rule == PAPER:
        return boxes_from_cams(cam[None], threshold)
    height, width = cam.shape
    if rule == ZHOU2016:
        from cam_cli.boxes.zhou2016 import quantize_heatmap, zhou2016_boxes

        heatmap = cam if cam.dtype == np.uint8 else quantize_heatmap(cam)
        boxes = zhou2016_boxes(heatmap)
    else:
        boxes = _component_boxes_by_size(cam, threshold)
    return boxes if len(boxes) else whole_map_box(height, width)[None]


def _component_boxes_by_size(cam: np.ndarray, threshold: float) -> np.ndarray:
    """Every 8-connected component's box, largest first (ties: first in raster order)."""
    from scipy import ndimage

    masks = threshold_masks(cam[None], threshold)
    masks[degenerate_maps(cam[None])] = False
    labels, count = ndimage.label(masks, structure=EIGHT_CONNECTED_WITHIN_MAP)
    if count == 0:
        return np.zeros((0, 4), dtype=np.int64)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    order = np.lexsort((np.arange(count), -sizes))
    slices = ndimage.find_objects(labels)
    boxes = np.array(
        [(s[2].start, s[1].start, s[2].stop - 1, s[1].stop - 1) for s in slices], dtype=np.int64
    )
    return boxes[order]


def resize_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cam [h, w]`` resized bilinearly to ``size = (width, height)``: the very call `cam-cli
    cam` makes for its `npy` ``image``, so a map resized here equals the ``.image.npy`` it wrote."""
    import torch

    from cam_cli.cam.maps import upsample_cams

    width, height = size
    if cam.shape == (height, width):
        return cam
    cam = np.asarray(cam)
    peak = float(np.abs(cam).max()) if cam.size else 0.0
    if peak > float(np.finfo(np.float32).max):  # beyond float32: scaled down first, never inf/NaN
        cam = cam / peak
    tensor = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))
    return upsample_cams(tensor[None, None], (height, width))[0, 0].numpy()


# Boxing "at the image's size" works on at most this many pixels (2048 x 2048): the released
# generator's three distance transforms cost ~1.5 us a pixel here, so a 9000 x 9000 photo
# took minutes and GBs per map. A larger image's map is resized to the largest size of the
# same aspect within it, boxed there, and its boxes scaled to the image (rounding outwards).
MAX_BOX_PIXELS = 2048 * 2048


def box_grid(size: tuple[int, int], max_pixels: int | None = None) -> tuple[int, int]:
    """The ``(width, height)`` a map is boxed at for an image of ``size``: the size itself up
    to ``max_pixels`` (`MAX_BOX_PIXELS`), else scaled down to fit, aspect kept."""
    max_pixels = MAX_BOX_PIXELS if max_pixels is None else max_pixels
    width, height = size
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def boxes_for_image(
    cam: np.ndarray,
    size: tuple[int, int],
    rule: str = PAPER,
    threshold: float = 0.2,
    at_image_size: bool = False,
) -> np.ndarray:
    """Ranked boxes of one map in the pixels of an image of ``size = (width, height)``.

    ``at_image_size``: the map is first resized to the image and boxed there, as the released
    code did (``zhou2016``, ten-crop), at most at `MAX_BOX_PIXELS` (`box_grid`); otherwise it
    is boxed on its own grid and the boxes are scaled, rounding outwards (`boxes.scale_boxes`),
    as `bbox` does for the paper's rule."""
    if at_image_size:
        grid = box_grid(size)
        boxes = rule_boxes(resize_map(cam, grid), rule, threshold)
        if grid == tuple(size):
            return boxes
        return scale_boxes(boxes, grid, np.tile(size, (len(boxes), 1)))
    boxes = rule_boxes(cam, rule, threshold)
    height, width = np.asarray(cam).shape
    return scale_boxes(boxes, (width, height), np.tile(size, (len(boxes), 1)))


def ranked_box_lists(boxes: Sequence[np.ndarray]) -> list[list[list[int]]]:
    """Plain Python lists (JSON) of a list of ``[n, 4]`` box arrays."""
    return [np.asarray(b, dtype=np.int64).tolist() for b in boxes]
