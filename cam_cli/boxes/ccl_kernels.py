"""The Triton kernels of `boxes.components_triton` (which says what each does and why).

A module of their own, imported only when the triton box backend runs: importing it needs Triton,
and `triton.jit` reads ``TRITON_INTERPRET`` when these are defined (the CPU tests set it first).
"""

import triton
import triton.language as tl


@triton.jit
def find(labels, x, active):
    """Roots of ``x`` (where ``active``): follow parents until a label is its own."""
    parent = tl.load(labels + x, mask=active, other=0, volatile=True)
    moving = active & (parent != x)
    while tl.max(moving.to(tl.int32), axis=0) > 0:
        x = tl.where(moving, parent, x)
        parent = tl.load(labels + x, mask=moving, other=0, volatile=True)
        moving = moving & (parent != x)
    return x


@triton.jit
def union(labels, a, b, active):
    """Join the trees of ``a`` and ``b`` (where ``active``): the larger root is linked under
    the smaller with atomic_min; if another thread changed it first, try again from what
    was there (Playne and Hawick's union)."""
    todo = active
    while tl.max(todo.to(tl.int32), axis=0) > 0:
        a = find(labels, a, todo)
        b = find(labels, b, todo)
        high = tl.maximum(a, b)
        low = tl.minimum(a, b)
        linking = todo & (high != low)
        old = tl.atomic_min(labels + high, low, mask=linking)
        # done: the same root already, or linked; else `high` had been linked to `old`
        todo = linking & (old != high)
        a = tl.where(todo, old, a)
        b = tl.where(todo, low, b)


