"""The box generator released with CAM (zhoubolei/CAM, ``bboxgenerator/dt_box``), in numpy + scipy.

The code released to reproduce Zhou et al.'s (CVPR 2016) ILSVRC localization numbers does not
use the paper's one-box rule: ``ILSVRC_evaluate_bbox.m`` and ``generate_bbox.m`` run a C++ program,
``dt_box heatmap.jpg 20 100 110 out.txt``, on each heatmap saved as an 8-bit JPEG, and score the
first (and second) box it prints. This module reproduces that program without OpenCV:

1. For each threshold ``t``: the mask ``heatmap > t``; its Euclidean distance transform (each
   mask pixel's distance to the nearest non-mask pixel), scaled to 0..255; kept where > 10.
   The last step peels off every pixel closer to the background than 10.5/255 (about 4%) of
   the largest distance in that mask.
2. ``findContours(RETR_CCOMP)`` on each kept mask: one rectangle per outer contour and one per
   hole contour, clipped so that 5 pixels stay free at the right and the bottom.
3. All rectangles of all thresholds ranked by area (``std::sort``, largest first), then a greedy
   merge that drops a rectangle overlapping an earlier kept one by more than half of the larger
   area -- and, through an ``erase`` inside a ``for`` loop, never tests the rectangle right after
   each one it drops.

Source lines cited as ``dt_box.cpp:N`` and ``dt.c:N`` are those of ``bboxgenerator/`` in the
repository (commit c63f285). The shipped binary links OpenCV 2.4 (``libopencv_*.so.2.4``), and it
is OpenCV 2.4's ``findContours`` that is reproduced here; see `contour_rects` for what that
changes against OpenCV >= 3.2.

Conventions: the released program prints ``x y w h`` (0-based, ``cv::Rect``); `released_rects`
returns exactly that, `zhou2016_boxes` the project's inclusive ``[xmin, ymin, xmax, ymax]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from scipy import ndimage

RELEASED_THRESHOLDS = (20, 100, 110)  # generate_bbox.m:15, ILSVRC_evaluate_bbox.m:63
DT_KEEP_ABOVE = 10  # dt_box.cpp:60: cvThreshold(dt, dt, 10, 255, CV_THRESH_BINARY)
FREE_MARGIN = 5  # dt_box.cpp:89-92: rectangles end at least 5 pixels before the right/bottom

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)  # findContours' foreground connectivity
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)  # ... and its background's


# --------------------------------------------------------------------------------------------
# The heatmap: what the MATLAB side wrote and what dt_box read
# --------------------------------------------------------------------------------------------


def quantize_heatmap(cam: np.ndarray) -> np.ndarray:
    """A float map ``[H, W]`` to the 8-bit grey heatmap the released MATLAB saved.

    ``ILSVRC_generate_heatmap.m:122-127`` divides the (already summed, absolute) map by its max
    and ``imwrite``s it; ``imwrite`` of a floating image in [0, 1] stores ``im2uint8`` of it, which
    rounds half up (``floor(x * 255 + 0.5)``, *not* numpy's half-to-even ``round``), saturates
    outside [0, 1] and maps NaN to 0. The division happens in the map's own float type (MATLAB
    worked in ``single``). A map whose max is <= 0 (or all NaN) has nothing to show: all zeros.
    The JPEG compression that followed in MATLAB is not reproduced.
    """
    values = np.asarray(cam)
    if values.ndim != 2:
        raise ValueError(f"expected one map [H, W], got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if np.isnan(values).all() or not np.nanmax(values) > 0:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = values / np.nanmax(values)
    levels = np.floor(np.nan_to_num(scaled, nan=0.0) * 255 + 0.5)
    return np.clip(levels, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Step 1: threshold, distance transform, keep the inner part
# --------------------------------------------------------------------------------------------


def scaled_distance_transform(mask: np.ndarray) -> np.ndarray:
    """dt.c's ``dt_binary``: the 8-bit image the C code leaves behind for a binary mask.

    - dt.c:152: mask pixels start at +INF, the others at 0, so the (Felzenszwalb) transform
      gives each mask pixel its squared Euclidean distance to the nearest non-mask pixel of the
      image; the image border is not a non-mask pixel. Non-mask pixels get 0.
    - dt.c:157: ``sqrt`` -- a plain Euclidean distance, not squared.
    - dt.c:104-118: ``v = (int)(d * (255.0 / (max - min)) + 0.5)`` clamped to 0..255. ``min`` is
      not subtracted from ``d``; it is 0 as soon as one pixel lies outside the mask.
    - dt.c:106: when ``min == max`` the image is returned untouched: an empty mask stays 0 and
      a mask covering the whole image stays 255 (its +INF distances are all equal in double;
      checked against the compiled dt.c up to 4000 x 4000).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.all() or not mask.any():
        return np.where(mask, 255, 0).astype(np.uint8)
    distance = ndimage.distance_transform_edt(mask)  # sqrt of exact integer squared distances
    scale = 255.0 / distance.max()  # min is 0: some pixel lies outside the mask
    levels = (distance * scale + 0.5).astype(np.int64)  # C's (int) cast truncates; all >= 0
    return np.clip(levels, 0, 255).astype(np.uint8)


