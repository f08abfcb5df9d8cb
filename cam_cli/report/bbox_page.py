"""`bbox`'s `report`: one HTML page of a `cam-cli bbox` run: what was run, the histogram of top-1
classes over every image, and a gallery of at most ``bbox_cap`` images, highest top-1 score
first, each with its top-1 CAM and its top-k boxes (`bbox_selection` says which, so a run keeps
only those images' CAMs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cam_cli.files.atomic import write_text_atomic
from cam_cli.report import plots
from cam_cli.report.html import (
    Cell,
    Column,
    Tile,
    box_legend,
    data_table,
    esc,
    gallery,
    page,
    run_section,
    score_text,
    swatch,
)
from cam_cli.report.inputs import BboxImage, BboxReportInput, ReportOptions
from cam_cli.report.pictures import RANK_COLOURS, DrawnBox, PictureRequest, render_pictures

HISTOGRAM_CLASSES = 30  # bars in the class histogram; the table below lists every class


def report_outputs(path: str | Path) -> list[Path]:
    """Every file a report at ``path`` writes (its pictures are inside it)."""
    return [Path(path)]


def bbox_selection(images: Sequence[BboxImage], options: ReportOptions) -> list[BboxImage]:
    """The gallery's images: those with predictions, highest top-1 score first (ties by path),
    at most ``options.bbox_cap``."""
    good = [image for image in images if image.error is None and image.predictions]
    good.sort(key=lambda image: (-image.predictions[0].score, image.path))
    return good[: options.bbox_cap]


def _rank_colour(rank: int) -> str:
    return RANK_COLOURS[(rank - 1) % len(RANK_COLOURS)]


def _request(image: BboxImage) -> PictureRequest:
    ranked = sorted(image.predictions, key=lambda p: -p.rank)  # rank 1 drawn last, on top
    boxes = tuple(DrawnBox(p.box, _rank_colour(p.rank)) for p in ranked if p.box is not None)
    size = (image.width, image.height) if image.width and image.height else None
    return PictureRequest(image.path, size, image.cam, boxes)


def _caption(image: BboxImage) -> list[str]:
    lines = [
        f"{swatch(_rank_colour(p.rank))}{p.rank}. <b>{esc(p.name or p.label)}</b> "
        f"{esc(score_text(p.score))}"
        for p in sorted(image.predictions, key=lambda p: p.rank)
    ]
    return [
        *lines,
        f'<span class="id" title="{esc(image.path)}">{esc(Path(image.path).name)}</span>',
    ]


def _classes_section(data: BboxReportInput) -> str:
    if not data.class_counts:
        return ""
    ranked = sorted(data.class_counts.items(), key=lambda item: (-item[1], item[0][0]))
    top = ranked[:HISTOGRAM_CLASSES]
    labels = [name or label for (label, name), _ in top]
    good = sum(data.class_counts.values())
    plot = plots.class_histogram(labels, [count for _, count in top], good)
    rows: list[list[Cell]] = [
        [(esc(name or label), name or label), (esc(label), label), (str(count), count),
         (f"{100 * count / good:.2f}", count / good)]
        for (label, name), count in ranked
    ]  # fmt: skip
    return (
        f'<p class="note">The top-1 class of each of the {good} images with predictions; '
        f"the {len(top)} most frequent of {len(ranked)} classes drawn, all listed below.</p>"
        + plot
        + data_table(
            [Column("class", False), Column("label", False), Column("images"), Column("share (%)")],
            rows,
        )  # fmt: skip
    )


def _gallery_section(data: BboxReportInput, options: ReportOptions) -> str:
    chosen = bbox_selection(data.images, options)
    if not chosen:
        return '<p class="note">No image with predictions.</p>'
    pictures = render_pictures([_request(image) for image in chosen], options)
    tiles = [
        Tile(picture, _caption(image), image.path)
        for image, picture in zip(chosen, pictures, strict=True)
    ]
    good = data.total - len(data.failed)
    ranks = max(len(image.predictions) for image in chosen)
    legend = box_legend([(f"rank {r} box", _rank_colour(r), False) for r in range(1, ranks + 1)])
    return (
        legend
        + f'<p class="note">{len(chosen)} of {good} images shown (at most {options.bbox_cap}), '
        "highest top-1 score first; the CAM is the top-1 class's. Click a picture for its full "
        f"size (longest side up to {options.picture_side} px).</p>" + gallery("g-bbox", tiles)
    )


def _failed_section(data: BboxReportInput, shown: int = 50) -> str:
    if not data.failed:
        return ""
    items = "".join(
        f"<li><code>{esc(path)}</code>: {esc(error)}</li>" for path, error in data.failed[:shown]
    )
    more = f"<p>... and {len(data.failed) - shown} more.</p>" if len(data.failed) > shown else ""
    return f"<p>{len(data.failed)} images failed:</p><ul>{items}</ul>{more}"


def bbox_report_html(data: BboxReportInput, options: ReportOptions | None = None) -> str:
    """The whole page, as text."""
    options = options or ReportOptions()
    plots.require_matplotlib()
    sections = [
        ("run", "What was run", run_section(data.run)),
        ("classes", "Top-1 classes", _classes_section(data)),
        ("gallery", "Gallery", _gallery_section(data, options)),
        ("failed", "Failed images", _failed_section(data)),
    ]
    subtitle = (
        f"{data.total} images, {len(data.failed)} failed · started {data.run.started} · "
        f"cam-cli {data.run.version}"
    )
    return page("cam-cli bbox report", subtitle, [s for s in sections if s[2]])


def write_bbox_report(
    data: BboxReportInput, path: str | Path, options: ReportOptions | None = None
) -> list[Path]:
    """Write the page to ``path`` atomically; returns the files written (`report_outputs`)."""
    write_text_atomic(bbox_report_html(data, options), path)
    return report_outputs(path)
