"""`eval`'s `report`: one HTML page of an evaluation (docs/report.md says what each part shows).

The figures are the run's, printed by the text table's own functions (`table.table_cell`,
`table.format_report`, `table.format_maxboxacc`, `table.format_pxap`); the curves are the
numbers the run kept; the failure categories come from `failures.categorize`. Galleries show at
most ``gallery_cap`` images each, worst first, so the page's size does not grow with the data
set: `gallery_selection` says which images, so a run keeps (or recomputes) only their CAMs.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cam_cli.boxes.geometry import IOU_THRESHOLD
from cam_cli.evaluation.report import report_from_json
from cam_cli.evaluation.table import format_maxboxacc, format_pxap, format_report, table_cell
from cam_cli.files.atomic import write_text_atomic
from cam_cli.report import plots
from cam_cli.report.failures import CATEGORIES, RULES, Category, Top1, categorize, top1_outcome
from cam_cli.report.html import (
    Cell,
    Column,
    Tile,
    box_legend,
    data_table,
    esc,
    figure_cards,
    gallery,
    page,
    run_section,
    score_text,
    share_bar,
)
from cam_cli.report.inputs import EvalReportInput, ImageRow, ReportOptions
from cam_cli.report.pictures import (
    GT_COLOUR,
    PREDICTED_COLOUR,
    DrawnBox,
    PictureRequest,
    render_pictures,
)

WRONG_CLASS = "wrong class"  # the gallery of top-1 mistakes of class
CARDS = {  # key in the report -> label; a card shows when its figure is there
    "top1_loc_error": "top-1 localization error (%)",
    "top5_loc_error": "top-5 localization error (%)",
    "gt_known_loc_error": "GT-known localization error (%)",
    "top1_cls_error": "top-1 classification error (%)",
    "maxboxacc_v2": "MaxBoxAccV2 (%, higher is better)",
    "pxap": "PxAP (%, higher is better)",
}


def report_outputs(path: str | Path) -> list[Path]:
    """Every file a report at ``path`` writes (its pictures are inside it): what the caller
    checks against the run's inputs before any work."""
    return [Path(path)]


def row_categories(rows: Sequence[ImageRow]) -> dict[str, Category]:
    """The failure category of every image that has a GT-known box and ground-truth boxes,
    by image id (`failures.categorize`, all images at once)."""
    scored = [r for r in rows if r.error is None and r.gt_known_box is not None and r.gt_boxes]
    if not scored:
        return {}
    boxes = np.array([r.gt_known_box for r in scored], dtype=np.int64)
    gt = np.array([b for r in scored for b in r.gt_boxes], dtype=np.int64)
    owner = np.repeat(np.arange(len(scored)), [len(r.gt_boxes) for r in scored])
    return {r.image_id: c for r, c in zip(scored, categorize(boxes, gt, owner), strict=True)}


def gallery_selection(
    rows: Sequence[ImageRow],
    options: ReportOptions,
    categories: Mapping[str, Category] | None = None,
) -> dict[str, list[ImageRow]]:
    """Which images each gallery shows, worst first: per failure category the lowest GT-known
    IoUs (the borderline ones for "correct"), and for top-1 class mistakes the most confident
    ones. At most ``options.gallery_cap`` each. A run calls this to know which CAMs to keep.
    ``categories``: `row_categories` of the rows, when already known."""
    categories = row_categories(rows) if categories is None else categories
    members: dict[Category, list[ImageRow]] = {c: [] for c in CATEGORIES}
    for row in rows:
        category = categories.get(row.image_id)
        if category is not None:
            members[category].append(row)
    chosen: dict[str, list[ImageRow]] = {}
    for category, group in members.items():
        worst = heapq.nsmallest(
            options.gallery_cap, group, key=lambda r: (r.gt_known_iou or 0.0, r.image_id)
        )
        chosen[category.value] = worst
    wrong = [r for r in rows if top1_outcome(r) == Top1.wrong_class]
    chosen[WRONG_CLASS] = heapq.nsmallest(
        options.gallery_cap, wrong, key=lambda r: (-(r.top1.score if r.top1 else 0.0), r.image_id)
    )
    return chosen


def _class_name(label: str | None, name: str | None) -> str:
    if label is None:
        return "-"
    return f"{name} ({label})" if name and name != label else label


