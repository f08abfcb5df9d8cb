"""Which implementation turns CAMs into boxes (`box_backend`), and the one place that calls it.

Three give the same boxes (tested against each other on adversarial masks and the real sample):
- ``scipy``: `boxes.components`, on the host (the maps are copied there first);
- ``torch``: `boxes.components_torch`, plain batched PyTorch on the maps' device;
- ``triton``: `boxes.components_triton`, a union-find labelling kernel on a CUDA device, whose
  memory traffic is a small multiple of the maps' own size.

``auto`` takes scipy on the CPU (measured ~5x faster per map than the torch path on one core),
and on CUDA triton where it is importable and passes its one-time check on the device, else
torch. The choice is made once per run (`resolve_box_backend`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cam_cli.errors import ArgumentError, SetupError
from cam_cli.settings import BoxBackend, choices

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)
BOX_BACKENDS = choices(BoxBackend)
_warned: set[str] = set()


def triton_problem(device: torch.device) -> str | None:
    """None when the triton box backend runs on ``device`` here, else why not (one line)."""
    from cam_cli.boxes.components_triton import triton_problem as problem

    return problem(device)  # Triton itself is imported there, and its absence is a reason


def resolve_box_backend(step: str, device: torch.device) -> str:
    """`box_backend` -> "scipy", "torch" or "triton" for a run on ``device``.

    ``auto``: scipy on the CPU; triton on CUDA when it can run there (else torch, with a
    warning once); ``triton`` where it cannot run is a `SetupError` naming the reason."""
    if step not in BOX_BACKENDS:
        raise ArgumentError(
            "box_backend", f"must be one of {', '.join(BOX_BACKENDS)}, not {step!r}"
        )
    if step == "auto":
        if device.type == "cpu":
            return "scipy"
        problem = triton_problem(device)
        if problem is None:
            return "triton"
        if str(device) not in _warned:
            _warned.add(str(device))
            logger.info("box backend on %s: torch (triton: %s)", device, problem)
        return "torch"
    if step == "triton":
        problem = triton_problem(device)
        if problem is not None:
            raise SetupError(f"`box_backend` triton: cannot run on {device} ({problem})")
    return step


def device_boxes(step: str, cams: torch.Tensor, threshold: float) -> torch.Tensor:
    """The paper's box of each map ``[N, H, W]`` -> ``[N, 4]`` int64 on the maps' device, with
    the resolved ``step`` "torch" or "triton" (`resolve_box_backend`)."""
    if step == "triton":
        from cam_cli.boxes.components_triton import boxes_from_cams_triton

        return boxes_from_cams_triton(cams, threshold)
    from cam_cli.boxes.components_torch import boxes_from_cams_torch

    return boxes_from_cams_torch(cams, threshold)