@triton.jit
def init(maps, cut, codes, labels, total, height, width, bh, bw, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    block = pid * BLOCK + tl.arange(0, BLOCK)
    inside = block < total
    per_map = bh * bw
    n = block // per_map
    by = (block % per_map) // bw
    bx = block % bw
    level = tl.load(cut + n, mask=inside, other=0.0)
    code = block_code(maps + n.to(tl.int64) * height * width, by, bx, inside, level, height, width)
    tl.store(codes + block, code.to(tl.uint8), mask=inside)
    tl.store(labels + block, tl.where(code != 0, block, -1), mask=inside)


@triton.jit
def merge(codes, labels, total, bh, bw, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    block = pid * BLOCK + tl.arange(0, BLOCK)
    inside = block < total
    per_map = bh * bw
    by = (block % per_map) // bw
    bx = block % bw
    code = tl.load(codes + block, mask=inside, other=0).to(tl.int32)
    here = inside & (code != 0)
    # the neighbours' codes, 0 where there is none
    left = tl.load(codes + block - 1, mask=here & (bx > 0), other=0).to(tl.int32)
    up = tl.load(codes + block - bw, mask=here & (by > 0), other=0).to(tl.int32)
    up_left = tl.load(codes + block - bw - 1, mask=here & (by > 0) & (bx > 0), other=0)
    edge = here & (by > 0) & (bx < bw - 1)
    up_right = tl.load(codes + block - bw + 1, mask=edge, other=0).to(tl.int32)
    join_neighbours(labels, block, bw, here, code, left, up, up_left.to(tl.int32), up_right)


@triton.jit
def flatten(codes, labels, area, first, total, width, bh, bw, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    block = pid * BLOCK + tl.arange(0, BLOCK)
    inside = block < total
    per_map = bh * bw
    by = (block % per_map) // bw
    bx = block % bw
    code = tl.load(codes + block, mask=inside, other=0).to(tl.int32)
    here = inside & (code != 0)
    root = find(labels, block, here)
    tl.store(labels + block, root, mask=here)
    count = (code & 1) + ((code >> 1) & 1) + ((code >> 2) & 1) + ((code >> 3) & 1)
    tl.atomic_add(area + root, count, mask=here)
    top = (code & 3) != 0
    row = by * 2 + tl.where(top, 0, 1)
    column = bx * 2 + tl.where(top, tl.where((code & 1) != 0, 0, 1),
                               tl.where((code & 4) != 0, 0, 1))  # fmt: skip
    tl.atomic_min(first + root, row * width + column, mask=here)


@triton.jit
def winner(labels, area, first, best, total, pixels, bh, bw, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    block = pid * BLOCK + tl.arange(0, BLOCK)
    inside = block < total
    n = block // (bh * bw)
    label = tl.load(labels + block, mask=inside, other=-1)
    is_root = inside & (label == block)
    size = tl.load(area + block, mask=is_root, other=0).to(tl.int64)
    start = tl.load(first + block, mask=is_root, other=0).to(tl.int64)
    key = size * (pixels + 1) + (pixels - start)  # larger first, then earlier
    tl.atomic_max(best + n, key, mask=is_root)


@triton.jit
def extent(codes, labels, first, best, box, total, width, pixels, bh, bw,
           BLOCK: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    block = pid * BLOCK + tl.arange(0, BLOCK)
    inside = block < total
    per_map = bh * bw
    n = block // per_map
    by = (block % per_map) // bw
    bx = block % bw
    code = tl.load(codes + block, mask=inside, other=0).to(tl.int32)
    here = inside & (code != 0)
    root = tl.load(labels + block, mask=here, other=0)
    start = tl.load(first + root, mask=here, other=-1).to(tl.int64)
    key = tl.load(best + n, mask=here, other=0)
    member = here & (start == pixels - key % (pixels + 1))
    x0, y0, x1, y1 = block_extent(code, by, bx)
    tl.atomic_min(box + n * 4, x0, mask=member)
    tl.atomic_min(box + n * 4 + 1, y0, mask=member)
    tl.atomic_max(box + n * 4 + 2, x1, mask=member)
    tl.atomic_max(box + n * 4 + 3, y1, mask=member)


@triton.jit
def sweep(quantised, cuts, gt, valid, scratch, best, masks, thresholds, height, width, bh, bw,
          gts, programs, wsol: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """MaxBoxAccV2's sweep: for each mask (image i, threshold t) of this program's share, every
    8-connected component's box and the best IoU of any of them with the image's valid ground
    truth, into ``best[i, t]``. Each program labels its masks one at a time in its own scratch
    slice (labels and the four extents per block), so no array of every mask is ever made."""
    pid = tl.program_id(0)
    per_map = bh * bw
    own = scratch + pid.to(tl.int64) * 5 * per_map
    labels = own
    x_low = own + per_map
    y_low = own + 2 * per_map
    x_high = own + 3 * per_map
    y_high = own + 4 * per_map
    for m in range(pid, masks, programs):
        image = m // thresholds
        cut = tl.load(cuts + m).to(tl.int32)
        base = quantised + image.to(tl.int64) * height * width
        # 1: codes and labels of the blocks, each block's own extents
        for start in range(0, per_map, BLOCK):
            block = start + tl.arange(0, BLOCK)
            inside = block < per_map
            by = block // bw
            bx = block % bw
            code = block_code(base, by, bx, inside, cut, height, width)
            x0, y0, x1, y1 = block_extent(code, by, bx)
            tl.store(labels + block, tl.where(code != 0, block, -1), mask=inside)
            tl.store(x_low + block, x0, mask=inside)
            tl.store(y_low + block, y0, mask=inside)
            tl.store(x_high + block, x1, mask=inside)
            tl.store(y_high + block, y1, mask=inside)
        tl.debug_barrier()
        # 2: join touching blocks
        for start in range(0, per_map, BLOCK):
            block = start + tl.arange(0, BLOCK)
            inside = block < per_map
            by = block // bw
            bx = block % bw
            here = inside & (tl.load(labels + block, mask=inside, other=-1) >= 0)
            code = block_code(base, by, bx, here, cut, height, width)
            left = block_code(base, by, bx - 1, here, cut, height, width)
            up = block_code(base, by - 1, bx, here, cut, height, width)
            up_left = block_code(base, by - 1, bx - 1, here, cut, height, width)
            up_right = block_code(base, by - 1, bx + 1, here, cut, height, width)
            join_neighbours(labels, block, bw, here, code, left, up, up_left, up_right)
        tl.debug_barrier()
        # 3: every block widens its root's extents
        for start in range(0, per_map, BLOCK):
            block = start + tl.arange(0, BLOCK)
            inside = block < per_map
            here = inside & (tl.load(labels + block, mask=inside, other=-1) >= 0)
            root = find(labels, block, here)
            not_root = here & (root != block)
            tl.atomic_min(
                x_low + root, tl.load(x_low + block, mask=not_root, other=0), mask=not_root
            )
            tl.atomic_min(
                y_low + root, tl.load(y_low + block, mask=not_root, other=0), mask=not_root
            )
            tl.atomic_max(x_high + root, tl.load(x_high + block, mask=not_root, other=0),
                          mask=not_root)  # fmt: skip
            tl.atomic_max(y_high + root, tl.load(y_high + block, mask=not_root, other=0),
                          mask=not_root)  # fmt: skip
        tl.debug_barrier()
        # 4: the best IoU of the roots' boxes with the image's ground truth
        most = tl.zeros([BLOCK], dtype=tl.float64)
        for start in range(0, per_map, BLOCK):
            block = start + tl.arange(0, BLOCK)
            inside = block < per_map
            is_root = inside & (tl.load(labels + block, mask=inside, other=-1) == block)
            x0 = tl.load(x_low + block, mask=is_root, other=0, volatile=True)
            y0 = tl.load(y_low + block, mask=is_root, other=0, volatile=True)
            x1 = tl.load(x_high + block, mask=is_root, other=0, volatile=True)
            y1 = tl.load(y_high + block, mask=is_root, other=0, volatile=True)
            if wsol:
                x1 = tl.minimum(x1 + 1, width - 1)
                y1 = tl.minimum(y1 + 1, height - 1)
            for g in range(0, gts):
                at = gt + (image * gts + g) * 4
                gx0 = tl.load(at)
                gy0 = tl.load(at + 1)
                gx1 = tl.load(at + 2)
                gy1 = tl.load(at + 3)
                ok = tl.load(valid + image * gts + g) != 0
                inter_w = tl.maximum(tl.minimum(x1, gx1) - tl.maximum(x0, gx0) + 1, 0)
                inter_h = tl.maximum(tl.minimum(y1, gy1) - tl.maximum(y0, gy0) + 1, 0)
                intersection = (inter_w * inter_h).to(tl.float64)
                union_area = ((x1 - x0 + 1) * (y1 - y0 + 1) + (gx1 - gx0 + 1) * (gy1 - gy0 + 1)
                              ).to(tl.float64) - intersection  # fmt: skip
                iou = tl.where(
                    union_area > 0, intersection / tl.where(union_area > 0, union_area, 1.0), 0.0
                )
                most = tl.where(is_root & ok, tl.maximum(most, iou), most)
        tl.store(best + m, tl.max(most, axis=0))
        tl.debug_barrier()


@triton.jit
def block_code(base, by, bx, active, cut, height, width):
    """The 4-bit foreground code (``value > cut``) of the 2x2 blocks ``(by, bx)`` of one map at
    ``base``: bit 1 top-left, 2 top-right, 4 bottom-left, 8 bottom-right; 0 outside the map."""
    code = tl.zeros(by.shape, dtype=tl.int32)
    for k in tl.static_range(4):
        py = by * 2 + k // 2
        px = bx * 2 + k % 2
        there = active & (py >= 0) & (px >= 0) & (py < height) & (px < width)
        value = tl.load(base + py * width + px, mask=there, other=0)
        code = code | ((there & (value > cut)).to(tl.int32) << k)
    return code


@triton.jit
def block_extent(code, by, bx):
    """The pixel columns and rows ``(x0, y0, x1, y1)`` a block's foreground spans (code != 0)."""
    x0 = bx * 2 + tl.where((code & 5) != 0, 0, 1)
    y0 = by * 2 + tl.where((code & 3) != 0, 0, 1)
    x1 = bx * 2 + tl.where((code & 10) != 0, 1, 0)
    y1 = by * 2 + tl.where((code & 12) != 0, 1, 0)
    return x0, y0, x1, y1


@triton.jit
def join_neighbours(labels, block, bw, here, code, left, up, up_left, up_right):
    """Join each block (where ``here``) with its left, upper, upper-left and upper-right
    neighbours whose codes (0 for none) have a foreground pixel 8-adjacent to one of its own."""
    union(labels, block, block - 1, here & ((left & 10) != 0) & ((code & 5) != 0))
    union(labels, block, block - bw, here & ((up & 12) != 0) & ((code & 3) != 0))
    union(labels, block, block - bw - 1, here & ((up_left & 8) != 0) & ((code & 1) != 0))
    union(labels, block, block - bw + 1, here & ((up_right & 4) != 0) & ((code & 2) != 0))
