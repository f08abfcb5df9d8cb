"""The evaluation report as a table for people: errors in percent with 2 decimals, the
baselines, MaxBoxAccV2, PxAP and the second box, each figure as the report holds it (the JSON
report is the same figures, unrounded)."""

from __future__ import annotations

from collections.abc import Mapping

from cam_cli.boxes.geometry import IOU_THRESHOLD


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
