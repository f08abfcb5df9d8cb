"""MaxBoxAccV2 as `eval` computes it: the best IoU per CAM threshold of each image's score map
(where the map is: beside the network, on the device for the ``cam-cli`` protocol when the
boxes are made there, or as read from a file), counted over the images, and the figures at
the best thresholds and at thresholds carried from another split's report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cam_cli.data.ground_truth import ImageAnnotation
from cam_cli.errors import EvaluationError
from cam_cli.evaluation.evaluators.base import Evaluator, ScoredImage, Setup
from cam_cli.evaluation.gt_boxes import gt_boxes_in_grid
from cam_cli.evaluation.maxboxacc.carried_thresholds import carried_thresholds
from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2
from cam_cli.evaluation.maxboxacc.protocol import MaxBoxAccProtocol, maxboxacc_protocol
from cam_cli.evaluation.report import CarriedMaxBoxAccFigures, MaxBoxAccFigures, Report

if TYPE_CHECKING:
    import torch


class MaxBoxAcc(Evaluator):
    """``carried``: `carried_thresholds.carried_thresholds` of an earlier report, already
    placed on this run's threshold grid."""

    key = "maxboxacc"
    reads_maps = True

    def __init__(self, protocol: MaxBoxAccProtocol, carried: dict[str, Any] | None) -> None:
        self.metric = MaxBoxAccV2(protocol=protocol)
        self.carried = carried
        # the cam-cli protocol scores the CAM at input size: its sweep can run on the device
        self.on_device_too = protocol.input_size_cam

    @classmethod
    def setup(cls, setup: Setup) -> MaxBoxAcc | None:
        """A model run asked for it, or score maps against boxes; the carried thresholds read
        and placed on the grid now, before any image."""
        metrics, mode = setup.options.metrics, setup.mode
        wanted = metrics.maxboxacc if mode == "model" else mode == "scoremaps"
        if not wanted or setup.truth.masks is not None and mode == "scoremaps":
            return None
        if mode == "model" and not setup.truth.has_boxes:
            raise EvaluationError(
                "`maxboxacc` needs ground-truth boxes; these annotations have none"
            )
        protocol = maxboxacc_protocol(metrics.maxboxacc_protocol)
        if metrics.cam_threshold_from is None:
            return cls(protocol, None)
        grid = MaxBoxAccV2(protocol=protocol)  # the report's thresholds must be on its grid
        carried = carried_thresholds(
            metrics.cam_threshold_from,
            protocol.name,
            list(grid.iou_thresholds),
            list(grid.thresholds),
        )
        return cls(protocol, carried)

    def on_map(
        self, scoremap: np.ndarray, annotation: ImageAnnotation, width: int, height: int
    ) -> np.ndarray:
        return self.metric.scoremap_image_ious(scoremap, annotation, width, height)

    def on_device(
        self, step: str, cams: torch.Tensor, images: Sequence[tuple[ImageAnnotation, int, int]]
    ) -> torch.Tensor:
        """The best IoUs ``[B, T]`` left on the device: the pipeline copies them with the rest
        of the batch (one host wait), and each image gets its row."""
        from cam_cli.evaluation.maxboxacc.sweep_torch import pad_gt_boxes
        from cam_cli.evaluation.maxboxacc.sweeps import device_best_ious

        grid = tuple(cams.shape[-2:])
        gt = [gt_boxes_in_grid(annotation, w, h, grid) for annotation, w, h in images]
        boxes, valid = pad_gt_boxes(gt, cams.device)
        return device_best_ious(step, cams, boxes, valid, self.metric.thresholds)

    def accumulate(self, image: ScoredImage) -> None:
        """A failed image (or one without a map) misses at every threshold."""
        ious = image.from_map.get(self.key) if image.error is None else None
        best = np.zeros(len(self.metric.thresholds)) if ious is None else ious
        self.metric.add_best_ious(np.asarray(best, dtype=np.float64))
        if image.record is not None:
            image.line["maxboxacc_ious"] = [float(v) for v in best]

    def compute(self, report: Report) -> Report:
        carried = None if self.carried is None else self.metric.summary_at(self.carried)
        return replace(
            report,
            maxboxacc_v2=cast(MaxBoxAccFigures, self.metric.summary()),
            maxboxacc_v2_carried=cast(CarriedMaxBoxAccFigures | None, carried),
        )
