"""The group of processes torchrun starts: one output, in input order, from rank 0.

``torchrun --nproc_per_node=N -m cam_cli bbox|cam|eval ...``: each command holds one process
group for its whole run (`open_group`, which gives it its `Group`), and a `Localizer` made
with that `Group` runs `Group.localize`:
- rank r runs the pipeline, ``on_host`` analyses included, on ``paths[r::N]`` on its own device
  (cuda:LOCAL_RANK, or the CPU);
- step by step, one batch of each rank goes to rank 0 (`gather_object`: the results are pickled,
  ``analysis`` and all), which yields them in input order, so its memory holds one step;
- rank 0 alone reads what one process only may read (stdin, a `per_image` file it trims) and
  tells the others (`Group.from_rank_zero`); it alone writes. The other ranks yield nothing.
Objects travel over gloo, on CUDA too (a gloo group beside nccl): they are CPU data. In one
process nothing here does anything, and no process group is made.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch.distributed as dist

from cam_cli.errors import SetupError
from cam_cli.runtime.distributed import in_group, release_group, setup_distributed

T = TypeVar("T")


def active() -> bool:
    """Several processes in an initialised group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def cpus_per_process() -> int:
    """This machine's cores, shared among the processes torchrun started on it."""
    return max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


class Group:
    """The processes of one command (`write_boxes`, `write_cams`, `evaluate`), from `open_group`:
    what they share (`from_rank_zero`, `shared`) and how they split a localization
    (`localize`). In one process, a group of one where each call is the plain one."""

    def __init__(self) -> None:
        self._objects_group: Any = None  # the gloo group beside nccl (None: gloo is the default)
        self.started = False  # this rank began the pipeline's steps: an error since is its own
        self.told: BaseException | None = None  # the last error `from_rank_zero` raised on all

    @property
    def sharded(self) -> bool:
        """Several processes: a `Localizer` of this group runs its share of the images."""
        return active()

    def _objects(self) -> Any:
        """Where Python objects travel: the default group under gloo; beside nccl, a gloo group
        made at first use (every rank reaches the same first use), so no copies go through
        GPUs."""
        if dist.get_backend() == "gloo":
            return None
        if self._objects_group is None:
            self._objects_group = dist.new_group(backend="gloo")
        return self._objects_group

    def from_rank_zero(self, compute: Callable[[], T]) -> T:
        """``compute()`` run by rank 0 alone; its value on every rank, or its `SetupError` or
        `OSError` (the usage errors a command reports) raised on every rank. In one process:
        ``compute()``. For what one process only may do (read stdin, read and trim a file) and
        for rank 0's outcome (the summary, the report), which every rank then returns."""
        if not self.sharded:
            return compute()
        box: list[Any] = [None]
        if dist.get_rank() == 0:
            try:
                box[0] = (compute(), None)
            except (SetupError, OSError) as error:
                box[0] = (None, error)
        own = box[0]
        dist.broadcast_object_list(box, src=0, group=self._objects())
        value, failure = own if own is not None else box[0]  # rank 0 keeps its own objects
        if failure is not None:
            self.told = failure
            raise failure
        return value

    def shared(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (in one process, ``value``)."""
        return self.from_rank_zero(lambda: value)

    def localize(
        self,
        localize: Callable[[Sequence[str], bool | None], Iterator[T]],
        paths: Sequence[str],
        batch_size: int,
        progress: bool | None,
    ) -> Iterator[T]:
        """``localize(share, progress)`` (a Localizer's own run) over this rank's share of
        ``paths``, ``paths[rank::world]``; on rank 0, the results of every rank in input order,
        elsewhere none.

        Step s sends rank 0 each rank's results s*B to (s+1)*B - 1 (B = ``batch_size``: one
        batch of its pipeline, which meanwhile runs on with the next one). Interleaved, they are
        the images s*B*world to (s+1)*B*world - 1 of ``paths``, in order. Every rank takes the
        same number of steps; a rank with fewer images sends empty ones. ``progress``: rank 0's
        bar, over all.
        """
        from tqdm import tqdm

        paths = list(paths)
        objects = self._objects()
        rank, world = dist.get_rank(), dist.get_world_size()
        share = -(-len(paths) // world)  # rank 0's, the largest: ceil(n / world)
        steps = -(-share // batch_size)
        mine = localize(paths[rank::world], False)
        self.started = True
        if rank != 0:
            progress = False
        bar = tqdm(total=len(paths), unit="img", disable=None if progress is None else not progress,
                   file=sys.stderr, leave=False)  # fmt: skip
        for _ in range(steps):
            step = list(itertools.islice(mine, batch_size))
            parts: list[Any] | None = [None] * world if rank == 0 else None
            dist.gather_object(step, parts, dst=0, group=objects)
            if parts is not None:
                merged = [part[i] for i in range(batch_size) for part in parts if i < len(part)]
                bar.update(len(merged))
                yield from merged
        for _ in mine:  # lets this rank's pipeline end (its threads, its loader); it yields no more
            pass
        bar.close()


@contextmanager
def open_group(device: str) -> Iterator[Group]:
    """The processes of one command: a process group when torchrun started several (on this
    process's device for ``device``: cuda:LOCAL_RANK, or the CPU), and the command's `Group`.
    In one process: a group of one, and nothing else.

    At the end every rank meets the others at a barrier before the group is torn down (a rank
    that tears gloo down alone can abort at exit). They meet after a usage error too: one found
    before the pipeline by every rank alike (options, model, annotations), or one rank 0 told
    them (`Group.from_rank_zero`). Any other error is one rank's own: that rank does not
    wait, and torchrun stops the others. A group that is already there is used and left as it
    is.
    """
    group = Group()
    if not in_group():
        yield group
        return
    ddp, _ = setup_distributed(device)
    if not ddp.owns_group:
        yield group
        return
    meet = False
    try:
        yield group
        meet = True
    except SetupError as error:
        meet = not group.started or error is group.told
        raise
    except BaseException as error:
        meet = error is group.told
        raise
    finally:
        try:
            if meet:
                dist.barrier()
        finally:
            release_group(ddp)