def _iou(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _tile_request(row: ImageRow, wrong_class: bool) -> PictureRequest | None:
    if row.path is None:
        return None
    gt = tuple(DrawnBox(box, GT_COLOUR, dashed=True) for box in row.gt_boxes)
    box = row.top1.box if wrong_class and row.top1 else row.gt_known_box
    cam = row.top1_cam if wrong_class else row.true_cam
    drawn = gt + ((DrawnBox(box, PREDICTED_COLOUR),) if box is not None else ())
    size = (row.width, row.height) if row.width and row.height else None
    return PictureRequest(row.path, size, cam, drawn)


def _caption(row: ImageRow, category: str, wrong_class: bool) -> list[str]:
    top1 = row.top1
    truth = esc(_class_name(row.true_label, row.true_name))
    if wrong_class and top1 is not None:
        lines = [
            f"top-1 <b>{esc(_class_name(top1.label, top1.name))}</b> {esc(score_text(top1.score))}",
            f"true: {truth}; its box IoU <b>{_iou(row.top1_iou)}</b>",
        ]
    else:
        lines = [f"<b>IoU {_iou(row.gt_known_iou)}</b> · {esc(category)}", f"true: {truth}"]
        if top1 is not None:
            mark = "right" if row.top1_cls_correct else "wrong"
            top = esc(_class_name(top1.label, top1.name))
            lines.append(f"top-1: {top} {esc(score_text(top1.score))} ({mark})")
    lines.append(f'<span class="id">{esc(row.image_id)}</span>')
    return lines


def _wording(options: ReportOptions) -> Callable[[str], str]:
    """How the page words the table's lines (`ReportOptions.describe`)."""
    return options.describe or (lambda text: text)


def _figures_section(data: EvalReportInput, options: ReportOptions) -> str:
    figures = data.figures
    cards = {key: (CARDS[key], value) for key, value in figures_of(figures).items()}
    table = _wording(options)(format_report(report_from_json(dict(figures))))
    return (
        figure_cards(cards)
        + '<p class="note">The table exactly as <code>cam-cli eval</code> prints it (the same '
        "numbers as its JSON, baselines included):</p>"
        + f'<pre class="table" id="figures-table">{esc(table)}</pre>'
    )


def _curves_section(data: EvalReportInput, options: ReportOptions) -> str:
    parts, say = [], _wording(options)
    if data.maxboxacc is not None:
        summary = data.maxboxacc.summary
        lines = [say(line) for line in format_maxboxacc(summary)]
        labels = lines[1 : 1 + len(summary["iou_thresholds"])]
        best = list(zip(summary["best_threshold"], summary["accuracy"], strict=True))
        parts.append(
            '<p class="note">Box accuracy at each CAM threshold (every box of the map, as '
            "MaxBoxAccV2 counts), one line per IoU level; the marker is the best threshold. "
            f"{esc(lines[0])}</p>"
            + plots.maxboxacc_plot(
                np.asarray(data.maxboxacc.thresholds),
                np.asarray(data.maxboxacc.accuracy),
                summary["iou_thresholds"],
                best,
                [label.strip() for label in labels],
            )
        )
    if data.pxap is not None:
        label = say(format_pxap(data.pxap.summary))
        parts.append(
            '<p class="note" id="pxap-curve">Precision against recall over the masks\' pixels, '
            "the CAM threshold falling from the top (the pixels of every image counted "
            f"together); PxAP is the area under it. {esc(label)}</p>"
            + plots.precision_recall_plot(
                np.asarray(data.pxap.precision),
                np.asarray(data.pxap.recall),
                f"PxAP {table_cell(data.pxap.summary['pxap'])} (area under the curve, %)",
            )
        )
    return "".join(parts)


def _iou_section(rows: Sequence[ImageRow]) -> str:
    series = {}
    top1 = [r.top1_iou for r in rows if r.error is None and r.top1_iou is not None]
    known = [r.gt_known_iou for r in rows if r.error is None and r.gt_known_iou is not None]
    if top1:
        series["top-1 box"] = np.asarray(top1)
    if known:
        series["GT-known box (true class)"] = np.asarray(known)
    if not series:
        return ""
    failed = sum(r.error is not None for r in rows)
    note = f" {failed} failed images have no box and are not counted here." if failed else ""
    return (
        '<p class="note">Each box\'s IoU with the ground-truth box it matches best (any '
        f"class), in bins of 0.05.{esc(note)}</p>" + plots.iou_histogram(series, IOU_THRESHOLD)
    )


def _categories_section(rows: Sequence[ImageRow], categories: Mapping[str, Category]) -> str:
    if not categories:
        return (
            '<p class="note">Failure categories need the true class\'s box (GT-known), which '
            "only a model run gives.</p>"
        )
    total = len(categories)
    counts = {c: 0 for c in CATEGORIES}
    for category in categories.values():
        counts[category] += 1
    table_rows = []
    for category in CATEGORIES:
        share = counts[category] / total
        link = f'<a href="#g-{_slug(category.value)}">{esc(category.value)}</a>'
        table_rows.append([
            (link, category.value),
            (esc(RULES[category]), RULES[category]),
            (str(counts[category]), counts[category]),
            (f"{table_cell(100 * share)} {share_bar(share)}", share),
        ])  # fmt: skip
    outcomes = {o: 0 for o in Top1}
    for row in rows:
        outcomes[top1_outcome(row)] += 1
    top_rows = [[(esc(o.value), o.value), (str(n), n), (table_cell(100 * n / len(rows)), n)]
                for o, n in outcomes.items() if n or o != Top1.failed]  # fmt: skip
    return (
        f"<p class=\"note\">The box of the true class's CAM (GT-known) against all of the image's "
        f"ground-truth boxes, {total} images. Each image takes the first rule that holds, in "
        "this order (docs/report.md states them exactly).</p>"
        + data_table(
            [
                Column("category", False),
                Column("rule", False),
                Column("images"),
                Column("share (%)"),
            ],
            table_rows,
        )  # fmt: skip
        + "<h3>Top-1 prediction</h3>"
        + data_table(
            [Column("top-1 outcome", False), Column("images"), Column("share (%)")], top_rows
        )  # fmt: skip
    )


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower())


