"""The plots of a report, drawn by matplotlib as inline SVG (the ``report`` extra).

Text stays text (``svg.fonttype: none``: the browser's own sans-serif, no font embedded or
fetched), no metadata, every id prefixed with the plot's name so several plots live in one
page. Colours are the
Okabe-Ito palette, and every series also differs by line style or marker, so no reading relies
on colour alone. Numbers printed on a plot come from the caller, formatted by the table's own
functions; a plot never rounds a figure itself.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from cam_cli.errors import SetupError
from cam_cli.report.pictures import OKABE_ITO

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_Plot = TypeVar("_Plot", str, list[str])

SERIES = [  # colour, line style, marker
    (OKABE_ITO["blue"], "-", "o"),
    (OKABE_ITO["vermillion"], "--", "s"),
    (OKABE_ITO["bluish green"], ":", "^"),
    (OKABE_ITO["reddish purple"], "-.", "D"),
]
INSTALL = "the HTML report draws its plots with matplotlib: pip install 'cam-cli[report]'"
RC: Any = {  # matplotlib types its keys as literals; a plain dict of them
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "path.simplify": True,
}


def require_matplotlib() -> None:
    """One line, before any work, where matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SetupError(INSTALL) from None


def _figure(width: float = 6.4, height: float = 3.4) -> Figure:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


_HEAD = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
_ID = re.compile(r'(\bid="|url\(#|\bhref="#)([^"\)]+)')
_SIZE = re.compile(r'<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"')


