"""One process, or the processes torchrun starts: the one distributed set-up of training and of
sharded inference (`inference.shards`).

torchrun describes the group in RANK / WORLD_SIZE / LOCAL_RANK; nccl joins CUDA processes, gloo
CPU ones, and each CUDA process uses the GPU cuda:LOCAL_RANK. Only rank 0 writes files and logs;
`is_main_process` answers that anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cam_cli.runtime.device import resolve_device


def is_main_process() -> bool:
    """Rank 0 of a torchrun group, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def launched_processes() -> int:
    """How many processes torchrun started (WORLD_SIZE); 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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
    (nccl on CUDA, gloo on CPU). An already initialised group is used as it is. Raises
    `SetupError` for a ``device`` that is not here."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    wants_cuda = chosen.type == "cuda"
    if launched_processes() <= 1 and not dist.is_initialized():
        return Dist(), chosen
    torch_device = torch.device("cuda", local_rank) if wants_cuda else torch.device("cpu")
    if wants_cuda:
        torch.cuda.set_device(torch_device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if wants_cuda else "gloo")
    info = Dist(dist.get_rank(), dist.get_world_size(), local_rank, owns)
    return info, torch_device
