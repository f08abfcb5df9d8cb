"""How batches are scheduled: image files -> decoded batches -> `BatchComputation` (what one
batch computes, `inference.computation`: forward, maps, boxes, results) -> results in order.

The forward pass is the only real cost, and how it is kept busy depends on the device
(measured with scripts/benchmarks/bench_bbox.py):
- CPU: images are decoded in a thread beside the network; each batch is cut into one slice per
  core ("lanes"), and each lane runs its slice end to end (preprocess, single-threaded forward,
  CAMs, boxes). Single-threaded forwards spend no time in per-operator thread barriers, and the
  next batch is queued before the current one is collected, so no core waits for another.
- CUDA: DataLoader worker processes read (and PIL-decode) into pinned memory; device JPEG
  decoding runs in a thread and on a stream of its own (`threads.decoded_beside`). The main
  thread only queues work: the forward, the CAMs and, for a box backend without host syncs
  (triton), the boxes and one copy of everything the host needs into pinned memory; the box
  thread waits for that copy (one host wait per batch) and makes the results. A box backend with
  host syncs inside (torch) runs in the box thread on a stream of its own, so its syncs wait
  for its own batch, never for the next forward (`runtime.streams`).
Results stream out in input order; nothing per image is kept once it is yielded.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from functools import cached_property, partial
from typing import Any, cast

import numpy as np
import torch

from cam_cli.data.batches import ImageBatch, ImageListDataset, collate_images
from cam_cli.data.decode import JpegRoutingDataset, decode_batches, resolve_decode
from cam_cli.files.checks import bounded_workers
from cam_cli.inference.analysis import Analysis
from cam_cli.inference.computation import (
    SYNCING_BACKENDS,
    BatchComputation,
    DeviceOutput,
    channels_last,
    in_input_order,
)
from cam_cli.inference.results import ImageResult
from cam_cli.inference.threads import decoded_beside, prefetched, single_threaded_pool
from cam_cli.models.loading import LoadedModel
from cam_cli.runtime.group import Group, cpus_per_process
from cam_cli.runtime.memory import batch_for_memory, out_of_memory
from cam_cli.runtime.streams import Stream, hand_over, running_on
from cam_cli.settings import CamOptions, RunOptions

logger = logging.getLogger(__name__)


def default_workers(device: torch.device, cpus: int | None = None) -> int:
    """DataLoader processes: none on a CPU of up to 8 cores, where they would take cores from
    the forward; a decode thread is used instead.

    Measured with scripts/benchmarks/bench_bbox.py on 2 cores: decoding in a thread beside the
    forward (about 1 ms per image, a tenth of a single-threaded GoogLeNet bf16 forward) beats worker
    processes, which cost CPU time to start and to pass batches. One thread keeps up with about
    8 cores; beyond that, and with a GPU (which leaves the cores free), processes decode.
    """
    cpus = cpus or os.cpu_count() or 1
    if device.type == "cpu":
        return 0 if cpus <= 8 else min(8, cpus // 8)
    return max(1, min(8, cpus - 1))


class Localizer(BatchComputation):
    """A `BatchComputation` run over image files (`localize`): CPU lanes, a box thread, CUDA
    streams, a group of processes, a compiled network, batches bounded by memory."""

    def __init__(
        self,
        loaded: LoadedModel,
        cam: CamOptions | None = None,
        run: RunOptions | None = None,
        *,
        group: Group | None = None,
        copy_model: bool = True,
        **given: Any,
    ) -> None:
        """What a batch computes: `BatchComputation` (the options, ``copy_model`` and
        ``given`` are its). ``group``: the command's group of processes
        (`runtime.group.open_group`); in a group of several, each localizes its share and
        rank 0 yields every result."""
        super().__init__(loaded, cam, run, copy_model=copy_model, **given)
        self.group = group
        # Whether device JPEG decoding runs in a thread and on a stream of its own
        # (`threads.decoded_beside`): on CUDA; on the CPU it decodes in this thread, as it
        # always has.
        self.decode_thread = self.device.type == "cuda"
        # Lanes are for the CPU; elsewhere one forward at a time.
        wanted = torch.get_num_threads() if self.run.lanes is None else self.run.lanes
        self.lanes = max(1, wanted) if self.device.type == "cpu" else 1
        self._lanes_pool: ThreadPoolExecutor | None = None

    @cached_property
    def decode(self) -> str:
        """Where this run decodes JPEGs: "pil" or "device" (`data.decode.resolve_decode`;
        asked once, at first use)."""
        return resolve_decode(self.run.decode, self.device)

    def compile(self, batch_size: int | None = None) -> float:
        """torch.compile the network and run it once (for batches of ``batch_size``, default
        the run's); returns the seconds that took.

        A one-time cost (tens of seconds on a CPU) repaid on long runs where it speeds the
        forward up. Every slice of a batch is then padded to the size compiled for, so short
        last batches and batches with failed images never compile again. On failure (e.g. no
        C++ compiler) the Localizer stays uncompiled and the error is raised.
        """
        batch_size = self.run.batch_size if batch_size is None else batch_size
        batch_size = self.batch_for_memory(batch_size)
        slice_size = -(-batch_size // self.lanes)
        start = time.perf_counter()
        self.network_fn = torch.compile(self.model, dynamic=False)
        self.compiled_slice = slice_size
        # On a CPU-only machine inductor warns that it found no CUDA runtime: noise there.
        cpp_extension_log = logging.getLogger("torch.utils.cpp_extension")
        level = cpp_extension_log.level
        if self.device.type == "cpu":
            cpp_extension_log.setLevel(logging.ERROR)
        try:
            with torch.inference_mode():  # as in forward_batch, or the first batch recompiles
                size = (batch_size, 3, self.input_size, self.input_size)
                pixels = torch.zeros(size, dtype=torch.uint8, device=self.device)
                x = channels_last(self.preprocessing.apply(pixels))
                pool = self._lane_pool()
                if pool is None:
                    self.network(x)
                else:  # one lane first: lanes compiling at once would compile twice
                    pool.submit(self.network, x[:slice_size]).result()
                    list(pool.map(self.network, x.split(slice_size)))
        except Exception:
            self.network_fn, self.compiled_slice = self.model, None
            raise
        finally:
            cpp_extension_log.setLevel(level)
        return time.perf_counter() - start

    def close(self) -> None:
        """Stop the lane threads (they also stop with the process)."""
        if self._lanes_pool is not None:
            self._lanes_pool.shutdown()
            self._lanes_pool = None

    def _lane_pool(self) -> ThreadPoolExecutor | None:
        """CPU only: one single-threaded forward per core on a slice of the batch.

        On a few cores a 2-thread forward of a small-op network (GoogLeNet, MobileNetV2) spends
        much of its time in per-operator thread barriers; one slice per core, each run with one
        thread, has none and gives the same values (each image's arithmetic is unchanged).
        """
        if self.lanes < 2:
            return None
        if self._lanes_pool is None:
            self._lanes_pool = single_threaded_pool(self.lanes)
        return self._lanes_pool

    def _collect_beside(
        self, launched: DeviceOutput, ready: object, stream: Stream, analysis: Analysis
    ) -> list[ImageResult]:
        """In the box thread, on its own ``stream``: a box backend with host syncs inside, once
        the main stream's work on the batch (``ready``) is done; those syncs then wait for this
        batch alone, while the main thread queues the next."""
        with running_on(stream):
            hand_over(launched.crossing(), ready, stream)
            in_flight = launched.queue_to_host(analysis, stream)
        return self.boxes_and_results(in_flight, analysis)

    def _slice_results(
        self, batch: ImageBatch, extra: torch.Tensor | None, analysis: Analysis
    ) -> list[tuple[int, ImageResult]]:
        """Everything for one slice of a batch, in one lane: forward, CAMs, boxes, results."""
        return self._indexed_results(self.forward_batch(batch, extra, analysis), analysis)

    def _lane_slices(
        self, batch: ImageBatch, extra: torch.Tensor | None
    ) -> list[tuple[ImageBatch, torch.Tensor | None]]:
        """A batch cut into one slice per lane (the first also carries the failed images)."""
        count = len(batch.items)
        bounds = np.linspace(0, count, min(self.lanes, max(count, 1)) + 1).round().astype(int)
        slices = []
        for i, (start, stop) in enumerate(itertools.pairwise(bounds)):
            part = ImageBatch(
                batch.pixels[start:stop], batch.items[start:stop], batch.failed if i == 0 else []
            )
            slices.append((part, None if extra is None else extra[start:stop]))
        return slices

    def localize(
        self,
        paths: Sequence[str],
        analysis: Analysis | None = None,
        *,
        batch_size: int | None = None,
        workers: int | None = None,
        **wants: Any,
    ) -> Iterator[ImageResult]:
        """Results for every path, in input order (a failed image yields a result with `error`).

        ``analysis``: what is wanted of every image besides its top-k boxes (`Analysis`), or
        ``wants``, the fields of a plain one (``keep_cams``, ``extra_classes``, ``extra_cams``).
        ``batch_size`` and ``workers``: this call's, instead of the run's (`RunOptions`).

        How it runs is decided here, once: in a group of several processes (``group``),
        this one's share of ``paths``, rank 0 yielding every result (`runtime.group.Group`); on a
        CPU of several lanes, each lane runs a slice of every batch end to end; else one
        forward at a time, with the boxes made in a thread beside it.
        """
        analysis = analysis if analysis is not None else Analysis(**wants)
        run = self.run
        batch_size = run.batch_size if batch_size is None else batch_size
        workers = run.workers if workers is None else workers
        sharded = self.group is not None and self.group.sharded
        if workers is None:  # sharded: the machine's cores are shared by the processes on it
            workers = default_workers(self.device, cpus_per_process() if sharded else None)
        pool = self._lane_pool()

        def steps(batches: Iterable[ImageBatch]) -> Iterator[list[ImageResult]]:
            if pool is not None:
                return self._localize_in_lanes(pool, batches, analysis)
            return self._localize_with_box_thread(batches, analysis)

        def here(share: Sequence[str], progress: bool | None) -> Iterator[ImageResult]:
            return self._run(share, analysis, batch_size, workers, progress, steps)

        if sharded:
            assert self.group is not None  # sharded only within a group
            return self.group.localize(here, paths, batch_size, run.progress)
        return here(paths, run.progress)

    def _run(
        self,
        paths: Sequence[str],
        analysis: Analysis,
        batch_size: int,
        workers: int,
        progress: bool | None,
        steps: Callable[[Iterable[ImageBatch]], Iterator[list[ImageResult]]],
    ) -> Iterator[ImageResult]:
        """The images decoded into batches (DataLoader workers, or a thread beside the network;
        JPEGs on the device with `decode`), through ``steps``, a bar on stderr (``progress``:
        None shows it when stderr is a terminal)."""
        from torch.utils.data import DataLoader, Dataset
        from tqdm import tqdm

        # --- device JPEG decoding (data.decode): workers route, this process decodes
        on_device = self.decode == "device"
        dataset_type = JpegRoutingDataset if on_device else ImageListDataset
        dataset = dataset_type(list(paths), self.load_size)
        workers = bounded_workers(workers)
        extra = int(analysis.extra_classes is not None)
        batch_size = self.batch_for_memory(batch_size, extra=extra)
        # the datasets are map-style (``__len__``, ``__getitem__``) without torch's base class
        loader: DataLoader[Any] = DataLoader(
            cast("Dataset[Any]", dataset),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=collate_images,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
        )
        bar = tqdm(
            total=len(dataset),
            unit="img",
            disable=None if progress is None else not progress,
            file=sys.stderr,
            leave=False,
        )
        batches: Iterable[ImageBatch] = loader if workers > 0 else prefetched(loader, depth=2)
        if on_device:
            size, max_pixels = self.load_size, dataset.max_pixels
            if self.decode_thread:  # its own thread and stream: see data.decode
                decode = partial(
                    decode_batches, device=self.device, size=size, max_pixels=max_pixels
                )
                batches = decoded_beside(batches, decode, self.device, streams=self.streams)
            else:
                batches = decode_batches(batches, self.device, size, max_pixels)
        # --- end of device JPEG decoding
        with out_of_memory(self.input_size, batch_size):
            for finished in steps(batches):
                bar.update(len(finished))
                yield from finished
        bar.close()

    def batch_for_memory(self, batch_size: int, extra: int = 0) -> int:
        """``batch_size``, or fewer images where that many would not fit in memory at this
        input size (`runtime.memory`); ``extra``: CAMs asked per image besides the top-k."""
        maps = len(self.fixed_classes) if self.fixed_classes else self.topk
        crops = 10 if self.ten_crop else 1
        return batch_for_memory(batch_size, self.input_size, maps + extra, self.device, crops)

    def _localize_in_lanes(
        self, pool: Executor, batches: Iterable[ImageBatch], analysis: Analysis
    ) -> Iterator[list[ImageResult]]:
        """CPU: each lane runs a slice end to end; the next batch is queued before this one is
        collected, so a lane that finishes early starts on it instead of waiting."""
        pending: deque[list[Future]] = deque()
        for batch in batches:
            extra = _extra_tensor(batch, analysis.extra_classes)
            pending.append(
                [
                    pool.submit(self._slice_results, part, part_extra, analysis)
                    for part, part_extra in self._lane_slices(batch, extra)
                ]
            )
            if len(pending) > 1:
                yield in_input_order(_gather(pending.popleft()))
        while pending:
            yield in_input_order(_gather(pending.popleft()))

    def _localize_with_box_thread(
        self, batches: Iterable[ImageBatch], analysis: Analysis
    ) -> Iterator[list[ImageResult]]:
        """One forward at a time (all threads, or the GPU); batch i is collected (copied to the
        host, boxed) in a thread while batch i+1 is launched, so the main thread never waits
        for the device: a box backend without host syncs is queued here behind the forward, with
        the batch's one copy to the host; one with syncs runs in the box thread on its own
        stream (`_collect_beside`)."""
        pending: deque[Future] = deque()
        syncing = self.box_backend in SYNCING_BACKENDS
        box_stream = self.streams.side(self.device) if syncing else None
        with ThreadPoolExecutor(1, thread_name_prefix="cam-cli-box") as box_thread:
            for batch in batches:
                launched = self.launch_batch(batch, _extra_tensor(batch, analysis.extra_classes))
                here = self.streams.current(self.device)
                if syncing:
                    assert box_stream is not None  # made above for a syncing backend
                    ready = here.record_event()
                    job = box_thread.submit(
                        self._collect_beside, launched, ready, box_stream, analysis
                    )
                else:
                    in_flight = launched.queue_to_host(analysis, here)
                    job = box_thread.submit(self.boxes_and_results, in_flight, analysis)
                pending.append(job)
                while len(pending) > 1 or (pending and pending[0].done()):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def _extra_tensor(
    batch: ImageBatch, extra_classes: Callable[[str], Sequence[int]] | None
) -> torch.Tensor | None:
    if extra_classes is None or not batch.items:
        return None
    return torch.tensor([list(extra_classes(s.path)) for s in batch.items])


def _gather(futures: list[Future]) -> list[tuple[int, ImageResult]]:
    return [pair for future in futures for pair in future.result()]


def compile_or_warn(localizer: Localizer, batch_size: int | None = None) -> bool:
    """`compile_model` as the commands run it: say what it cost, or why it failed and go on eager.

    Eager gives the same results, so a compiler or backend failure never stops a run.
    """
    logger.info("compiling the model (a one-time cost)...")
    try:
        seconds = localizer.compile(batch_size)
    except Exception as error:  # noqa: BLE001 - any compile failure: run uncompiled
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        logger.warning("`compile_model` failed (%s); running uncompiled", reason)
        return False
    logger.info("compiled in %.1f s", seconds)
    return True
