"""One process, or the processes torchrun starts: the one owner of the process group, for
training (`training.trainer`) and for inference over a group (`runtime.group`).

torchrun describes the group in RANK / WORLD_SIZE / LOCAL_RANK; nccl joins CUDA processes, gloo
CPU ones, and each CUDA process uses the GPU cuda:LOCAL_RANK. Only rank 0 writes files and logs;
`is_main_process` answers that anywhere. torch is imported only to make a group, so the command
line can ask `is_main_process` before torch is loaded.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def is_main_process() -> bool:
    """Rank 0 of a torchrun group, or a single process: the one that writes and speaks."""
    dist = sys.modules.get("torch.distributed")  # no group can exist before torch is loaded
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def launched_processes() -> int:
    """How many processes torchrun started (WORLD_SIZE); 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def in_group() -> bool:
    """torchrun started several processes, or a process group is already there."""
    import torch.distributed as dist

    return launched_processes() > 1 or dist.is_initialized()


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we initialised the process group, so we destroy it

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def process_device(device: str) -> torch.device:
    """This process's device for ``device``: itself in one process; in a group, cuda:LOCAL_RANK
    for a CUDA device, else the CPU. Raises `SetupError` for a ``device`` that is not here."""
    import torch

    from cam_cli.runtime.device import resolve_device

    chosen = resolve_device(device)
    if not in_group():
        return chosen
    if chosen.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def setup_distributed(device: str) -> tuple[Dist, torch.device]:
    """Single process, or the process group torchrun describes in RANK/WORLD_SIZE/LOCAL_RANK
    (nccl on CUDA, gloo on CPU), and this process's device (`process_device`). An already
    initialised group is used as it is. Raises `SetupError` for a ``device`` that is not here."""
    import torch
    import torch.distributed as dist

    torch_device = process_device(device)
    if not in_group():
        return Dist(), torch_device
    wants_cuda = torch_device.type == "cuda"
    if wants_cuda:
        torch.cuda.set_device(torch_device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if wants_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, owns), torch_device


def release_group(ddp: Dist) -> None:
    """The end of what `setup_distributed` began: the group torn down, when it made it."""
    import torch.distributed as dist

    if ddp.owns_group and dist.is_initialized():
        dist.destroy_process_group()