def inner_mask(heatmap: np.ndarray, threshold: int) -> np.ndarray:
    """dt_box.cpp:58-60: ``heatmap > threshold``, distance-transformed, kept where > 10."""
    return scaled_distance_transform(heatmap > threshold) > DT_KEEP_ABOVE


# --------------------------------------------------------------------------------------------
# Step 2: findContours(RETR_CCOMP) + boundingRect, without tracing a contour
# --------------------------------------------------------------------------------------------


def _first_pixels(labels: np.ndarray) -> np.ndarray:
    """Raster index of the first pixel of each label 1, 2, ... of a labelled image."""
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    _, first = np.unique(flat[where], return_index=True)
    return where[first]


def _slice_rects(slices: list[tuple[slice, slice]], grow: int) -> np.ndarray:
    """``find_objects`` slices of the 1-padded image -> ``x, y, w, h`` grown by ``grow``."""
    corners = [(c.start, r.start, c.stop, r.stop) for r, c in slices]
    x0, y0, x1, y1 = np.array(corners, dtype=np.int64).reshape(-1, 4).T
    return np.stack([x0 - 1 - grow, y0 - 1 - grow, x1 - x0 + 2 * grow, y1 - y0 + 2 * grow], 1)


def contour_rects(mask: np.ndarray, zero_frame: bool = True) -> np.ndarray:
    """``cv::boundingRect`` of every contour ``cv::findContours(mask, RETR_CCOMP)`` returns.

    Returns ``int64 [n, 4]`` rows ``x, y, w, h`` in OpenCV's output order. No contour is traced:
    Suzuki's border following, which findContours implements, gives

    - one outer contour per 8-connected component of the mask; it passes through the
      component's extreme pixels, so its rectangle is the component's bounding box;
    - one hole contour per 4-connected region of non-mask pixels that does not reach the
      outside; it runs along the *mask* pixels around the hole, so its rectangle is the
      hole's bounding box grown by one pixel on each side.

    Order (it only matters for equal areas in `rank_rects`): the raster scan meets a component
    at its first pixel and a hole at its first pixel, and every new contour is pushed to the
    *front* of its parent's list (``cvInsertNodeIntoTree``); ``cvTreeToNodeSeq`` then walks the
    tree depth first. So components come last-met first, each followed by its own holes,
    last-met first. (Past 126 contours in one mask OpenCV reuses its 7-bit border marks and
    finds a hole's parent by a search that OpenCV 2.4 did less carefully than 4.x; only the
    order of such a hole could differ, and this was checked against 4.x only.)

    ``zero_frame=True`` is OpenCV before 3.2, as linked by the binary: ``cvStartFindContours``
    writes zeros over the image's 1-pixel frame before scanning, so mask pixels on the frame do
    not exist and a shape touching the image border ends one pixel short of it. OpenCV >= 3.2
    (opencv/opencv#7516) pads a copy with a zero frame instead, keeping those pixels:
    ``zero_frame=False``.
    """
    mask = np.array(mask, dtype=bool)  # a copy: the frame may be zeroed
    if zero_frame:
        mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = False
    padded = np.pad(mask, 1)  # one outside region all around, as the zero frame provides
    components, n_components = ndimage.label(padded, structure=_EIGHT_CONNECTED)
    if n_components == 0:
        return np.zeros((0, 4), dtype=np.int64)
    regions, n_regions = ndimage.label(~padded, structure=_FOUR_CONNECTED)
    is_hole = np.arange(1, n_regions + 1) != regions[0, 0]

    outer_rects = _slice_rects(ndimage.find_objects(components), grow=0)
    hole_rects = _slice_rects(ndimage.find_objects(regions), grow=1)[is_hole]
    outer_first = _first_pixels(components)
    hole_first = _first_pixels(regions)[is_hole]
    # A hole's contour belongs to the component of the mask pixel left of the hole's first pixel.
    hole_parent = components.ravel()[hole_first - 1] - 1

    rects = np.concatenate([outer_rects, hole_rects])
    component_first = np.concatenate([outer_first, outer_first[hole_parent]])
    is_hole_contour = np.concatenate([np.zeros(n_components, bool), np.ones(len(hole_first), bool)])
    own_first = np.concatenate([outer_first, hole_first])
    # Components last met first, each followed by its holes, last met first.
    return rects[np.lexsort((-own_first, is_hole_contour, -component_first))]