def _galleries_section(
    rows: Sequence[ImageRow], options: ReportOptions, categories: Mapping[str, Category]
) -> str:
    chosen = gallery_selection(rows, options, categories)
    if not categories and not chosen[WRONG_CLASS]:
        return ""
    totals: dict[str, int] = defaultdict(int)
    for category in categories.values():
        totals[category.value] += 1
    totals[WRONG_CLASS] = sum(top1_outcome(r) == Top1.wrong_class for r in rows)
    order = [c.value for c in CATEGORIES if c != Category.correct] + [WRONG_CLASS, "correct"]
    requests, owners = [], []
    for key in order:
        for row in chosen[key]:
            requests.append(_tile_request(row, key == WRONG_CLASS))
            owners.append((key, row))
    made = iter(render_pictures([r for r in requests if r is not None], options))
    pictures = [next(made) if r is not None else "no image path" for r in requests]
    tiles: dict[str, list[Tile]] = defaultdict(list)
    for (key, row), picture in zip(owners, pictures, strict=True):
        alt = f"{row.image_id}: {key}"
        tiles[key].append(Tile(picture, _caption(row, key, key == WRONG_CLASS), alt))
    parts = [
        box_legend(),
        f'<p class="note">At most {options.gallery_cap} images per gallery, worst first (lowest '
        "GT-known IoU; for wrong classes, the most confident). Click a picture for its full "
        f"size (longest side up to {options.picture_side} px; smaller images enlarged by a "
        "whole factor, pixels kept crisp).</p>",
    ]
    for key in order:
        shown = len(chosen[key])
        what = (
            "top-1 class wrong; top-1 box and top-1 class's CAM"
            if key == WRONG_CLASS
            else "GT-known box and the true class's CAM"
        )
        if not shown:
            parts.append(f'<h3 id="g-{_slug(key)}">{esc(key)}: none</h3>')
            continue
        parts.append(
            f"<h3>{esc(key)}: {shown} of {totals[key]} shown</h3>"
            f'<p class="note">{esc(what)}.</p>' + gallery(f"g-{_slug(key)}", tiles[key])
        )
    return "".join(parts)


@dataclass
class ClassCounts:
    name: str | None = None
    images: int = 0
    cls_correct: int = 0
    loc_correct: int = 0
    known_scored: int = 0
    known_correct: int = 0
    iou_sum: float = 0.0
    iou_count: int = 0


