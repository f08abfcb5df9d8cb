"""What an evaluation gives: one `Report`, every figure typed, which the table (`table`), the
JSON (`json_text`) and anything that draws figures read.

Each section is filled by the evaluator that computed it (`evaluators`); a section an
evaluation did not ask for is None. The JSON is `Report.to_json`, with the keys in the order
earlier reports had them, so a report's bytes do not change with the code that made it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NotRequired, TypedDict

from cam_cli.files.checks import printable, strict_json


class FailedImage(TypedDict):
    """An image (or a score map) that gave no result, counted as wrong."""

    path: str | None
    error: str


class MissingCounts(TypedDict):
    """Images (records, maps) without ground truth and ground truth without an image, left out
    with ``allow_missing`` (`data.matching.Missing.as_dict`)."""

    images_without_annotation: int
    annotations_without_image: int
    left_out: int
    images_without_annotation_list: list[str]
    annotations_without_image_list: list[str]


class Correct(TypedDict):
    top1_cls: int
    top5_cls: int
    top1_loc: int
    top5_loc: int


class BaselineFigures(TypedDict):
    """A trivial box's localization figures (the whole image, or a centred box of the median
    ground-truth size, whose ``relative_size`` is given); GT-known ones where the model's are."""

    top1_loc_correct: int
    top5_loc_correct: int
    top1_loc_error: float | None
    top5_loc_error: float | None
    relative_size: NotRequired[list[float] | None]
    gt_known_correct: NotRequired[int]
    gt_known_loc_error: NotRequired[float | None]


class Baselines(TypedDict):
    whole_image: BaselineFigures
    centered_median_box: BaselineFigures


class LocalizationFigures(TypedDict):
    """The ILSVRC figures (`localization.LocalizationEvaluator`): errors in percent,
    unrounded, None where undefined; the counts they come from."""

    images_without_boxes: int
    images_gt_rescaled: int
    iou_threshold: float
    min_predictions: int | None
    correct: Correct
    top1_cls_error: float | None
    top5_cls_error: float | None
    top1_loc_error: float | None
    top5_loc_error: float | None
    gt_known_images: int
    gt_known_correct: int
    gt_known_loc_error: float | None
    baselines: Baselines


class MaxBoxAccFigures(TypedDict):
    """MaxBoxAccV2 at the best CAM threshold of each IoU level (`maxboxacc.metric`)."""

    images: int
    iou_thresholds: list[float]
    accuracy: list[float | None]
    best_threshold: list[float | None]
    maxboxacc_v2: float | None
    protocol: str
    threshold_source: str


class CarriedMaxBoxAccFigures(TypedDict):
    """MaxBoxAccV2 at CAM thresholds chosen on another split (``threshold_source``)."""

    images: int
    iou_thresholds: list[float]
    accuracy: list[float | None]
    threshold: list[float]
    maxboxacc_v2: float | None
    protocol: str
    threshold_source: str


class PxAPFigures(TypedDict):
    """PxAP and the pixel counts behind it (`pxap.PxAP.summary`); a model run also counts the
    images that gave no map."""

    pxap: float
    images: int
    threshold_interval: float
    foreground_pixels: int
    background_pixels: int
    failed_images: NotRequired[int]


class LocErrors(TypedDict):
    top1_loc_error: float | None
    top5_loc_error: float | None


class SecondBoxFigures(TypedDict):
    """Box 2, either box, and the released bboxCombine (`second_box`)."""

    box2: LocErrors
    either_box: LocErrors
    released_combination: LocErrors


class FaithfulnessFigures(TypedDict):
    """Means over the images of each one's top-1 map (`cam.faithfulness`, torchcam 0.5's
    metrics): Average Drop and Deletion AUC lower is better, Increase in Confidence and
    Insertion AUC higher; ``steps`` of the curves and their ``baseline`` image."""

    average_drop: float
    increase_in_confidence: float
    deletion_auc: float
    insertion_auc: float
    images: int
    failed_images: int
    steps: int
    baseline: str
    classes: str


