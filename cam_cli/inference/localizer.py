"""image files -> decoded batches -> (logits, features) -> top-k CAMs -> boxes -> results.

The forward pass is the only real cost, and how it is kept busy depends on the device
(measured with scripts/bench_bbox.py):
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

import copy
import itertools
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from functools import cached_property, partial
from typing import Any

import numpy as np
import torch

from cam_cli.boxes.backends import device_boxes, resolve_box_backend
from cam_cli.boxes.components import boxes_from_cams, scale_boxes
from cam_cli.boxes.rules import BOX_RULES, PAPER, ZHOU2016, boxes_for_image
from cam_cli.cam import ten_crop as tc
from cam_cli.cam.maps import compute_cams, upsample_cams
from cam_cli.data.batches import ImageBatch, ImageListDataset, collate_images
from cam_cli.data.classes import ClassInfo
from cam_cli.data.decode import JpegRoutingDataset, decode_batches, resolve_decode
from cam_cli.errors import ArgumentError, SetupError
from cam_cli.files.checks import bounded_workers
from cam_cli.inference.analysis import Analysis
from cam_cli.inference.results import ImageResult, Prediction
from cam_cli.inference.threads import decoded_beside, prefetched, single_threaded_pool
from cam_cli.models.loading import LoadedModel
from cam_cli.models.speedups import fold_batch_norms
from cam_cli.runtime.device import Precision, keep_freed_memory
from cam_cli.runtime.distributed import process_device
from cam_cli.runtime.group import Group, cpus_per_process
from cam_cli.runtime.memory import batch_for_memory, out_of_memory
from cam_cli.runtime.streams import (
    STREAMS,
    HostCopy,
    Stream,
    Streams,
    hand_over,
    running_on,
    to_device,
)
from cam_cli.settings import BoxBackend, CamOptions, RunOptions, choices

logger = logging.getLogger(__name__)
BOX_BACKENDS = choices(BoxBackend)
NOTHING_MORE = Analysis()  # the top-k boxes alone
DEVICE_BACKENDS = ("torch", "triton")  # box backends that run on the network's device
SYNCING_BACKENDS = ("torch",)  # ... with host syncs inside (nonzero, equal): off the main thread


def check_threshold(threshold: float) -> None:
    """A CAM threshold keeps part of the map: in [0, 1). The library's one check of it."""
    if not 0.0 <= threshold < 1.0:
        raise ArgumentError("threshold", f"must be in [0, 1), got {threshold}")


@dataclass(frozen=True)
class Boxing:
    """Where a Localizer's CAMs become boxes, fixed when it is made: each batch carries it
    (`_DeviceOutput`), so the host half needs nothing from the Localizer."""

    at_image_size: bool  # per image at its own size, on the host (zhou2016, ten-crop)
    backend: str  # resolved box backend: "scipy" on the host, "torch" or "triton" on the device
    threshold: float

    @property
    def on_device(self) -> bool:
        """Boxes made on the network's device: only they leave it."""
        return not self.at_image_size and self.backend in DEVICE_BACKENDS