def class_rows(rows: Sequence[ImageRow]) -> dict[str, ClassCounts]:
    """Counts per true class from the run's own per-image verdicts (a failed image counts
    as wrong, as in the table)."""
    by_class: dict[str, ClassCounts] = defaultdict(ClassCounts)
    for row in rows:
        counts = by_class[row.true_label or "-"]
        counts.name = counts.name or row.true_name
        counts.images += 1
        counts.cls_correct += row.top1_cls_correct
        counts.loc_correct += row.top1_loc_correct
        if row.gt_known_correct is not None or row.error is not None:
            counts.known_scored += 1
            counts.known_correct += bool(row.gt_known_correct)
        if row.gt_known_iou is not None and row.error is None:
            counts.iou_sum += row.gt_known_iou
            counts.iou_count += 1
    return dict(by_class)


def _error(correct: int, total: int) -> float | None:
    return None if total == 0 else 100.0 * (total - correct) / total


def _class_section(rows: Sequence[ImageRow]) -> str:
    by_class = class_rows(rows)
    if not by_class:
        return ""
    table = []
    for label, c in by_class.items():
        loc, cls = _error(c.loc_correct, c.images), _error(c.cls_correct, c.images)
        known = _error(c.known_correct, c.known_scored)
        mean_iou = c.iou_sum / c.iou_count if c.iou_count else None
        table.append((label, c, loc, cls, known, mean_iou))
    table.sort(key=lambda t: (-(t[2] or 0), -(t[4] or 0), -t[1].images, t[0]))
    body: list[list[Cell]] = [
        [
            (esc(_class_name(label, c.name)), label),
            (str(c.images), c.images),
            (table_cell(loc), loc),
            (table_cell(cls), cls),
            (table_cell(known), known),
            (_iou(mean_iou), mean_iou),
        ]
        for label, c, loc, cls, known, mean_iou in table
    ]
    columns = [Column("true class", False), Column("images"), Column("top-1 loc. error (%)"),
               Column("top-1 cls. error (%)"), Column("GT-known error (%)"),
               Column("mean GT-known IoU")]  # fmt: skip
    return (
        f'<p class="note">{len(by_class)} classes, worst top-1 localization error first '
        "(click a heading to sort by it). Errors in %, from the run's per-image verdicts.</p>"
        + data_table(columns, body)
    )


def _failed_section(rows: Sequence[ImageRow], shown: int = 50) -> str:
    failed = [r for r in rows if r.error is not None]
    if not failed:
        return ""
    items = "".join(
        f"<li><code>{esc(r.path or r.image_id)}</code>: {esc(r.error)}</li>" for r in failed[:shown]
    )
    more = (
        f"<p>... and {len(failed) - shown} more (see the JSON).</p>" if len(failed) > shown else ""
    )
    return f"<p>{len(failed)} images failed (counted as wrong):</p><ul>{items}</ul>{more}"


def eval_report_html(data: EvalReportInput, options: ReportOptions | None = None) -> str:
    """The whole page, as text."""
    options = options or ReportOptions()
    plots.require_matplotlib()
    rows = list(data.rows)
    categories = row_categories(rows)
    images = data.figures.get("images", len(rows))
    sections = [
        ("run", "What was run", run_section(data.run)),
        ("figures", "Figures", _figures_section(data, options)),
        ("curves", "Curves", _curves_section(data, options)),
        ("iou", "IoU distribution", _iou_section(rows)),
        ("categories", "Failure categories", _categories_section(rows, categories)),
        ("galleries", "Galleries", _galleries_section(rows, options, categories)),
        ("classes", "Per class", _class_section(rows)),
        ("failed", "Failed images", _failed_section(rows)),
    ]
    subtitle = f"{images} images · started {data.run.started} · cam-cli {data.run.version}"
    return page("cam-cli eval report", subtitle, [s for s in sections if s[2]])


def write_eval_report(
    data: EvalReportInput, path: str | Path, options: ReportOptions | None = None
) -> list[Path]:
    """Write the page to ``path`` atomically; returns the files written (`report_outputs`).
    The caller has checked that none of them is an input."""
    write_text_atomic(eval_report_html(data, options), path)
    return report_outputs(path)


def figures_of(report: Mapping) -> dict[str, str]:
    """The headline figures as the page shows them, by key (what a test compares with the
    page's DOM): the table's formatting of the JSON's numbers."""
    shown = {key: table_cell(report.get(key)) for key in list(CARDS)[:4] if key in report}
    for key in ("maxboxacc_v2", "pxap"):  # each a summary holding its figure under its name
        if report.get(key):
            shown[key] = table_cell(report[key].get(key))
    return shown