@dataclass
class Report:
    """Every figure of one evaluation. ``images``: those scored (failed ones included, as
    wrong); ``settings``: what was evaluated and how (paths absolute), its ``mode`` one of
    ``model``, ``predictions``, ``scoremaps``. The sections: ``localization`` (a model run or
    records), ``second_box`` (``boxes=2``), ``maxboxacc_v2`` and ``maxboxacc_v2_carried``,
    ``pxap`` (masks); ``gt_known_available``: a model run, which alone gives GT-known error;
    ``resumed_images``: read back from a per-image file."""

    images: int
    failed_images: int
    failed: list[FailedImage]
    missing: MissingCounts
    settings: dict[str, Any] = field(default_factory=dict)
    localization: LocalizationFigures | None = None
    second_box: SecondBoxFigures | None = None
    maxboxacc_v2: MaxBoxAccFigures | None = None
    maxboxacc_v2_carried: CarriedMaxBoxAccFigures | None = None
    pxap: PxAPFigures | None = None
    gt_known_available: bool = False
    resumed_images: int = 0
    faithfulness: FaithfulnessFigures | None = None

    @property
    def mode(self) -> str | None:
        return self.settings.get("mode")

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data, keys in the order of earlier reports: with the ILSVRC
        figures, every section in one order (``maxboxacc_v2`` null when not asked for); for
        score maps, the sections there are."""
        head: dict[str, Any] = {
            "images": self.images,
            "failed_images": self.failed_images,
            "failed": self.failed,
        }
        if self.localization is None:
            sections = {"maxboxacc_v2": self.maxboxacc_v2, "pxap": self.pxap}
            tail = {"maxboxacc_v2_carried": self.maxboxacc_v2_carried}
            return {
                **head,
                **{key: value for key, value in sections.items() if value is not None},
                "missing": self.missing,
                "settings": self.settings,
                **{key: value for key, value in tail.items() if value is not None},
            }
        extra = {"second_box": self.second_box, "maxboxacc_v2_carried": self.maxboxacc_v2_carried}
        return {
            **head,
            **self.localization,
            **{key: value for key, value in extra.items() if value is not None},
            "maxboxacc_v2": self.maxboxacc_v2,
            "gt_known_available": self.gt_known_available,
            "missing": self.missing,
            "resumed_images": self.resumed_images,
            "settings": self.settings,
            **({} if self.pxap is None else {"pxap": self.pxap}),
            **({} if self.faithfulness is None else {"faithfulness": self.faithfulness}),
        }


def report_from_json(data: Mapping[str, Any]) -> Report:
    """The `Report` a `json_report` file holds (`Report.to_json` read back): for what renders a
    finished evaluation's figures from its file, as the table does. A section or count the
    data lacks is left out (None, zero)."""
    localization = None
    if "top1_loc_error" in data:
        keys = LocalizationFigures.__annotations__
        localization = LocalizationFigures(**{k: data[k] for k in keys if k in data})  # type: ignore[typeddict-item]
    missing = MissingCounts(
        images_without_annotation=0,
        annotations_without_image=0,
        left_out=0,
        images_without_annotation_list=[],
        annotations_without_image_list=[],
    )
    return Report(
        images=data.get("images", 0),
        failed_images=data.get("failed_images", 0),
        failed=data.get("failed", []),
        missing=data.get("missing", missing),
        settings=data.get("settings", {}),
        localization=localization,
        second_box=data.get("second_box"),
        maxboxacc_v2=data.get("maxboxacc_v2"),
        maxboxacc_v2_carried=data.get("maxboxacc_v2_carried"),
        pxap=data.get("pxap"),
        gt_known_available=data.get("gt_known_available", False),
        resumed_images=data.get("resumed_images", 0),
        faithfulness=data.get("faithfulness"),
    )


def printable_report(report: Report) -> Report:
    """The report as it is shown and written: names that are not UTF-8 escaped
    (`files.checks.printable`), no NaN (null)."""
    return Report(
        **{f.name: strict_json(printable(getattr(report, f.name))) for f in fields(report)}
    )


def json_text(report: Report) -> str:
    """The JSON report's text (`printable_report`), as ``json_report`` is written."""
    data = printable_report(report).to_json()
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
