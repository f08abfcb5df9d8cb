"""The evaluation report as a table for people (the JSON report is the dict itself)."""

from __future__ import annotations

from collections.abc import Mapping

from cam_cli.evaluation.table import format_maxboxacc, format_table

GT_KNOWN_NEEDS_MODEL = "n/a (needs a model)"


def format_report(report: Mapping, failed_shown: int = 10) -> str:
    """The table for people: what was evaluated, the figures (`metrics.format_table`), then
    what was left out and which images failed."""
    settings = report.get("settings", {})
    lines = [_describe_source(settings)]
    if settings.get("mode") == "scoremaps":  # MaxBoxAccV2 alone: no classes, no boxes
        table = f"{report.get('images', 0)} images, {report.get('failed_images', 0)} failed"
        if report.get("maxboxacc_v2"):  # box ground truth (masks give PxAP alone, below)
            table += "\n" + "\n".join(
                format_maxboxacc(report["maxboxacc_v2"], report.get("maxboxacc_v2_carried"))
            )
    else:
        available = report.get("gt_known_available", True)
        note = None if available else GT_KNOWN_NEEDS_MODEL
        table = format_table(report, report.get("maxboxacc_v2"), gt_known_note=note)
    lines.append(table)
    if report.get("pxap"):
        from cam_cli.evaluation.pxap import format_pxap

        lines.append(format_pxap(report["pxap"]))
    if report.get("second_box"):
        from cam_cli.evaluation.second_box import format_second_box

        lines.append(format_second_box(report["second_box"]))
    count = report.get("min_predictions")
    if count is not None and count < 5:
        lines.append(
            f"note: some images have only {count} prediction(s); top-5 figures need "
            "`cam-cli bbox --topk 5`"
        )
    missing = report.get("missing") or {}
    if missing.get("left_out"):
        word = {"predictions": "prediction records", "scoremaps": "score maps"}.get(
            settings.get("mode"), "images"
        )
        kind = {"prediction records": "record", "score maps": "score map"}.get(word, "image")
        lines.append(
            f"left out (--allow-missing): {missing['images_without_annotation']} {word} without "
            f"annotation, {missing['annotations_without_image']} annotations without {kind}; "
            "figures are over the matched images only"
        )
    if report.get("resumed_images"):
        lines.append(f"resumed: {report['resumed_images']} images read back from --per-image")
    failed = report.get("failed") or []
    if report.get("failed_images"):
        lines.append(f"{report['failed_images']} images failed (counted as wrong):")
        lines += [f"  {item['path']}: {item['error']}" for item in failed[:failed_shown]]
        if report["failed_images"] > failed_shown:
            lines.append(f"  ... and {report['failed_images'] - failed_shown} more (see --json)")
    return "\n".join(lines)


def _describe_source(settings: Mapping) -> str:
    if settings.get("mode") == "predictions":
        head = f"predictions: {settings.get('predictions', '(records given in Python)')}"
    elif settings.get("mode") == "scoremaps":
        head = f"score maps: {settings.get('scoremaps', '(given in Python)')}"
    else:
        source = settings.get("checkpoint") or settings.get("weights") or "untrained"
        head = (
            f"model: {settings.get('arch')} ({source}), input {settings.get('input_size')}, "
            f"{settings.get('preprocessing')} preprocessing, CAM threshold "
            f"{settings.get('threshold')}{', --fast' if settings.get('fast') else ''}"
        )
        if settings.get("class_predictions"):
            head += f", classes from {settings['class_predictions']}"
        if settings.get("box_rule") or settings.get("ten_crop"):
            rule = settings.get("box_rule", "paper")
            head += f", box rule {rule}{', ten-crop' if settings.get('ten_crop') else ''}"
    truth = settings.get("cub") or settings.get("annotations") or settings.get("wsol_metadata")
    return f"{head}\nground truth: {truth}" if truth else head
