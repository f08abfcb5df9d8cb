"""What one batch computes, apart from how batches are scheduled (`inference.localizer`):
the network's forward (logits and features), the class maps of the top-k and extra classes
(`map_methods`: the paper's CAM by default), those maps at the input size, the boxes (on the
device or on the host, `boxes.backends`), each image's result in its own pixels, and the
caller's analysis (`inference.analysis`).

`BatchComputation.launch_batch` queues a batch's device work and leaves it there
(`DeviceOutput`); `DeviceOutput.queue_to_host` queues the boxes made on the device and one copy
of what the host needs (`InFlight`, whose `wait` is the one host wait); `boxes_and_results`
makes the results on the host. Each step is safe to run in another thread than the one before.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from cam_cli.boxes.backends import device_boxes, resolve_box_backend
from cam_cli.boxes.components import boxes_from_cams, scale_boxes
from cam_cli.boxes.rules import BOX_RULES, PAPER, ZHOU2016, boxes_for_image
from cam_cli.cam import ten_crop as tc
from cam_cli.cam.faithfulness import faithfulness
from cam_cli.cam.maps import upsample_cams
from cam_cli.data.batches import ImageBatch
from cam_cli.data.classes import ClassInfo
from cam_cli.errors import ArgumentError, SetupError
from cam_cli.inference.analysis import Analysis
from cam_cli.inference.map_methods import ForwardPass, MapMethod, map_method
from cam_cli.inference.results import ImageResult, Prediction
from cam_cli.models.loading import LoadedModel
from cam_cli.models.speedups import fold_batch_norms
from cam_cli.runtime.device import Precision, keep_freed_memory
from cam_cli.runtime.distributed import process_device
from cam_cli.runtime.streams import STREAMS, HostCopy, Stream, Streams, to_device
from cam_cli.settings import BoxBackend, CamOptions, RunOptions, choices

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
    (`DeviceOutput`), so the host half needs nothing from the Localizer."""

    at_image_size: bool  # per image at its own size, on the host (zhou2016, ten-crop)
    backend: str  # resolved box backend: "scipy" on the host, "torch" or "triton" on the device
    threshold: float

    @property
    def on_device(self) -> bool:
        """Boxes made on the network's device: only they leave it."""
        return not self.at_image_size and self.backend in DEVICE_BACKENDS


