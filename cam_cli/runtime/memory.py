"""How many images one forward pass may take: bounded by memory, not only by `batch_size`.

A network's activations grow with the square of its input size: a batch of 32 that takes a
few hundred MB at 224 px needs tens of GB at 4096 px. `batch_for_memory` shrinks the batch to
what half of the free memory holds (results are the same, per image), and `out_of_memory` turns
an allocation that still fails into one line, never an allocator's traceback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from cam_cli.errors import SetupError

logger = logging.getLogger(__name__)

# Peak activation bytes per input pixel and image, above the measured peaks of an fp32
# channels_last forward (448 px, batch 2, one thread): GoogLeNet 140, MobileNetV2 270,
# ResNet-50 337. An overestimate only makes huge inputs run in smaller batches.
ACTIVATION_BYTES_PER_PIXEL = 512
SHARE_OF_FREE_MEMORY = 0.5  # the rest is left to the decoders, the host copies, other programs


def per_image_bytes(input_size: int, maps: int, crops: int = 1) -> int:
    """One image's estimated peak: the network's activations and input (uint8 pixels, float
    input) for each crop, and its ``maps`` CAMs at the input size, on the device and the host."""
    pixels = input_size * input_size
    return crops * pixels * (ACTIVATION_BYTES_PER_PIXEL + 3 + 4) + 2 * 4 * maps * pixels


def _cgroup_free() -> int | None:
    """What a container's memory limit (cgroup v2) leaves, where there is one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
    except OSError:
        return None
    if not limit.isdigit() or not used.isdigit():
        return None  # "max": no limit
    return max(0, int(limit) - int(used))


def free_memory(device: torch.device) -> int | None:
    """Bytes free for tensors on ``device`` (the GPU's free memory; on the CPU, what the
    kernel calls available, within a container's limit); None when it cannot be told."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu":
        return None
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    limited = _cgroup_free()
    return free if limited is None else min(free, limited)


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


def batch_for_memory(
    batch_size: int, input_size: int, maps: int, device: torch.device, crops: int = 1
) -> int:
    """``batch_size``, or fewer images (at least one) where that many would not fit in
    `SHARE_OF_FREE_MEMORY` of the free memory at this input size; a note says so."""
    free = free_memory(device)
    if free is None:
        return batch_size
    need = per_image_bytes(input_size, maps, crops)
    fits = max(1, int(free * SHARE_OF_FREE_MEMORY) // need)
    if fits >= batch_size:
        return batch_size
    logger.info(
        "note: %d images per forward pass instead of %d at input size %d (about %s per "
        "image, %s free on %s)", fits, batch_size, input_size, _gb(need), _gb(free), device.type,
    )  # fmt: skip
    return fits


def _is_allocation_failure(error: BaseException) -> bool:
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text
    )


@contextmanager
def out_of_memory(input_size: int, batch: int) -> Iterator[None]:
    """An allocation that fails inside (the estimate was low, or others took the memory) as a
    `SetupError`: one line saying what to lower, instead of the allocator's traceback."""
    try:
        yield
    except (RuntimeError, MemoryError) as error:
        if not _is_allocation_failure(error):
            raise
        raise SetupError(
            f"out of memory at input size {input_size} with {batch} images per forward pass; "
            "give a smaller `batch_size` or `input_size`"
        ) from None
