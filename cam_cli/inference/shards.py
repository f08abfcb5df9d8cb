"""Localization over the processes torchrun starts: one output, in input order, from rank 0.

``torchrun --nproc_per_node=N -m cam_cli bbox|cam|eval ...``: each job holds one process group
for its whole run (`processes`, through `RunOptions.processes`), and `RunOptions.localize` runs
`localize_shards`:
- rank r runs the pipeline, ``finish`` hooks included, on ``paths[r::N]`` on its own device
  (cuda:LOCAL_RANK, or the CPU);
- step by step, one batch of each rank goes to rank 0 (`gather_object`: the results are pickled,
  ``analysis`` and all), which yields them in input order, so its memory holds one step;
- rank 0 alone reads what one process only may read (stdin, a --per-image file it trims) and
  tells the others (`from_rank_zero`); it alone writes. The other ranks yield nothing.
Objects travel over gloo, on CUDA too (a gloo group beside nccl): they are CPU data. In one
process nothing here does anything, and no process group is made.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import torch.distributed as dist

from cam_cli.errors import SetupError
from cam_cli.inference.results import ImageResult
from cam_cli.runtime.distributed import launched_processes, setup_distributed

T = TypeVar("T")
R = TypeVar("R")


class _State:
    objects_group: Any = None  # the gloo group beside nccl (None: the default group is gloo)
    started = False  # this rank began the pipeline's steps: an error since is its own
    told: BaseException | None = None  # the last error `from_rank_zero` raised on every rank


_state = _State()


def active() -> bool:
    """Several processes in an initialised group: `RunOptions.localize` shards."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_rank_zero() -> bool:
    """The process that writes the outputs: a single process, or rank 0 of a group."""
    return not active() or dist.get_rank() == 0


@contextmanager
def processes(run: R) -> Iterator[R]:
    """The processes of one job (`write_boxes`, `write_cams`, `evaluate`): a process group when
    torchrun started several, and ``run`` (a `RunOptions`) with this process's device
    (cuda:LOCAL_RANK, or the CPU). In one process: ``run`` as it is, and nothing else.

    At the end every rank meets the others at a barrier before the group is torn down (a rank
    that tears gloo down alone can abort at exit). They meet after a usage error too: one found
    before the pipeline by every rank alike (options, model, annotations), or one rank 0 told
    them (`from_rank_zero`). Any other error is one rank's own: that rank does not wait, and
    torchrun stops the others. A group that is already there is used and left as it is.
    """
    if launched_processes() <= 1 and not dist.is_initialized():
        yield run
        return
    ddp, device = setup_distributed(run.device)
    run = replace(run, device=str(device))
    if not ddp.owns_group:
        yield run
        return
    _state.started, _state.told = False, None
    meet = False
    try:
        yield run
        meet = True
    except SetupError as error:
        meet = not _state.started or error is _state.told
        raise
    except BaseException as error:
        meet = error is _state.told
        raise
    finally:
        try:
            if meet:
                dist.barrier()
        finally:
            _state.objects_group, _state.started, _state.told = None, False, None
            dist.destroy_process_group()


def cpus_per_process() -> int:
    """This machine's cores, shared among the processes torchrun started on it."""
    return max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _objects_group() -> Any:
    """Where Python objects travel: the default group under gloo; beside nccl, a gloo group
    made at first use (every rank reaches the same first use), so no copies go through GPUs."""
    if dist.get_backend() == "gloo":
        return None
    if _state.objects_group is None:
        _state.objects_group = dist.new_group(backend="gloo")
    return _state.objects_group


def from_rank_zero(compute: Callable[[], T]) -> T:
    """``compute()`` run by rank 0 alone; its value on every rank, or its `SetupError` or
    `OSError` (the usage errors a command reports) raised on every rank. In one process:
    ``compute()``. For what one process only may do (read stdin, read and trim a file) and for
    rank 0's outcome (the summary, the report), which every rank then returns."""
    if not active():
        return compute()
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = (compute(), None)
        except (SetupError, OSError) as error:
            box[0] = (None, error)
    own = box[0]
    dist.broadcast_object_list(box, src=0, group=_objects_group())
    value, error = own if own is not None else box[0]  # rank 0 keeps its own objects
    if error is not None:
        _state.told = error
        raise error
    return value


def shared(value: T) -> T:
    """Rank 0's ``value`` on every rank (in one process, ``value``)."""
    return from_rank_zero(lambda: value)


def localize_shards(
    localize: Callable[..., Iterator[ImageResult]],
    paths: Sequence[str],
    *,
    batch_size: int,
    progress: bool | None = None,
    **kwargs: Any,
) -> Iterator[ImageResult]:
    """``localize`` (a `Localizer.localize`) over this rank's share of ``paths``,
    ``paths[rank::world]``; on rank 0, the results of every rank in input order, elsewhere none.

    Step s sends rank 0 each rank's results s*B to (s+1)*B - 1 (B = ``batch_size``: one batch of
    its pipeline, which meanwhile runs on with the next one). Interleaved, they are the images
    s*B*world to (s+1)*B*world - 1 of ``paths``, in order. Every rank takes the same number of
    steps; a rank with fewer images sends empty ones. ``progress``: rank 0's bar, over all.
    """
    from tqdm import tqdm

    paths = list(paths)
    group = _objects_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    share = -(-len(paths) // world)  # rank 0's, the largest: ceil(n / world)
    steps = -(-share // batch_size)
    mine = localize(paths[rank::world], batch_size=batch_size, progress=False, **kwargs)
    _state.started = True
    if rank != 0:
        progress = False
    bar = tqdm(total=len(paths), unit="img", disable=None if progress is None else not progress,
               file=sys.stderr, leave=False)  # fmt: skip
    for _ in range(steps):
        step = list(itertools.islice(mine, batch_size))
        parts: list[Any] | None = [None] * world if rank == 0 else None
        dist.gather_object(step, parts, dst=0, group=group)
        if parts is not None:
            merged = [part[i] for i in range(batch_size) for part in parts if i < len(part)]
            bar.update(len(merged))
            yield from merged
    for _ in mine:  # lets this rank's pipeline end (its threads, its loader); it yields no more
        pass
    bar.close()