@dataclass
class DeviceOutput:
    """A batch's network outputs, still on the device (`Localizer.launch_batch`)."""

    batch: ImageBatch
    boxing: Boxing
    indices: torch.Tensor | None = None  # [B, k]
    scores: torch.Tensor | None = None
    cams: torch.Tensor | None = None  # [B, k + m, h, w]
    upsampled: torch.Tensor | None = None  # [B, k + m, S, S]
    extra_indices: torch.Tensor | None = None  # [B, m]
    extra_scores: torch.Tensor | None = None
    faithfulness: torch.Tensor | None = None  # [B, 4] (`cam.faithfulness`), when asked for

    def crossing(self) -> list[torch.Tensor | None]:
        """The device tensors another stream reads to finish the batch (`hand_over`)."""
        return [self.indices, self.scores, self.cams, self.upsampled, self.extra_indices,
                self.extra_scores, self.faithfulness]  # fmt: skip

    @torch.inference_mode()
    def queue_to_host(self, analysis: Analysis, stream: Stream) -> InFlight:
        """Queue on ``stream`` (the calling thread's) the rest of the batch's device work, the
        boxes made there and ``analysis.on_device``, then one copy of everything the host needs
        (classes, scores, boxes or the maps to box on the host, what ``on_device`` gave):
        no host wait here unless the box backend has syncs inside (`SYNCING_BACKENDS`)."""
        if not self.batch.items:
            return InFlight(self.batch, None, 0)
        indices, scores, cams, upsampled = self.indices, self.scores, self.cams, self.upsampled
        # `launch_batch` sets them together for every batch with an image
        assert indices is not None
        assert scores is not None
        assert cams is not None
        assert upsampled is not None
        k = indices.shape[1]
        found: dict[str, torch.Tensor] = {"class_indices": indices, "scores": scores}
        with stream.context():
            if analysis.keep_cams:
                found["feature_cams"] = cams[:, :k]
            if self.faithfulness is not None:
                found["faithfulness"] = self.faithfulness
            if self.boxing.at_image_size:  # boxed per image at its own size, on the host
                found["source_maps"] = cams
            elif self.boxing.on_device:
                boxes = device_boxes(
                    self.boxing.backend, upsampled.flatten(0, 1), self.boxing.threshold
                )
                found["boxes"] = boxes.view(*upsampled.shape[:2], 4)
            else:
                found["upsampled"] = upsampled
            analyses: Sequence[object] | None = None
            if self.extra_indices is not None:
                assert self.extra_scores is not None  # set with the extra classes
                found["extra_indices"] = self.extra_indices
                found["extra_scores"] = self.extra_scores
                if analysis.extra_cams == "feature":
                    found["extra_cams"] = cams[:, k:].float()
                elif analysis.extra_cams == "input" and "upsampled" not in found:
                    found["extra_cams"] = upsampled[:, k:]
                given = analysis.on_device(self.batch, upsampled[:, k:])
                if isinstance(given, torch.Tensor):  # a row per image, copied with the rest
                    found["analyses"] = given
                else:
                    analyses = given
        copy = HostCopy(found, stream)
        input_cams = self.extra_indices is not None and analysis.extra_cams == "input"
        return InFlight(self.batch, copy, k, analyses, input_cams)

    def to_host(self, analysis: Analysis, stream: Stream | None = None) -> ForwardOutput:
        """`queue_to_host` on ``stream`` (default: the current one), and the wait for it."""
        if stream is None:
            device = self.indices.device if self.indices is not None else torch.device("cpu")
            stream = STREAMS.current(device)
        return self.queue_to_host(analysis, stream).wait()


@dataclass
class InFlight:
    """A batch's host-bound copy, queued (`DeviceOutput.queue_to_host`); `wait` is the one
    host wait for it."""

    batch: ImageBatch
    copy: HostCopy | None  # None: every image of the batch failed
    topk: int
    analyses: Sequence[object] | None = None  # what `Analysis.on_device` gave, as host values
    input_cams: bool = False  # the extra classes' maps at the input size are kept

    def wait(self) -> ForwardOutput:
        out = ForwardOutput(self.batch)
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
class ForwardOutput:
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
    analyses: Sequence[object] | None = None  # what `Analysis.on_device` gave, one per good image
    source_maps: np.ndarray | None = None  # [B, k + m, h, w]: maps boxed at each image's size
    faithfulness: np.ndarray | None = None  # [B, 4] (`cam.faithfulness.FIGURES`)


def _with_fields(
    cam: CamOptions, run: RunOptions, given: dict[str, Any]
) -> tuple[CamOptions, RunOptions]:
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


