"""One process, or the processes torchrun starts: the whole distributed set-up of training.

torchrun describes the group in RANK / WORLD_SIZE / LOCAL_RANK; nccl joins CUDA processes, gloo
CPU ones. Only rank 0 writes files and logs; `is_main_process` answers that anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cam_cli.common.device import resolve_device
from cam_cli.errors import SetupError
from cam_cli.training.config import TrainError


def is_main_process() -> bool:
    """Rank 0 of a torchrun group, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


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


def setup_distributed(device: str) -> tuple[Dist, torch.device]:
    """Single process, or the process group torchrun describes in RANK/WORLD_SIZE/LOCAL_RANK
    (nccl on CUDA, gloo on CPU). An already initialised group is used as it is."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        chosen = resolve_device(device)
    except SetupError as error:
        raise TrainError(str(error)) from None
    wants_cuda = chosen.type == "cuda"
    if world <= 1 and not dist.is_initialized():
        return Dist(), chosen
    torch_device = torch.device("cuda", local_rank) if wants_cuda else torch.device("cpu")
    if wants_cuda:
        torch.cuda.set_device(torch_device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if wants_cuda else "gloo")
    info = Dist(dist.get_rank(), dist.get_world_size(), local_rank, owns)
    return info, torch_device
