"""image files -> decoded batches -> (logits, features) -> top-k CAMs -> boxes -> results.

The forward pass is the only real cost, and how it is kept busy depends on the device
(measured with scripts/bench_bbox.py):
- CPU: images are decoded in a thread beside the network; each batch is cut into one slice per
  core ("lanes"), and each lane runs its slice end to end (preprocess, single-threaded forward,
  CAMs, boxes). Single-threaded forwards spend no time in per-operator thread barriers, and the
  next batch is queued before the current one is collected, so no core waits for another.
- CUDA: DataLoader worker processes decode into pinned memory; the boxes of batch i are
  computed in a thread while batch i+1 is in the network.
Results stream out in input order; nothing per image is kept once it is yielded.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from cam_cli.boxes import boxes_from_cams, scale_boxes
from cam_cli.cam import class_scores, compute_cams, top_classes, upsample_cams
from cam_cli.classes import ClassInfo
from cam_cli.images import ImageBatch, ImageListDataset, collate_images
from cam_cli.loading import LoadedModel
from cam_cli.speedups import fold_batch_norms, keep_freed_memory

T = TypeVar("T")
Finish = Callable[["ImageResult"], None]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    return torch.device(device)


@dataclass
class Prediction:
    rank: int
    class_index: int
    wnid: str | None
    name: str | None
    score: float
    box: list[int]

    def as_dict(self) -> dict:
        return {
            "rank": self.rank,
            "class_index": self.class_index,
            "wnid": self.wnid,
            "name": self.name,
            "score": round(self.score, 6),
            "box": self.box,
        }


@dataclass
class ImageResult:
    path: str
    width: int = 0
    height: int = 0
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None
    cams: np.ndarray | None = None  # [k, h, w] at feature resolution, when asked for
    # Extra classes asked per image (e.g. the true class for GT-known localization):
    extra: list[Prediction] = field(default_factory=list)
    extra_cams: np.ndarray | None = None  # [m, S, S] at network input resolution
    analysis: Any = None  # what `localize(finish=...)` computed for this image

    def as_record(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "predictions": [p.as_dict() for p in self.predictions],
        }


def fast_path_available(device: torch.device) -> bool:
    """Low precision pays off (and is the default) on CUDA and on CPUs with native bf16.

    Without native bf16 (no AVX512-BF16/AMX) CPU autocast emulates it and runs slower than fp32.
    """
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class FastPath:
    """Low-precision autocast (channels_last is used in every precision).

    bf16 on CPU and bf16 (or fp16 where bf16 is missing) on CUDA; CAMs and boxes are then
    computed in float32 from the low-precision features. On the real ILSVRC sample with
    MobileNetV2 the localization errors stay within 0.25 points of fp32 (README, "Speed").
    ``enabled=None`` means: on where `fast_path_available`.
    """

    def __init__(self, device: torch.device, enabled: bool | None) -> None:
        self.device = device
        self.enabled = fast_path_available(device) if enabled is None else enabled
        if device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.dtype = torch.bfloat16

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        # channels_last in every precision: same arithmetic, faster kernels.
        return model.to(memory_format=torch.channels_last)

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


@dataclass
class _ForwardOutput:
    """What the box thread needs from one batch, already on the CPU."""

    batch: ImageBatch
    class_indices: np.ndarray | None  # [B, k]
    scores: np.ndarray | None  # [B, k]
    upsampled: np.ndarray | None  # [B, k + m, S, S] float32
    feature_cams: np.ndarray | None  # [B, k, h, w]
    extra_indices: np.ndarray | None  # [B, m]
    extra_scores: np.ndarray | None


def default_workers(device: torch.device, cpus: int | None = None) -> int:
    """DataLoader processes: none on a CPU of up to 8 cores, where they would take cores from
    the forward; a decode thread is used instead.

    Measured with scripts/bench_bbox.py on 2 cores: decoding in a thread beside the forward
    (about 1 ms per image, a tenth of a single-threaded GoogLeNet bf16 forward) beats worker
    processes, which cost CPU time to start and to pass batches. One thread keeps up with about
    8 cores; beyond that, and with a GPU (which leaves the cores free), processes decode.
    """
    cpus = cpus or os.cpu_count() or 1
    if device.type == "cpu":
        return 0 if cpus <= 8 else min(8, cpus // 8)
    return max(1, min(8, cpus - 1))


def prefetched(items: Iterable[T], depth: int) -> Iterator[T]:
    """Iterate `items` in a background thread, at most `depth` ahead of the consumer.

    PIL decodes and resizes without the GIL, so decoding overlaps the forward pass. An
    exception in the thread is raised here, in order; closing the generator stops the thread.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((done, None))
        except BaseException as error:  # handed to the consumer, which re-raises it
            slots.put((done, error))

    thread = threading.Thread(target=produce, name="cam-cli-decode", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                slots.get(timeout=0.1)
        thread.join()


def _single_threaded_pool(size: int) -> ThreadPoolExecutor:
    """`size` threads whose torch ops run on one thread each; torch's setting elsewhere is kept.

    torch.set_num_threads also sets the process-wide default that threads take on their first
    parallel op, so every pool thread is made to take 1 (and start) before the default is put
    back for the rest of the program.
    """
    default = torch.get_num_threads()
    started = threading.Barrier(size + 1)

    def one_thread() -> None:
        torch.set_num_threads(1)
        torch.get_num_threads()  # fixes this thread's count now

    pool = ThreadPoolExecutor(size, thread_name_prefix="cam-cli-lane", initializer=one_thread)
    waiting = [pool.submit(started.wait) for _ in range(size)]
    started.wait()
    for future in waiting:
        future.result()
    torch.set_num_threads(default)
    return pool


class Localizer:
    """A loaded model plus the CAM/box settings; `localize` runs it over image files."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        topk: int = 5,
        threshold: float = 0.2,
        class_indices: Sequence[int] | None = None,
        device: str = "cpu",
        fast: bool | None = None,
        lanes: int | None = None,
    ) -> None:
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"--threshold must be in [0, 1), got {threshold}")
        if topk < 1:
            raise ValueError(f"--topk must be >= 1, got {topk}")
        self.loaded = loaded
        self.classes: list[ClassInfo] = loaded.classes
        self.topk = min(topk, len(loaded.classes))
        self.threshold = threshold
        self.fixed_classes = list(class_indices) if class_indices else None
        self.device = resolve_device(device)
        self.fast = FastPath(self.device, fast)
        if self.device.type == "cpu":
            keep_freed_memory()
        model = loaded.model.eval()
        fold_batch_norms(model)  # inference only: the loaded model is not trained further
        self.model = self.fast.prepare(model.to(self.device))
        self.input_size = loaded.input_size
        # Lanes are for the CPU; elsewhere one forward at a time.
        wanted = torch.get_num_threads() if lanes is None else lanes
        self.lanes = max(1, wanted) if self.device.type == "cpu" else 1
        self._lanes_pool: ThreadPoolExecutor | None = None
        self._network_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = self.model
        self._compiled_slice: int | None = None  # every slice is padded to this many images

    def compile(self, batch_size: int) -> float:
        """torch.compile the network and run it once; returns the seconds that took.

        A one-time cost (tens of seconds on a CPU) repaid on long runs where it speeds the
        forward up. Every slice of a batch is then padded to the size compiled for, so short
        last batches and batches with failed images never compile again. On failure (e.g. no
        C++ compiler) the Localizer stays uncompiled and the error is raised.
        """
        slice_size = -(-batch_size // self.lanes)
        start = time.perf_counter()
        self._network_fn = torch.compile(self.model, dynamic=False)
        self._compiled_slice = slice_size
        # On a CPU-only machine inductor warns that it found no CUDA runtime: noise there.
        cpp_extension_log = logging.getLogger("torch.utils.cpp_extension")
        level = cpp_extension_log.level
        if self.device.type == "cpu":
            cpp_extension_log.setLevel(logging.ERROR)
        try:
            with torch.inference_mode():  # as in forward_batch, or the first batch recompiles
                size = (batch_size, 3, self.input_size, self.input_size)
                pixels = torch.zeros(size, dtype=torch.uint8, device=self.device)
                x = self.fast.inputs(self.loaded.preprocessing.apply(pixels))
                pool = self._lane_pool()
                if pool is None:
                    self._network(x)
                else:  # one lane first: lanes compiling at once would compile twice
                    pool.submit(self._network, x[:slice_size]).result()
                    list(pool.map(self._network, x.split(slice_size)))
        except Exception:
            self._network_fn, self._compiled_slice = self.model, None
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
            self._lanes_pool = _single_threaded_pool(self.lanes)
        return self._lanes_pool

    def _network(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = len(x)
        with torch.inference_mode():  # per thread: the lanes need it too
            if self._compiled_slice is not None and count < self._compiled_slice:
                padding = x[:1].expand(self._compiled_slice - count, -1, -1, -1)
                x = self.fast.inputs(torch.cat([x, padding]))
            with self.fast.autocast():
                logits, features = self._network_fn(x)
            return logits[:count], features[:count].float()

    @torch.inference_mode()
    def forward_batch(
        self, batch: ImageBatch, extra_indices: torch.Tensor | None = None, keep_cams: bool = False
    ) -> _ForwardOutput:
        if not batch.items:  # every image of the batch failed: nothing to run, keep the order
            return _ForwardOutput(batch, *([None] * 6))
        pixels = batch.pixels.to(self.device, non_blocking=True)
        x = self.fast.inputs(self.loaded.preprocessing.apply(pixels))
        logits, features = self._network(x)
        if self.fixed_classes is not None:
            indices = torch.tensor(self.fixed_classes, device=self.device).expand(len(x), -1)
            scores = class_scores(logits, indices)
        else:
            scores, indices = top_classes(logits, self.topk)
        weight, _ = self.model.class_weights()
        weight = None if weight is None else weight.float()
        all_indices = indices
        extra_scores = None
        if extra_indices is not None:
            extra_indices = extra_indices.to(self.device)
            extra_scores = class_scores(logits, extra_indices)
            all_indices = torch.cat([indices, extra_indices], dim=1)
        cams = compute_cams(features, weight, all_indices)  # [B, k + m, h, w]
        upsampled = upsample_cams(cams, (self.input_size, self.input_size))
        k = indices.shape[1]
        return _ForwardOutput(
            batch=batch,
            class_indices=indices.cpu().numpy(),
            scores=scores.cpu().numpy(),
            upsampled=upsampled.cpu().numpy(),
            feature_cams=cams[:, :k].cpu().numpy() if keep_cams else None,
            extra_indices=None if extra_indices is None else extra_indices.cpu().numpy(),
            extra_scores=None if extra_scores is None else extra_scores.cpu().numpy(),
        )

    def _prediction(self, rank: int, index: int, score: float, box: np.ndarray) -> Prediction:
        info = self.classes[index]
        return Prediction(rank, int(index), info.wnid, info.name, float(score), box.tolist())

    def boxes_and_results(
        self, out: _ForwardOutput, keep_extra_cams: bool, finish: Finish | None = None
    ) -> list[ImageResult]:
        """The CPU half of a batch: threshold, label, box, scale to each image's own pixels."""
        return _in_input_order(self._indexed_results(out, keep_extra_cams, finish))

    def _indexed_results(
        self, out: _ForwardOutput, keep_extra_cams: bool, finish: Finish | None = None
    ) -> list[tuple[int, ImageResult]]:
        batch = out.batch
        results = [(s.index, ImageResult(s.path, error=s.error)) for s in batch.failed]
        if not batch.items:
            return results
        b, n, size, _ = out.upsampled.shape
        boxes = boxes_from_cams(out.upsampled.reshape(b * n, size, size), self.threshold)
        sizes = np.repeat([[s.width, s.height] for s in batch.items], n, axis=0)
        boxes = scale_boxes(boxes, (size, size), sizes).reshape(b, n, 4)
        k = out.class_indices.shape[1]
        for i, item in enumerate(batch.items):
            result = ImageResult(item.path, item.width, item.height)
            result.predictions = [
                self._prediction(r + 1, out.class_indices[i, r], out.scores[i, r], boxes[i, r])
                for r in range(k)
            ]
            if out.feature_cams is not None:
                result.cams = out.feature_cams[i]
            if out.extra_indices is not None:
                result.extra = [
                    self._prediction(0, index, out.extra_scores[i, j], boxes[i, k + j])
                    for j, index in enumerate(out.extra_indices[i])
                ]
                if keep_extra_cams:
                    result.extra_cams = out.upsampled[i, k:]
            if finish is not None:
                finish(result)
            results.append((item.index, result))
        return results

    def _slice_results(
        self,
        batch: ImageBatch,
        extra: torch.Tensor | None,
        keep_cams: bool,
        keep_extra_cams: bool,
        finish: Finish | None,
    ) -> list[tuple[int, ImageResult]]:
        """Everything for one slice of a batch, in one lane: forward, CAMs, boxes, results."""
        out = self.forward_batch(batch, extra, keep_cams)
        return self._indexed_results(out, keep_extra_cams, finish)

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
        *,
        batch_size: int = 32,
        workers: int | None = None,
        keep_cams: bool = False,
        extra_classes: Callable[[str], Sequence[int]] | None = None,
        keep_extra_cams: bool = False,
        progress: bool = False,
        max_pixels: int | None = None,
        finish: Finish | None = None,
    ) -> Iterator[ImageResult]:
        """Results for every path, in input order (a failed image yields a result with `error`).

        ``extra_classes(path)`` names classes whose CAM and box are wanted for that image in
        addition to the top-k (the same number for every image), e.g. its true class.
        ``workers=None`` picks `default_workers` for the device; 0 decodes in a thread.
        ``finish(result)`` is called for every good image where its boxes are made (a lane or
        the box thread), so heavy per-image work runs beside the network; it may set
        ``result.analysis`` and must be thread-safe.
        """
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        dataset = ImageListDataset(list(paths), self.input_size)
        if max_pixels is not None:
            dataset.max_pixels = max_pixels
        if workers is None:
            workers = default_workers(self.device)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=collate_images,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
        )
        bar = tqdm(
            total=len(dataset), unit="img", disable=not progress, file=sys.stderr, leave=False
        )
        batches = loader if workers > 0 else prefetched(loader, depth=2)
        pool = self._lane_pool()
        if pool is not None:
            results = self._localize_in_lanes(
                pool, batches, extra_classes, keep_cams, keep_extra_cams, finish
            )
        else:
            results = self._localize_with_box_thread(
                batches, extra_classes, keep_cams, keep_extra_cams, finish
            )
        for finished in results:
            bar.update(len(finished))
            yield from finished
        bar.close()

    def _localize_in_lanes(
        self, pool, batches, extra_classes, keep_cams: bool, keep_extra_cams: bool, finish
    ) -> Iterator[list[ImageResult]]:
        """CPU: each lane runs a slice end to end; the next batch is queued before this one is
        collected, so a lane that finishes early starts on it instead of waiting."""
        pending: deque[list[Future]] = deque()
        for batch in batches:
            extra = _extra_tensor(batch, extra_classes)
            pending.append(
                [
                    pool.submit(
                        self._slice_results, part, part_extra, keep_cams, keep_extra_cams, finish
                    )
                    for part, part_extra in self._lane_slices(batch, extra)
                ]
            )
            if len(pending) > 1:
                yield _in_input_order(_gather(pending.popleft()))
        while pending:
            yield _in_input_order(_gather(pending.popleft()))

    def _localize_with_box_thread(
        self, batches, extra_classes, keep_cams: bool, keep_extra_cams: bool, finish
    ) -> Iterator[list[ImageResult]]:
        """One forward at a time (all threads, or the GPU); the boxes of batch i are computed in
        a thread while batch i+1 is in the network."""
        pending: deque[Future] = deque()
        with ThreadPoolExecutor(max_workers=1) as box_thread:
            for batch in batches:
                out = self.forward_batch(batch, _extra_tensor(batch, extra_classes), keep_cams)
                pending.append(
                    box_thread.submit(self.boxes_and_results, out, keep_extra_cams, finish)
                )
                while len(pending) > 1 or (pending and pending[0].done()):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def _extra_tensor(batch: ImageBatch, extra_classes) -> torch.Tensor | None:
    if extra_classes is None or not batch.items:
        return None
    return torch.tensor([list(extra_classes(s.path)) for s in batch.items])


def _gather(futures: list[Future]) -> list[tuple[int, ImageResult]]:
    return [pair for future in futures for pair in future.result()]


def _in_input_order(indexed: list[tuple[int, ImageResult]]) -> list[ImageResult]:
    return [result for _, result in sorted(indexed, key=lambda pair: pair[0])]


def compile_with_notes(
    localizer: Localizer,
    batch_size: int,
    note: Callable[[str], None] | None,
    warn: Callable[[str], None],
) -> bool:
    """--compile as the commands run it: say what it cost, or why it failed and go on eager.

    Eager gives the same results, so a compiler or backend failure never stops a run.
    """
    if note is not None:
        note("compiling the model (a one-time cost)...")
    try:
        seconds = localizer.compile(batch_size)
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        warn(f"--compile failed ({reason}); running uncompiled")
        return False
    if note is not None:
        note(f"compiled in {seconds:.1f} s")
    return True