class BatchComputation:
    """A loaded model plus what to compute (`CamOptions`) and the device and precision it runs
    at (`RunOptions`): one batch at a time, from pixels to results."""

    def __init__(
        self,
        loaded: LoadedModel,
        cam: CamOptions | None = None,
        run: RunOptions | None = None,
        *,
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

        ``copy_model=False`` prepares ``loaded.model`` in place instead of a copy (batch norm
        folded, channels_last, moved to the device): for a caller that made the model for this
        run alone (a copy of MobileNetV2 costs ~0.2 s of start-up). ``given``: fields of
        `CamOptions` or `RunOptions` to replace.

        ``cam.threshold=None``: the one the checkpoint carries (chosen at training on boxed
        training images, `training.threshold`), else the paper's 0.2; a given threshold always
        wins."""
        cam, run = _with_fields(cam or CamOptions(), run or RunOptions(device="cpu"), given)
        self.cam, self.run = cam, run
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
        if cam.faithfulness and cam.ten_crop:
            raise ArgumentError(
                "faithfulness", "scores the top-1 map of one crop: leave out `ten_crop`"
            )
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
        # Where device work is queued (`runtime.streams`; a fake in tests).
        self.streams: Streams = STREAMS
        self.precision = Precision(self.device, run.fast)
        if self.device.type == "cpu":
            keep_freed_memory()
        # Our own copy, prepared for inference only: the caller's model keeps its batch norms,
        # its memory format and its device.
        model = (copy.deepcopy(loaded.model) if copy_model else loaded.model).eval()
        fold_batch_norms(model)
        # channels_last in every precision: same arithmetic, faster kernels (oneDNN, cuDNN).
        # (two calls: torch's type stubs have no overload taking both at once)
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        self.input_size = loaded.input_size
        # Ten-crop decodes a larger frame (256 for 224) and cuts the crops from it.
        self.load_size = tc.frame_size(self.input_size) if cam.ten_crop else self.input_size
        # Where the maps come from (`map_methods`): the paper's CAM by default.
        self.maps: MapMethod = map_method(
            cam.method, self.model, self.input_size, cam.ten_crop, cam.layer
        )
        # The network as called (torch.compile'd by `Localizer.compile`), and the slice size
        # it was compiled for: every slice is then padded to it.
        self.network_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = self.model
        self.compiled_slice: int | None = None

    def network(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = len(x)
        with torch.inference_mode():  # per thread: the lanes need it too
            if self.compiled_slice is not None and count < self.compiled_slice:
                padding = x[:1].expand(self.compiled_slice - count, -1, -1, -1)
                x = channels_last(torch.cat([x, padding]))
            with self.precision.autocast():
                logits, features = self.network_fn(x)
            return logits[:count], features[:count].float()

    @torch.inference_mode()
    def forward_batch(
        self,
        batch: ImageBatch,
        extra_indices: torch.Tensor | None = None,
        analysis: Analysis = NOTHING_MORE,
    ) -> ForwardOutput:
        """One batch through the network to what the host needs (`DeviceOutput.to_host`)."""
        stream = self.streams.current(self.device)
        return self.launch_batch(batch, extra_indices).to_host(analysis, stream)

    @torch.inference_mode()
    def launch_batch(
        self, batch: ImageBatch, extra_indices: torch.Tensor | None = None
    ) -> DeviceOutput:
        """The network and the CAMs of a batch, left on the device. Nothing here waits for the
        device, so on a GPU the next batch is queued while the box thread collects this one.

        Ten-crop: the ten crops of the batch in one forward pass, the classes from the mean of
        the crops' scores, the merged maps (`ten_crop`) as the CAMs; ``upsampled`` is those
        maps at the input size (MaxBoxAcc's grid)."""
        if not batch.items:  # every image of the batch failed: nothing to run, keep the order
            return DeviceOutput(batch, self.boxing)
        pixels = to_device(batch.pixels, self.device)  # pinned: no host wait
        x = channels_last(self.preprocessing.apply(pixels))
        inputs = channels_last(tc.ten_crops(x, self.input_size)) if self.ten_crop else x
        logits, features = self.network(inputs)
        if self.ten_crop:
            probabilities = tc.mean_crop_probabilities(logits)  # [B, classes]
        else:
            probabilities = logits.float().softmax(dim=1)
        if self.fixed_classes is not None:
            indices = to_device(torch.tensor(self.fixed_classes), self.device).expand(len(x), -1)
            scores = probabilities.gather(1, indices)
        else:
            scores, indices = probabilities.topk(min(self.topk, probabilities.shape[1]), dim=1)
        all_indices, extra_scores = indices, None
        if extra_indices is not None:
            extra_indices = to_device(extra_indices, self.device)
            extra_scores = probabilities.gather(1, extra_indices)
            all_indices = torch.cat([indices, extra_indices], dim=1)
        # [B, k + m, h, w] (ten-crop: the merged maps, at the size `ten_crop` gives them)
        cams = self.maps.maps(ForwardPass(inputs, logits, features), all_indices)
        upsampled = upsample_cams(cams, (self.input_size, self.input_size))
        figures = None
        if self.cam.faithfulness:  # the top-1 map's: torchcam's metrics, batched
            figures = faithfulness(self._softmax, inputs, cams[:, 0], indices[:, 0])
        return DeviceOutput(batch, self.boxing, indices, scores, cams, upsampled,
                            extra_indices, extra_scores, figures)  # fmt: skip

    def _softmax(self, x: torch.Tensor) -> torch.Tensor:
        """The network's class probabilities of ``x`` (as its scores are made)."""
        return self.network(channels_last(x))[0].float().softmax(dim=1)

    def _prediction(
        self, rank: int, index: int, score: float, box: list[int], boxes: list | None = None
    ) -> Prediction:
        info = self.classes[index]
        return Prediction(rank, index, info.wnid, info.name, score, box, boxes)

    def _ranked_boxes(self, out: ForwardOutput) -> list[list[list[list[int]]]]:
        """Every map's ranked boxes in its image's pixels, ``[image][map][rank]``, for the
        rules other than the paper's one-crop path (`boxes.rules.boxes_for_image`)."""
        at_size = out.source_maps is not None
        maps = out.source_maps if at_size else out.upsampled
        assert maps is not None  # one of the two crosses for every batch with an image
        return [
            [
                boxes_for_image(cam, (item.width, item.height), self.box_rule, self.threshold,
                                at_image_size=at_size).tolist()
                for cam in maps[i]
            ]
            for i, item in enumerate(out.batch.items)
        ]  # fmt: skip

    def boxes_and_results(
        self, out: ForwardOutput | DeviceOutput | InFlight, analysis: Analysis = NOTHING_MORE
    ) -> list[ImageResult]:
        """The host half of a batch: boxes (unless made on the device), scaled to each image's
        own pixels, the results, and ``analysis.on_host``."""
        if isinstance(out, DeviceOutput):
            out = out.to_host(analysis, self.streams.current(self.device))
        elif isinstance(out, InFlight):
            out = out.wait()
        return in_input_order(self._indexed_results(out, analysis))

    def _indexed_results(
        self, out: ForwardOutput, analysis: Analysis
    ) -> list[tuple[int, ImageResult]]:
        batch = out.batch
        results = [(s.index, ImageResult(s.path, error=s.error)) for s in batch.failed]
        if not batch.items:
            return results
        assert out.class_indices is not None
        assert out.scores is not None
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
            if out.faithfulness is not None:
                result.faithfulness = out.faithfulness[i].tolist()
            if out.extra_indices is not None:
                assert out.extra_scores is not None  # copied with the extra classes
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

    def _paper_boxes(self, out: ForwardOutput) -> list[list[list[int]]]:
        """The paper's one box per map, ``[image][map]``: made on the device, or here with
        scipy, at the input size, then scaled to each image's own pixels."""
        size = self.input_size
        if out.boxes is None:
            assert out.upsampled is not None  # the maps cross when the boxes do not
            b, n = out.upsampled.shape[:2]
            boxes = boxes_from_cams(out.upsampled.reshape(b * n, size, size), self.threshold)
        else:
            b, n = out.boxes.shape[:2]
            boxes = out.boxes.reshape(b * n, 4)
        sizes = np.repeat([[s.width, s.height] for s in out.batch.items], n, axis=0)
        return scale_boxes(boxes, (size, size), sizes).reshape(b, n, 4).tolist()


def in_input_order(indexed: list[tuple[int, ImageResult]]) -> list[ImageResult]:
    return [result for _, result in sorted(indexed, key=lambda pair: pair[0])]


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)
