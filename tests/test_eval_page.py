"""The evaluation report page (`report.eval_page`) on a hand-made evaluation whose images each
land in one failure category (tests/report_fixtures.py): the page's figures are the table's,
its categories the rule's, its galleries capped and worst first, and it asks for nothing."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from conftest import SHARED
from report_fixtures import EXPECTED, NAMES, read_dom, run_info, synthetic_evaluation

from cam_cli.errors import EvaluationError
from cam_cli.evaluation.report import report_from_json
from cam_cli.evaluation.table import format_report, table_cell
from cam_cli.report.eval_page import (
    WRONG_CLASS,
    class_rows,
    eval_report_html,
    figures_of,
    gallery_selection,
    report_outputs,
    row_categories,
    write_eval_report,
)
from cam_cli.report.from_eval_files import eval_input, maxboxacc_curves
from cam_cli.report.inputs import EvalReportInput, ImageRow, Predicted, ReportOptions

pytest.importorskip("matplotlib", reason="the report extra (pip install 'cam-cli[report]')")


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    report, lines = synthetic_evaluation(root)
    return report, lines, eval_input(report, lines, run_info(), NAMES)


@pytest.fixture(scope="module")
def page_text(evaluation) -> str:
    return eval_report_html(evaluation[2])


def test_categories_are_the_rules(evaluation) -> None:
    report, _, data = evaluation
    categories = {k: v.value for k, v in row_categories(data.rows).items()}
    assert categories == EXPECTED  # the failed image has no box, so no category
    correct = sum(v == "correct" for v in categories.values())
    assert correct == report["gt_known_correct"]


def test_the_page_shows_the_tables_figures(evaluation, page_text) -> None:
    report = evaluation[0]
    dom = read_dom(page_text)
    assert dom.table == format_report(report_from_json(report))  # exactly as the terminal shows it
    assert dom.cards == figures_of(report)
    assert dom.cards["top1_loc_error"] == table_cell(report["top1_loc_error"])
    assert dom.cards["maxboxacc_v2"] == table_cell(report["maxboxacc_v2"]["maxboxacc_v2"])
    assert set(dom.cards) == {"top1_loc_error", "top5_loc_error", "gt_known_loc_error",
                              "top1_cls_error", "maxboxacc_v2"}  # fmt: skip


def test_the_page_asks_for_nothing(page_text) -> None:
    text = page_text
    dom = read_dom(text)
    assert dom.sources
    assert all(s.startswith("data:image/jpeg;base64,") for s in dom.sources)
    assert all(link.startswith("#") for link in dom.links)
    assert "Content-Security-Policy" in text
    assert "default-src 'none'" in text
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    assert not re.search(r"url\((?!#)", text)  # no CSS url() but SVG's own #ids


def test_names_are_escaped(page_text) -> None:
    text = page_text
    assert "tench &lt;b&gt;&amp;&quot;fish&quot;" in text
    assert "<b>&" not in text


def test_galleries_are_capped_and_worst_first(evaluation) -> None:
    _, _, data = evaluation
    chosen = gallery_selection(data.rows, ReportOptions(gallery_cap=1))
    assert all(len(rows) <= 1 for rows in chosen.values())
    # wrong classes: b (0.8) and e (0.5): the most confident first
    assert [r.image_id for r in gallery_selection(data.rows, ReportOptions())[WRONG_CLASS]] == [
        "b_too_large", "e_off_target"]  # fmt: skip
    text = eval_report_html(data, ReportOptions(gallery_cap=1))
    assert "wrong class: 1 of 2 shown" in text
    assert "At most 1 images per gallery" in text


def test_per_class_table_counts_the_runs_verdicts(evaluation, page_text) -> None:
    _, lines, data = evaluation
    counts = class_rows(data.rows)
    assert {k: c.images for k, c in counts.items()} == {"n01": 2, "n02": 2, "n03": 3}
    # n03: e wrong class, f wrong box, g failed: all three wrong
    assert (counts["n03"].loc_correct, counts["n03"].known_scored) == (0, 3)
    assert sum(c.loc_correct for c in counts.values()) == sum(x["top1_loc_correct"] for x in lines)
    table = page_text[page_text.index('id="classes"') :]
    order = [table.index(f"({label})") for label in ("n03", "n02", "n01")]
    assert order == sorted(order)  # 100% error, 50%, 50% (n02 has more GT-known errors)


def test_failed_images_are_listed(page_text) -> None:
    text = page_text
    assert "1 images failed (counted as wrong)" in text
    assert "truncated or corrupt image" in text


def test_without_gt_known_boxes_the_categories_say_why(evaluation) -> None:
    _, _, data = evaluation
    rows = [replace(r, gt_known_box=None, gt_known_iou=None, gt_known_correct=None)
            for r in data.rows]  # fmt: skip
    text = eval_report_html(replace(data, rows=rows, maxboxacc=None))
    assert "only a model run gives" in text


def test_written_atomically_where_asked(evaluation, tmp_path) -> None:
    target = tmp_path / "out" / "report.html"
    written = write_eval_report(evaluation[2], target)
    assert written == report_outputs(target) == [target]
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temp file left


def test_curves_of_other_lines_are_refused(evaluation) -> None:
    report, lines, _ = evaluation
    changed = [dict(line) for line in lines]
    changed[0]["maxboxacc_ious"] = [0.0] * 100
    with pytest.raises(EvaluationError, match="do not give the report's MaxBoxAccV2"):
        maxboxacc_curves(changed, report["maxboxacc_v2"])
    with pytest.raises(EvaluationError, match="per-image lines for a report of"):
        eval_input(report, lines[:-1], run_info())


TINY = SHARED / "data" / "tiny-imagenet-dev"


@pytest.mark.shared
def test_tiny_imagenet_pictures_are_enlarged_crisp() -> None:
    """Real 64 px Tiny ImageNet val images with their boxes: each picture enlarged 4 times
    (64 -> 256, at least 224) and marked to stay crisp when the browser scales it."""
    if not TINY.is_dir():
        pytest.skip(f"{TINY} not present (the ../shared folder beside the repository)")
    rows = []
    for text in (TINY / "val" / "val_annotations.txt").read_text().splitlines()[:8]:
        name, wnid, *box = text.split("\t")
        gt = tuple(int(v) for v in box)
        guess = (max(gt[0] - 6, 0), gt[1], min(gt[2] + 6, 63), gt[3])  # wider: IoU < 1
        rows.append(ImageRow(name, str(TINY / "val" / "images" / name), 64, 64, wnid, None,
                             (gt,), Predicted(wnid, None, 0.5, guess), guess, 0.6, 0.6,
                             True, True, True))  # fmt: skip
    chosen = gallery_selection(rows, ReportOptions())
    text = eval_report_html(EvalReportInput(run_info(), {"images": len(rows)}, rows))
    pictures = re.findall(
        r'<img src="data:[^"]+" width="(\d+)" height="(\d+)"( class="crisp")?', text
    )
    assert len(pictures) == sum(len(v) for v in chosen.values()) > 0
    assert all(p == ("256", "256", ' class="crisp"') for p in pictures)
