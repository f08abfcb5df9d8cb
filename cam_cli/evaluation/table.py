"""The evaluation report as a table for people (`format_report`): errors in percent with 2
decimals and the baselines, then MaxBoxAccV2, PxAP and the second box, each figure as the
`report.Report` holds it (the JSON report has the same figures, unrounded)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cam_cli.boxes.geometry import IOU_THRESHOLD
from cam_cli.evaluation.report import Report, printable_report

GT_KNOWN_NEEDS_MODEL = "n/a (needs a model)"
FAILED_SHOWN = 10


def format_report(report: Report, failed_shown: int = FAILED_SHOWN) -> str:
    """The table for people: what was evaluated, the figures (`format_table`), then what was
    left out and which images failed (names as `report.printable_report` writes them). Options
    are named in backticks, as in messages (the command line names its flags instead)."""
    report = printable_report(report)
    settings = report.settings
    lines = [_describe_source(settings)]
    if report.localization is None:  # score maps: MaxBoxAccV2 or PxAP alone
        table = f"{report.images} images, {report.failed_images} failed"
        if report.maxboxacc_v2:  # box ground truth (masks give PxAP alone, below)
            table += "\n" + "\n".join(
                format_maxboxacc(report.maxboxacc_v2, report.maxboxacc_v2_carried)
            )
    else:
        summary: dict[str, Any] = {
            "images": report.images,
            "failed_images": report.failed_images,
            **report.localization,
            "maxboxacc_v2_carried": report.maxboxacc_v2_carried,
        }
        note = None if report.gt_known_available else GT_KNOWN_NEEDS_MODEL
        table = format_table(summary, report.maxboxacc_v2, gt_known_note=note)
    lines.append(table)
    if report.pxap:
        lines.append(format_pxap(report.pxap))
    if report.faithfulness:
        lines.append(format_faithfulness(report.faithfulness))
    if report.second_box:
        lines.append(format_second_box(report.second_box))
    count = None if report.localization is None else report.localization["min_predictions"]
    if count is not None and count < 5:
        lines.append(
            f"note: some images have only {count} prediction(s); top-5 figures need "
            "`cam-cli bbox `topk` 5`"
        )
    lines += _left_out_and_failed(report, failed_shown)
    return "\n".join(lines)


def _left_out_and_failed(report: Report, failed_shown: int) -> list[str]:
    lines = []
    missing = report.missing
    if missing["left_out"]:
        word = {"predictions": "prediction records", "scoremaps": "score maps"}.get(
            report.mode or "", "images"
        )
        kind = {"prediction records": "record", "score maps": "score map"}.get(word, "image")
        lines.append(
            f"left out (`allow_missing`): {missing['images_without_annotation']} {word} without "
            f"annotation, {missing['annotations_without_image']} annotations without {kind}; "
            "figures are over the matched images only"
        )
    if report.resumed_images:
        lines.append(f"resumed: {report.resumed_images} images read back from `per_image`")
    if report.failed_images:
        lines.append(f"{report.failed_images} images failed (counted as wrong):")
        lines += [f"  {item['path']}: {item['error']}" for item in report.failed[:failed_shown]]
        if report.failed_images > failed_shown:
            lines.append(
                f"  ... and {report.failed_images - failed_shown} more (see `json_report`)"
            )
    return lines


def _describe_source(settings: Mapping[str, Any]) -> str:
    if settings.get("mode") == "predictions":
        head = f"predictions: {settings.get('predictions', '(records given in Python)')}"
    elif settings.get("mode") == "scoremaps":
        head = f"score maps: {settings.get('scoremaps', '(given in Python)')}"
    else:
        source = settings.get("checkpoint") or settings.get("weights") or "untrained"
        head = (
            f"model: {settings.get('arch')} ({source}), input {settings.get('input_size')}, "
            f"{settings.get('preprocessing')} preprocessing, CAM threshold "
            f"{settings.get('threshold')}{', `fast`' if settings.get('fast') else ''}"
        )
        if settings.get("class_predictions"):
            head += f", classes from {settings['class_predictions']}"
        if settings.get("box_rule") or settings.get("ten_crop"):
            rule = settings.get("box_rule", "paper")
            head += f", box rule {rule}{', ten-crop' if settings.get('ten_crop') else ''}"
        if settings.get("method"):  # the paper's CAM says nothing
            head += f", maps by {settings['method']} at layer {settings.get('layer')}"
    truth = settings.get("cub") or settings.get("annotations") or settings.get("wsol_metadata")
    return f"{head}\nground truth: {truth}" if truth else head


def table_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(
    summary: Mapping, maxboxacc: Mapping | None = None, gt_known_note: str | None = None
) -> str:
    """A plain-text table for people: errors in percent, 2 decimals, with the baselines.

    ``maxboxacc`` (a `MaxBoxAccV2.summary`) may also be given as ``summary["maxboxacc_v2"]``.
    ``gt_known_note``: said in place of the GT-known figures (a run that cannot give them).
    """
    maxboxacc = maxboxacc if maxboxacc is not None else summary.get("maxboxacc_v2")
    baselines = summary.get("baselines", {})
    whole = baselines.get("whole_image", {})
    median = baselines.get("centered_median_box", {})
    rows = [
        ("classification error", summary.get("top1_cls_error"), summary.get("top5_cls_error")),
        ("localization error", summary.get("top1_loc_error"), summary.get("top5_loc_error")),
        ("  baseline: whole-image box", whole.get("top1_loc_error"), whole.get("top5_loc_error")),
        (
            "  baseline: centred median-size box",
            median.get("top1_loc_error"),
            median.get("top5_loc_error"),
        ),
        ("GT-known localization error", summary.get("gt_known_loc_error"), None),
    ]
    if whole.get("gt_known_loc_error") is not None:  # the baselines' GT-known error, to compare
        rows += [
            ("  baseline: whole-image box", whole.get("gt_known_loc_error"), None),
            ("  baseline: centred median-size box", median.get("gt_known_loc_error"), None),
        ]
    width = max(len(name) for name, _, _ in rows)
    lines = [
        f"{summary.get('images', 0)} images, {summary.get('failed_images', 0)} failed; "
        f"box correct at IoU >= {summary.get('iou_threshold', IOU_THRESHOLD)}; "
        "errors in %, lower is better",
        f"{'':<{width}}  {'top-1':>7}  {'top-5':>7}",
    ]
    for name, top1, top5 in rows:
        if gt_known_note is not None and name == "GT-known localization error":
            lines.append(f"{name:<{width}}  {gt_known_note}")
        else:
            lines.append(f"{name:<{width}}  {table_cell(top1):>7}  {table_cell(top5):>7}")
    if median.get("relative_size"):
        rel_w, rel_h = median["relative_size"]
        lines.append(f"(median-size box: {100 * rel_w:.1f}% x {100 * rel_h:.1f}% of the image)")
    if maxboxacc:
        lines += format_maxboxacc(maxboxacc, summary.get("maxboxacc_v2_carried"))
    return "\n".join(lines)


def format_maxboxacc(maxboxacc: Mapping, carried: Mapping | None = None) -> list[str]:
    """The MaxBoxAccV2 lines of the table: the figure, then each IoU level's accuracy and the
    CAM threshold it used; with ``carried`` (`MaxBoxAccV2.summary_at`), the figure at the
    thresholds chosen elsewhere, and where they came from."""
    protocol = maxboxacc.get("protocol", "wsol")
    named = "" if protocol == "wsol" else f", protocol {protocol}"
    lines = [
        f"MaxBoxAccV2 ({maxboxacc.get('images', 0)} images; accuracy in %, higher is better"
        f"{named}): {table_cell(maxboxacc.get('maxboxacc_v2'))}"
    ]
    for level, accuracy, threshold in zip(
        maxboxacc["iou_thresholds"], maxboxacc["accuracy"], maxboxacc["best_threshold"], strict=True
    ):
        at = "" if threshold is None else f" at CAM threshold {threshold:.2f}"
        lines.append(f"  IoU >= {level:.1f}: {table_cell(accuracy)}{at}")
    if carried:
        lines.append(
            f"MaxBoxAccV2 at CAM thresholds from {carried['threshold_source']}: "
            f"{table_cell(carried.get('maxboxacc_v2'))}"
        )
        for level, accuracy, threshold in zip(
            carried["iou_thresholds"], carried["accuracy"], carried["threshold"], strict=True
        ):
            at = f" at CAM threshold {threshold:.2f}"
            lines.append(f"  IoU >= {level:.1f}: {table_cell(accuracy)}{at}")
    return lines


def format_faithfulness(figures: Mapping[str, Any]) -> str:
    """The faithfulness line (torchcam's figures as fractions, shown in %)."""
    return (
        f"faithfulness ({figures['images']} images, top-1 maps; deletion/insertion in "
        f"{figures['steps']} steps from a {figures['baseline']} baseline): "
        f"Average Drop {100 * figures['average_drop']:.2f} (lower is better), Increase in "
        f"Confidence {100 * figures['increase_in_confidence']:.2f}, Deletion AUC "
        f"{100 * figures['deletion_auc']:.2f} (lower is better), Insertion AUC "
        f"{100 * figures['insertion_auc']:.2f}"
    )


def format_pxap(summary: Mapping[str, Any]) -> str:
    """The PxAP line, in the style of the MaxBoxAccV2 line."""
    return (
        f"PxAP ({summary['images']} images, masks; threshold interval "
        f"{summary['threshold_interval']:g}; higher is better): {summary['pxap']:.2f}"
    )


def format_second_box(summary: Mapping[str, Any]) -> str:
    """The three extra rows of `boxes=2`, aligned with `format_table`'s."""
    rows = [
        ("localization error, box 2", summary["box2"]),
        ("localization error, box 1 or box 2", summary["either_box"]),
        ("released bboxCombine (5 guesses)", summary["released_combination"]),
    ]
    width = len("  baseline: centred median-size box")
    return "\n".join(
        f"{name:<{width}}  {table_cell(s['top1_loc_error']):>7}  "
        f"{table_cell(s['top5_loc_error']):>7}"
        for name, s in rows
    )