@dataclass
class _DeviceOutput:
    """A batch's network outputs, still on the device (`Localizer.launch_batch`)."""

    batch: ImageBatch
    boxing: Boxing
    indices: torch.Tensor | None = None  # [B, k]
    scores: torch.Tensor | None = None
    cams: torch.Tensor | None = None  # [B, k + m, h, w]
    upsampled: torch.Tensor | None = None  # [B, k + m, S, S]
    extra_indices: torch.Tensor | None = None  # [B, m]
    extra_scores: torch.Tensor | None = None

    def crossing(self) -> list[torch.Tensor | None]:
        """The device tensors another stream reads to finish the batch (`hand_over`)."""
        return [self.indices, self.scores, self.cams, self.upsampled, self.extra_indices,
                self.extra_scores]  # fmt: skip

    @torch.inference_mode()
    def queue_to_host(self, analysis: Analysis, stream: Stream) -> _InFlight:
        """Queue on ``stream`` (the calling thread's) the rest of the batch's device work, the
        boxes made there and ``analysis.on_device``, then one copy of everything the host needs
        (classes, scores, boxes or the maps to box on the host, what ``on_device`` gave):
        no host wait here unless the box backend has syncs inside (`SYNCING_BACKENDS`)."""
        if not self.batch.items:
            return _InFlight(self.batch, None, 0)
        upsampled, k = self.upsampled, self.indices.shape[1]
        found: dict[str, torch.Tensor] = {"class_indices": self.indices, "scores": self.scores}
        with stream.context():
            if analysis.keep_cams:
                found["feature_cams"] = self.cams[:, :k]
            if self.boxing.at_image_size:  # boxed per image at its own size, on the host
                found["source_maps"] = self.cams
            elif self.boxing.on_device:
                boxes = device_boxes(
                    self.boxing.backend, upsampled.flatten(0, 1), self.boxing.threshold
                )
                found["boxes"] = boxes.view(*upsampled.shape[:2], 4)
            else:
                found["upsampled"] = upsampled
            analyses = None
            if self.extra_indices is not None:
                found["extra_indices"] = self.extra_indices
                found["extra_scores"] = self.extra_scores
                if analysis.extra_cams == "feature":
                    found["extra_cams"] = self.cams[:, k:].float()
                elif analysis.extra_cams == "input" and "upsampled" not in found:
                    found["extra_cams"] = upsampled[:, k:]
                analyses = analysis.on_device(self.batch, upsampled[:, k:])
                if isinstance(analyses, torch.Tensor):  # a row per image, copied with the rest
                    found["analyses"], analyses = analyses, None
        copy = HostCopy(found, stream)
        input_cams = self.extra_indices is not None and analysis.extra_cams == "input"
        return _InFlight(self.batch, copy, k, analyses, input_cams)

    def to_host(self, analysis: Analysis, stream: Stream | None = None) -> _ForwardOutput:
        """`queue_to_host` on ``stream`` (default: the current one), and the wait for it."""
        if stream is None:
            device = self.indices.device if self.indices is not None else torch.device("cpu")
            stream = STREAMS.current(device)
        return self.queue_to_host(analysis, stream).wait()


@dataclass
class _InFlight:
    """A batch's host-bound copy, queued (`_DeviceOutput.queue_to_host`); `wait` is the one
    host wait for it."""

    batch: ImageBatch
    copy: HostCopy | None  # None: every image of the batch failed
    topk: int
    analyses: list | None = None  # what `Analysis.on_device` gave, as host values
    input_cams: bool = False  # the extra classes' maps at the input size are kept

    def wait(self) -> _ForwardOutput:
        out = _ForwardOutput(self.batch)
        if self.copy is None:
            return out
        host = self.copy.wait()
        analyses = host.pop("analyses", None)
        for name, array in host.items():
            setattr(out, name, array)
        if self.input_cams and out.upsampled is not None:
            out.extra_cams = out.upsampled[:, self.topk :]
        out.analyses = list(analyses) if analyses is not None else self.analyses
        return out


@dataclass
class _ForwardOutput:
    """What the box thread needs from one batch, already on the CPU."""

    batch: ImageBatch
    class_indices: np.ndarray | None = None  # [B, k]
    scores: np.ndarray | None = None  # [B, k]
    upsampled: np.ndarray | None = None  # [B, k + m, S, S] float32, for host-side boxes
    boxes: np.ndarray | None = None  # [B, k + m, 4] in the S x S grid, made on the device
    feature_cams: np.ndarray | None = None  # [B, k, h, w]
    extra_indices: np.ndarray | None = None  # [B, m]
    extra_scores: np.ndarray | None = None
    extra_cams: np.ndarray | None = None  # [B, m, S, S], when asked to keep them
    analyses: list | None = None  # what `Analysis.on_device` gave, one per good image
    source_maps: np.ndarray | None = None  # [B, k + m, h, w]: maps boxed at each image's size


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