def clip_rects(rects: np.ndarray, width: int, height: int) -> np.ndarray:
    """dt_box.cpp:89-92: keep ``FREE_MARGIN`` pixels free at the right and at the bottom.

    ``LIMIT(v, L, R)`` is ``v < L ? L : (v > R ? R : v)`` (dt_box.cpp:66-70), applied as::

        x = LIMIT(x, 0, W - 5)      w = LIMIT(w, 0, W - x_before - 5)

    The width limit uses the *unclipped* x, and when ``R < L`` the result is ``R``: a contour
    starting in the last 5 columns gets width ``W - x - 5 <= 0``, i.e. zero or negative (the
    released MATLAB then swaps the corners, ILSVRC_evaluate_bbox.m:98). Same for y and h.
    """

    def limit(v: np.ndarray, low: int | np.ndarray, high: int | np.ndarray) -> np.ndarray:
        return np.where(v < low, low, np.where(v > high, high, v))

    x, y, w, h = np.asarray(rects, dtype=np.int64).reshape(-1, 4).T
    margin = FREE_MARGIN
    return np.stack(
        [
            limit(x, 0, width - margin),
            limit(y, 0, height - margin),
            limit(w, 0, width - x - margin),
            limit(h, 0, height - y - margin),
        ],
        axis=1,
    ).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Step 3: rank by area, merge
# --------------------------------------------------------------------------------------------


_T = TypeVar("_T")