def to_svg(figure: Figure, name: str, title: str) -> str:
    """The figure as an ``<svg>`` element for an HTML page: scalable (its width 100% up to its
    natural size), titled for screen readers, ids unique to ``name``."""
    from matplotlib import rc_context

    buffer = io.StringIO()
    with rc_context({"svg.hashsalt": "cam-cli", "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = _METADATA.sub("", _HEAD.sub("", buffer.getvalue(), count=1), count=1)
    # matplotlib names its groups figure_1, axes_1...: prefixed, so no two plots of a page
    # share an id (or an id a link of the page uses)
    svg = _ID.sub(lambda m: f"{m[1]}{name}-{m[2]}", svg)
    svg = _SIZE.sub(
        lambda m: (
            f'<svg{m[1]} role="img" aria-label="{_attr(title)}" class="plot" '
            f'style="max-width:{float(m[2]) * 4 / 3:.0f}px"'
        ),
        svg,
        count=1,
    )
    return svg.strip()


def _attr(text: str) -> str:
    from html import escape

    return escape(text, quote=True)


def _styled(draw: Callable[..., _Plot]) -> Callable[..., _Plot]:
    """Run a plotting function under the report's matplotlib style."""

    def wrapper(*args: Any, **kwargs: Any) -> _Plot:
        require_matplotlib()
        from matplotlib import rc_context

        with rc_context(RC):
            return draw(*args, **kwargs)

    wrapper.__doc__ = draw.__doc__
    wrapper.__name__ = draw.__name__
    return wrapper


@_styled
def maxboxacc_plot(
    thresholds: np.ndarray,
    accuracy: np.ndarray,
    levels: Sequence[float],
    best: Sequence[tuple[float | None, float | None]],
    labels: Sequence[str],
) -> str:
    """Box accuracy (%) against the CAM threshold, one line per IoU level (``accuracy [T,
    I]``), each level's best ``(threshold, accuracy)`` marked; ``labels``: the legend, one per
    level (the table's own lines)."""
    figure = _figure(6.4, 4.4)
    ax = figure.subplots()
    for i in range(len(levels)):
        colour, style, marker = SERIES[i % len(SERIES)]
        ax.plot(thresholds, accuracy[:, i], color=colour, linestyle=style, linewidth=1.6,
                label=labels[i])  # fmt: skip
        threshold, value = best[i]
        if threshold is not None and value is not None:
            ax.plot([threshold], [value], marker=marker, markersize=8, color=colour,
                    markeredgecolor="black", linestyle="none")  # fmt: skip
            ax.axvline(threshold, color=colour, linestyle=style, linewidth=0.8, alpha=0.6)
    ax.set_xlabel("CAM threshold (fraction of the map's peak)")
    ax.set_ylabel("box accuracy (%)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 100)
    figure.legend(title="marker: the best CAM threshold", loc="outside lower center",
                  frameon=False, fontsize=9, title_fontsize=9)  # fmt: skip
    return to_svg(figure, "maxboxacc", "box accuracy against CAM threshold")


@_styled
def precision_recall_plot(precision: np.ndarray, recall: np.ndarray, label: str) -> str:
    """PxAP's precision-recall curve, titled ``label`` (the table's PxAP figure)."""
    figure = _figure(5.0, 3.6)
    ax = figure.subplots()
    finite = np.isfinite(precision)
    ax.plot(recall[finite], precision[finite], color=SERIES[0][0], linewidth=1.6)
    ax.set_xlabel("recall (pixels)")
    ax.set_ylabel("precision (pixels)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(label, fontsize=9, loc="left")
    return to_svg(figure, "pxap", "PxAP precision-recall curve")


@_styled
def iou_histogram(series: Mapping[str, np.ndarray], threshold: float) -> str:
    """How many images have each IoU (bins of 0.05), one outline per series, with the
    correctness threshold marked."""
    figure = _figure(6.4, 3.6)
    ax = figure.subplots()
    bins = [i / 20 for i in range(21)]
    for i, (name, values) in enumerate(series.items()):
        colour, style, _ = SERIES[i % len(SERIES)]
        ax.hist(values, bins=bins, histtype="step", color=colour, linestyle=style, linewidth=1.8,
                label=f"{name} ({len(values)} images)")  # fmt: skip
    ax.axvline(threshold, color="black", linewidth=1.0)
    ax.text(threshold, 1.01, f"IoU {threshold:g}: correct from here", ha="center", va="bottom",
            transform=ax.get_xaxis_transform(), fontsize=9)  # fmt: skip
    ax.set_xlabel("IoU with the best-matching ground-truth box")
    ax.set_ylabel("images")
    ax.set_xlim(0, 1)
    figure.legend(loc="outside lower center", frameon=False, fontsize=9, ncol=2)
    return to_svg(figure, "iou", "IoU distribution")


@_styled
def class_histogram(labels: Sequence[str], counts: Sequence[int], total: int) -> str:
    """The most frequent top-1 classes as horizontal bars, most frequent on top."""
    figure = _figure(6.4, 0.9 + 0.22 * max(len(labels), 1))
    ax = figure.subplots()
    positions = np.arange(len(labels))
    from matplotlib.ticker import MaxNLocator

    ax.barh(positions, counts, color=SERIES[0][0])
    ax.set_axisbelow(True)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yticks(positions, labels, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(f"images whose top-1 class it is (of {total})")
    return to_svg(figure, "classes", "top-1 class histogram")


@_styled
def training_plots(metrics: Sequence[Mapping[str, Any]]) -> list[str]:
    """Loss, accuracy (train and val, %) and learning rate per epoch, three plots."""
    from matplotlib.ticker import MaxNLocator

    epochs = [int(row["epoch"]) for row in metrics]

    def values(key: str, scale: float = 1.0) -> list[float]:
        return [np.nan if row.get(key) is None else float(row[key]) * scale for row in metrics]

    plots = []
    panels = [
        ("loss", [("train loss", values("train_loss"))], "loss (cross-entropy)", False),
        ("accuracy", [("train top-1", values("train_acc", 100)),
                      ("val top-1", values("val_acc", 100))], "accuracy (%)", False),
        ("lr", [("learning rate", values("lr"))], "learning rate (end of epoch)", True),
    ]  # fmt: skip
    for name, series, ylabel, log in panels:
        figure = _figure(4.2, 2.8)
        ax = figure.subplots()
        for i, (label, ys) in enumerate(series):
            if all(np.isnan(ys)):
                continue
            colour, style, marker = SERIES[i % len(SERIES)]
            ax.plot(epochs, ys, color=colour, linestyle=style, marker=marker, markersize=4,
                    linewidth=1.5, label=label)  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        positive = [y for y in series[0][1] if y > 0]  # NaN compares False
        if log and positive and max(positive) > 20 * min(positive):  # spans decades
            ax.set_yscale("log")
        if len(series) > 1:
            ax.legend(frameon=False, fontsize=9)
        plots.append(to_svg(figure, f"train-{name}", f"{name} per epoch"))
    return plots