def _with_fields(cam: CamOptions, run: RunOptions, given: dict[str, Any]):
    """``cam`` and ``run`` with the fields named in ``given`` replaced (short calls in tests
    and scripts: ``Localizer(loaded, topk=1, fast=False)``)."""
    cam_names = {f.name for f in fields(CamOptions)}
    run_names = {f.name for f in fields(RunOptions)}
    unknown = sorted(set(given) - cam_names - run_names)
    if unknown:
        raise TypeError(f"Localizer() got an unexpected keyword argument {unknown[0]!r}")
    if given.get("class_indices") is not None:
        given = {**given, "class_indices": tuple(given["class_indices"])}
    cam = replace(cam, **{k: v for k, v in given.items() if k in cam_names})
    return cam, replace(run, **{k: v for k, v in given.items() if k in run_names})


class Localizer:
    """A loaded model plus what to compute (`CamOptions`) and how to run (`RunOptions`);
    `localize` runs it over image files."""

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
        """``run.box_backend``: where the paper rule's CAMs become boxes (`boxes.backends`):
        ``scipy`` on the host, ``torch`` or ``triton`` on the network's device (only boxes
        leave it); ``auto`` takes scipy on the CPU, where it is ~5x faster per map than torch
        (measured, one core), and triton (else torch) on CUDA. All give equal boxes; the
        resolved name is ``box_backend``, and ``boxes_on_device`` says whether it is on the
        device. The other rules box on the host. Without ``run``: `RunOptions` on the CPU.

        ``cam.box_rule`` (`boxes.rules`): ``paper`` (one box per CAM, the default path,
        untouched), ``zhou2016`` (the released generator, on the CAM resized to each image's own
        size) or ``all-components``; the others rank several boxes per CAM (`Prediction.boxes`).
        ``cam.ten_crop``: the released ten-crop CAM (`ten_crop`); its maps are resized to each
        image's size before boxing, whatever the rule.

        ``group``: the command's group of processes (`runtime.group.open_group`); in a group
        of several, each localizes its share and rank 0 yields every result.
        ``copy_model=False`` prepares ``loaded.model`` in place instead of a copy (batch norm
        folded, channels_last, moved to the device): for a caller that made the model for this
        run alone (a copy of MobileNetV2 costs ~0.2 s of start-up). ``given``: fields of
        `CamOptions` or `RunOptions` to replace.

        ``cam.threshold=None``: the one the checkpoint carries (chosen at training on boxed
        training images, `training.threshold`), else the paper's 0.2; a given threshold always
        wins."""
        cam, run = _with_fields(cam or CamOptions(), run or RunOptions(device="cpu"), given)
        self.cam, self.run, self.group = cam, run, group
        threshold = cam.threshold
        if threshold is None:
            threshold = loaded.cam_threshold if loaded.cam_threshold is not None else 0.2
        if cam.box_rule not in BOX_RULES:
            raise ArgumentError(
                "box_rule", f"must be one of {', '.join(BOX_RULES)}, not {cam.box_rule!r}"
            )
        self.box_rule = cam.box_rule
        self.ten_crop = cam.ten_crop
        check_threshold(threshold)
        if cam.topk < 1:
            raise ArgumentError("topk", f"must be >= 1, got {cam.topk}")
        self.classes: list[ClassInfo] = loaded.classes
        self.preprocessing = loaded.preprocessing
        self.topk = min(cam.topk, len(loaded.classes))
        self.threshold = threshold
        self.fixed_classes = list(cam.class_indices) if cam.class_indices else None
        self.device = process_device(run.device)
        if run.box_backend not in BOX_BACKENDS:
            raise SetupError(
                f"box_backend must be one of {', '.join(BOX_BACKENDS)}, not {run.box_backend!r}"
            )
        self.box_backend = (
            resolve_box_backend(run.box_backend, self.device) if cam.box_rule == PAPER else "scipy"
        )
        self.boxes_on_device = self.box_backend in DEVICE_BACKENDS
        # The released code boxed at the image's own size; the paper rule boxes the map at the
        # input size and scales the box (as it always has).
        self.boxing = Boxing(
            at_image_size=cam.ten_crop or cam.box_rule == ZHOU2016,
            backend=self.box_backend,
            threshold=threshold,
        )
        # Where device work is queued (`runtime.streams`; a fake in tests), and whether device
        # JPEG decoding runs in a thread and on a stream of its own (`threads.decoded_beside`):
        # on CUDA; on the CPU it decodes in this thread, as it always has.
        self.streams: Streams = STREAMS
        self.decode_thread = self.device.type == "cuda"
        self.precision = Precision(self.device, run.fast)
        if self.device.type == "cpu":
            keep_freed_memory()
        # Our own copy, prepared for inference only: the caller's model keeps its batch norms,
        # its memory format and its device.
        model = (copy.deepcopy(loaded.model) if copy_model else loaded.model).eval()
        fold_batch_norms(model)
        # channels_last in every precision: same arithmetic, faster kernels (oneDNN, cuDNN).
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.input_size = loaded.input_size
        # Ten-crop decodes a larger frame (256 for 224) and cuts the crops from it.
        self.load_size = tc.frame_size(self.input_size) if cam.ten_crop else self.input_size
        # Lanes are for the CPU; elsewhere one forward at a time.
        wanted = torch.get_num_threads() if run.lanes is None else run.lanes
        self.lanes = max(1, wanted) if self.device.type == "cpu" else 1
        self._lanes_pool: ThreadPoolExecutor | None = None
        self._network_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = self.model
        self._compiled_slice: int | None = None  # every slice is padded to this many images

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
                x = _channels_last(self.preprocessing.apply(pixels))
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
            self._lanes_pool = single_threaded_pool(self.lanes)
        return self._lanes_pool

    def _network(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = len(x)
        with torch.inference_mode():  # per thread: the lanes need it too
            if self._compiled_slice is not None and count < self._compiled_slice:
                padding = x[:1].expand(self._compiled_slice - count, -1, -1, -1)
                x = _channels_last(torch.cat([x, padding]))
            with self.precision.autocast():
                logits, features = self._network_fn(x)
            return logits[:count], features[:count].float()

    @torch.inference_mode()
    def forward_batch(
        self,
        batch: ImageBatch,
        extra_indices: torch.Tensor | None = None,
        analysis: Analysis = NOTHING_MORE,
    ) -> _ForwardOutput:
        """One batch through the network to what the host needs (`_DeviceOutput.to_host`)."""
        stream = self.streams.current(self.device)
        return self.launch_batch(batch, extra_indices).to_host(analysis, stream)

    @torch.inference_mode()
    def launch_batch(
        self, batch: ImageBatch, extra_indices: torch.Tensor | None = None
    ) -> _DeviceOutput:
        """The network and the CAMs of a batch, left on the device. Nothing here waits for the
        device, so on a GPU the next batch is queued while the box thread collects this one.

        Ten-crop: the ten crops of the batch in one forward pass, the classes from the mean of
        the crops' scores, the merged maps (`ten_crop`) as the CAMs; ``upsampled`` is those
        maps at the input size (MaxBoxAcc's grid)."""
        if not batch.items:  # every image of the batch failed: nothing to run, keep the order
            return _DeviceOutput(batch, self.boxing)
        pixels = to_device(batch.pixels, self.device)  # pinned: no host wait
        x = _channels_last(self.preprocessing.apply(pixels))
        if self.ten_crop:
            logits, features = self._network(_channels_last(tc.ten_crops(x, self.input_size)))
            probabilities = tc.mean_crop_probabilities(logits)  # [B, classes]
        else:
            logits, features = self._network(x)
            probabilities = logits.float().softmax(dim=1)
        if self.fixed_classes is not None:
            indices = to_device(torch.tensor(self.fixed_classes), self.device).expand(len(x), -1)
            scores = probabilities.gather(1, indices)
        else:
            scores, indices = probabilities.topk(min(self.topk, probabilities.shape[1]), dim=1)
        weight, _ = self.model.class_weights()
        weight = None if weight is None else weight.float()
        all_indices, extra_scores = indices, None
        if extra_indices is not None:
            extra_indices = to_device(extra_indices, self.device)
            extra_scores = probabilities.gather(1, extra_indices)
            all_indices = torch.cat([indices, extra_indices], dim=1)
        if self.ten_crop:
            cams = tc.ten_crop_cams(features, weight, all_indices, self.input_size)  # [B, n, F, F]
        else:
            cams = compute_cams(features, weight, all_indices)  # [B, k + m, h, w]
        upsampled = upsample_cams(cams, (self.input_size, self.input_size))
        return _DeviceOutput(
            batch, self.boxing, indices, scores, cams, upsampled, extra_indices, extra_scores
        )

    def _prediction(
        self, rank: int, index: int, score: float, box: list[int], boxes: list | None = None
    ) -> Prediction:
        info = self.classes[index]
        return Prediction(rank, index, info.wnid, info.name, score, box, boxes)

    def _ranked_boxes(self, out: _ForwardOutput) -> list[list[list[list[int]]]]:
        """Every map's ranked boxes in its image's pixels, ``[image][map][rank]``, for the
        rules other than the paper's one-crop path (`boxes.rules.boxes_for_image`)."""
        at_size = out.source_maps is not None
        maps = out.source_maps if at_size else out.upsampled
        return [
            [
                boxes_for_image(cam, (item.width, item.height), self.box_rule, self.threshold,
                                at_image_size=at_size).tolist()
                for cam in maps[i]
            ]
            for i, item in enumerate(out.batch.items)
        ]  # fmt: skip

    def boxes_and_results(
        self, out: _ForwardOutput | _DeviceOutput | _InFlight, analysis: Analysis = NOTHING_MORE
    ) -> list[ImageResult]:
        """The host half of a batch: boxes (unless made on the device), scaled to each image's
        own pixels, the results, and ``analysis.on_host``."""
        if isinstance(out, _DeviceOutput):
            out = out.to_host(analysis, self.streams.current(self.device))
        elif isinstance(out, _InFlight):
            out = out.wait()
        return _in_input_order(self._indexed_results(out, analysis))

    def _collect_beside(
        self, launched: _DeviceOutput, ready: object, stream: Stream, analysis: Analysis
    ) -> list[ImageResult]:
        """In the box thread, on its own ``stream``: a box backend with host syncs inside, once
        the main stream's work on the batch (``ready``) is done; those syncs then wait for this
        batch alone, while the main thread queues the next."""
        with running_on(stream):
            hand_over(launched.crossing(), ready, stream)
            in_flight = launched.queue_to_host(analysis, stream)
        return self.boxes_and_results(in_flight, analysis)

    def _indexed_results(
        self, out: _ForwardOutput, analysis: Analysis
    ) -> list[tuple[int, ImageResult]]:
        batch = out.batch
        results = [(s.index, ImageResult(s.path, error=s.error)) for s in batch.failed]
        if not batch.items:
            return results
        k = out.class_indices.shape[1]
        if self.box_rule != PAPER or self.ten_crop:
            # `[image][map][rank]` boxes; the paper rule (ten-crop) gives one, and no "boxes"
            ranked = self._ranked_boxes(out)
            every = self.box_rule != PAPER
        else:
            ranked, every = [[[box] for box in maps] for maps in self._paper_boxes(out)], False
        # Plain Python numbers for the whole batch at once: per-value numpy conversions were
        # most of the per-image cost of this loop (measured 26 -> 13 us per image at top-5).
        indices, scores = out.class_indices.tolist(), out.scores.astype(np.float64).tolist()

        def prediction(rank: int, index: int, score: float, boxes: list) -> Prediction:
            return self._prediction(rank, index, score, boxes[0], boxes if every else None)

        for i, item in enumerate(batch.items):
            boxes = ranked[i]
            result = ImageResult(item.path, item.width, item.height)
            result.predictions = [
                prediction(r + 1, indices[i][r], scores[i][r], boxes[r]) for r in range(k)
            ]
            if out.feature_cams is not None:
                result.cams = out.feature_cams[i]
            if out.extra_indices is not None:
                result.extra = [
                    prediction(0, int(index), float(out.extra_scores[i, j]), boxes[k + j])
                    for j, index in enumerate(out.extra_indices[i])
                ]
                if out.extra_cams is not None:
                    result.extra_cams = out.extra_cams[i]
            if result.flag_non_finite():  # an error record (counted), never "score": NaN
                results.append((item.index, result))
                continue
            if out.analyses is not None:
                result.analysis = out.analyses[i]
            analysis.on_host(result)
            results.append((item.index, result))
        return results

    def _paper_boxes(self, out: _ForwardOutput) -> list[list[list[int]]]:
        """The paper's one box per map, ``[image][map]``: made on the device, or here with
        scipy, at the input size, then scaled to each image's own pixels."""
        size = self.input_size
        if out.boxes is None:
            b, n = out.upsampled.shape[:2]
            boxes = boxes_from_cams(out.upsampled.reshape(b * n, size, size), self.threshold)
        else:
            b, n = out.boxes.shape[:2]
            boxes = out.boxes.reshape(b * n, 4)
        sizes = np.repeat([[s.width, s.height] for s in out.batch.items], n, axis=0)
        return scale_boxes(boxes, (size, size), sizes).reshape(b, n, 4).tolist()

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

        def steps(batches: Iterator[ImageBatch]) -> Iterator[list[ImageResult]]:
            if pool is not None:
                return self._localize_in_lanes(pool, batches, analysis)
            return self._localize_with_box_thread(batches, analysis)

        def here(share: Sequence[str], progress: bool | None) -> Iterator[ImageResult]:
            return self._run(share, analysis, batch_size, workers, progress, steps)

        if sharded:
            return self.group.localize(here, paths, batch_size, run.progress)
        return here(paths, run.progress)

    def _run(
        self,
        paths: Sequence[str],
        analysis: Analysis,
        batch_size: int,
        workers: int,
        progress: bool | None,
        steps: Callable[[Iterator[ImageBatch]], Iterator[list[ImageResult]]],
    ) -> Iterator[ImageResult]:
        """The images decoded into batches (DataLoader workers, or a thread beside the network;
        JPEGs on the device with `decode`), through ``steps``, a bar on stderr (``progress``:
        None shows it when stderr is a terminal)."""
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        # --- device JPEG decoding (data.decode): workers route, this process decodes
        on_device = self.decode == "device"
        dataset_type = JpegRoutingDataset if on_device else ImageListDataset
        dataset = dataset_type(list(paths), self.load_size)
        workers = bounded_workers(workers)
        extra = int(analysis.extra_classes is not None)
        batch_size = self.batch_for_memory(batch_size, extra=extra)
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
            total=len(dataset),
            unit="img",
            disable=None if progress is None else not progress,
            file=sys.stderr,
            leave=False,
        )
        batches = loader if workers > 0 else prefetched(loader, depth=2)
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

    def _localize_in_lanes(self, pool, batches, analysis: Analysis) -> Iterator[list[ImageResult]]:
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
                yield _in_input_order(_gather(pending.popleft()))
        while pending:
            yield _in_input_order(_gather(pending.popleft()))

    def _localize_with_box_thread(self, batches, analysis: Analysis) -> Iterator[list[ImageResult]]:
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


def _extra_tensor(batch: ImageBatch, extra_classes) -> torch.Tensor | None:
    if extra_classes is None or not batch.items:
        return None
    return torch.tensor([list(extra_classes(s.path)) for s in batch.items])


def _gather(futures: list[Future]) -> list[tuple[int, ImageResult]]:
    return [pair for future in futures for pair in future.result()]


def _in_input_order(indexed: list[tuple[int, ImageResult]]) -> list[ImageResult]:
    return [result for _, result in sorted(indexed, key=lambda pair: pair[0])]


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def compile_or_warn(localizer: Localizer, batch_size: int | None = None) -> bool:
    """--compile as the commands run it: say what it cost, or why it failed and go on eager.

    Eager gives the same results, so a compiler or backend failure never stops a run.
    """
    logger.info("compiling the model (a one-time cost)...")
    try:
        seconds = localizer.compile(batch_size)
    except Exception as error:  # noqa: BLE001 - any compile failure: run uncompiled
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        logger.warning("--compile failed (%s); running uncompiled", reason)
        return False
    logger.info("compiled in %.1f s", seconds)
    return True