def _libstdcxx_sort(
    items: list[_T], less: Callable[[_T, _T], bool], depth_limit: int | None = None
) -> list[_T]:
    """``std::sort`` of GCC's libstdc++ (4.8.4, as in the shipped binary, through 12), in Python.

    ``std::sort`` is not stable, and dt_box ranks by area alone (dt_box.cpp:153-164), so the
    order of equal-area rectangles is whatever libstdc++'s introsort makes of the input order.
    Up to 16 elements that is plain insertion sort (stable); beyond, median-of-three quicksort
    partitions reorder ties. The binary's symbols (``__move_median_to_first`` with four
    iterators, ``__introsort_loop``, ``__adjust_heap``) are the ones ported below.
    ``depth_limit`` overrides introsort's ``2 * floor(log2(n))``, only to test the heap-sort
    fallback (reached on adversarial inputs) against the real thing.
    """
    a = list(items)

    def adjust_heap(first: int, hole: int, length: int, value: _T) -> None:
        top, child = hole, hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if less(a[first + child], a[first + child - 1]):
                child -= 1
            a[first + hole] = a[first + child]
            hole = child
        if length % 2 == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            a[first + hole] = a[first + child - 1]
            hole = child - 1
        parent = (hole - 1) // 2
        while hole > top and less(a[first + parent], value):
            a[first + hole] = a[first + parent]
            hole, parent = parent, (parent - 1) // 2
        a[first + hole] = value

    def heap_sort(first: int, last: int) -> None:  # std::partial_sort(first, last, last)
        length = last - first
        for parent in range((length - 2) // 2, -1, -1):
            adjust_heap(first, parent, length, a[first + parent])
        while last - first > 1:
            last -= 1
            value, a[last] = a[last], a[first]
            adjust_heap(first, 0, last - first, value)

    def move_median_to_first(result: int, i: int, j: int, k: int) -> None:
        if less(a[i], a[j]):
            pick = j if less(a[j], a[k]) else (k if less(a[i], a[k]) else i)
        else:
            pick = i if less(a[i], a[k]) else (k if less(a[j], a[k]) else j)
        a[result], a[pick] = a[pick], a[result]

    def partition(first: int, last: int, pivot: int) -> int:
        while True:
            while less(a[first], a[pivot]):
                first += 1
            last -= 1
            while less(a[pivot], a[last]):
                last -= 1
            if first >= last:
                return first
            a[first], a[last] = a[last], a[first]
            first += 1

    def introsort_loop(first: int, last: int, depth: int) -> None:
        while last - first > 16:
            if depth == 0:
                heap_sort(first, last)
                return
            depth -= 1
            mid = first + (last - first) // 2
            move_median_to_first(first, first + 1, mid, last - 1)
            cut = partition(first + 1, last, first)
            introsort_loop(cut, last, depth)
            last = cut

    def linear_insert(i: int, guarded_from: int | None) -> None:
        value = a[i]
        if guarded_from is not None and less(value, a[guarded_from]):
            a[guarded_from + 1 : i + 1] = a[guarded_from:i]
            a[guarded_from] = value
            return
        while less(value, a[i - 1]):
            a[i] = a[i - 1]
            i -= 1
        a[i] = value

    n = len(a)
    if n > 1:
        introsort_loop(0, n, 2 * (n.bit_length() - 1) if depth_limit is None else depth_limit)
        for i in range(1, n):  # __final_insertion_sort: guarded for the first 16, then not
            linear_insert(i, 0 if i < 16 else None)
    return a


def rank_rects(rects: np.ndarray) -> np.ndarray:
    """dt_box.cpp:153-164: ``std::sort`` by ``w * h``, largest first (ties: see the port)."""
    rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    areas = [int(w) * int(h) for w, h in rects[:, 2:]]
    order = _libstdcxx_sort(list(range(len(rects))), lambda i, j: areas[i] > areas[j])
    return rects[np.array(order, dtype=np.int64)].reshape(-1, 4)


def big_overlap(a: Sequence[int], b: Sequence[int]) -> bool:
    """dt_box.cpp:108-125: do rects ``x, y, w, h`` overlap by more than half the larger area?

    ``t = (int)(max(area_a, area_b) * 0.5)`` truncates, and the test is ``overlap > t``; the
    overlap treats ``x + w`` as the (exclusive) right end and counts nothing when negative.
    """
    ax, ay, aw, ah = (int(v) for v in a)
    bx, by, bw, bh = (int(v) for v in b)
    half = int(max(aw * ah, bw * bh) * 0.5)
    x_overlap = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    y_overlap = max(0, min(ay + ah, by + bh) - max(ay, by))
    return x_overlap * y_overlap > half


def merge_rects(rects: np.ndarray) -> np.ndarray:
    """dt_box.cpp:136-151, including its skip: the released loop is::

        for (i = 0; i < n; ++i)
            for (j = i + 1; j < n; ++j)
                if (big_overlap(b[i], b[j])) b.erase(b.begin() + j);

    After an ``erase`` at ``j`` the next rectangle moves into slot ``j`` and ``++j`` steps over
    it: it is never compared with ``b[i]`` (it may still be dropped later by another one).
    """
    kept = [tuple(int(v) for v in r) for r in np.asarray(rects).reshape(-1, 4)]
    i = 0
    while i < len(kept):
        j = i + 1
        while j < len(kept):
            if big_overlap(kept[i], kept[j]):
                del kept[j]
            j += 1  # also after a deletion: the quirk
        i += 1
    return np.array(kept, dtype=np.int64).reshape(-1, 4)


# --------------------------------------------------------------------------------------------
# The whole program
# --------------------------------------------------------------------------------------------


def _check(heatmap: np.ndarray, thresholds: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2 or heatmap.dtype != np.uint8:
        raise ValueError(f"expected a uint8 grey map [H, W], got {heatmap.dtype} {heatmap.shape}")
    levels = tuple(int(t) for t in thresholds)
    # dt_box.cpp:230 accepts exactly this and silently falls back to 30 90 150 otherwise.
    if len(levels) != 3 or not 0 < levels[0] < levels[1] < levels[2] < 255:
        raise ValueError(f"thresholds must be 3 integers with 0 < t0 < t1 < t2 < 255: {levels}")
    return heatmap, levels


def released_rects(
    heatmap: np.ndarray, thresholds: Sequence[int] = RELEASED_THRESHOLDS
) -> np.ndarray:
    """What ``dt_box heatmap t0 t1 t2`` prints, as ``int64 [n, 4]`` rows ``x, y, w, h``."""
    heatmap, levels = _check(heatmap, thresholds)
    height, width = heatmap.shape
    rects = [contour_rects(inner_mask(heatmap, t)) for t in levels]  # dt_box.cpp:239-240, 79-96
    ranked = rank_rects(clip_rects(np.concatenate(rects), width, height))  # dt_box.cpp:241
    return merge_rects(ranked)  # dt_box.cpp:242


def zhou2016_boxes(
    heatmap: np.ndarray, thresholds: Sequence[int] = RELEASED_THRESHOLDS
) -> np.ndarray:
    """The released CAM boxes of a ``uint8 [H, W]`` heatmap: ``int64 [n, 4]``, best first.

    Boxes are inclusive ``[xmin, ymin, xmax, ymax]`` in the released program's order (its
    first box is the one ILSVRC_evaluate_bbox.m scores as "bbox1"): ``x y w h`` becomes
    ``[x, y, x + w - 1, y + h - 1]``. The rare zero/negative sizes the clip can produce
    (`clip_rects`) have their corners swapped first, as the released MATLAB did, so a
    negative width spans ``x + w .. x - 1`` and a zero width gives ``xmax = xmin - 1`` (an
    empty box, area 0 under the inclusive convention).

    The released evaluation scored ``[x, y, x + w, y + h]`` as inclusive corners
    (ILSVRC_evaluate_bbox.m:97-98, as in the devkit's ``+ 1`` areas): one pixel wider and taller
    than the box returned here. This module reproduces the program, not that off-by-one.
    """
    x, y, w, h = released_rects(heatmap, thresholds).T
    x0, x1 = np.minimum(x, x + w), np.maximum(x, x + w)
    y0, y1 = np.minimum(y, y + h), np.maximum(y, y + h)
    return np.stack([x0, y0, x1 - 1, y1 - 1], axis=1).astype(np.int64).reshape(-1, 4)
