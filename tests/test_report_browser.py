"""Reports opened in a real browser (headless Chromium, Debian's ``chromium``): no console
error, no request leaving the file, every picture decodes, the figures read from the DOM are
the JSON's as the table formats them, and a screenshot is written."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import MOBILENET_WEIGHTS, SAMPLE, invoke
from PIL import Image
from report_fixtures import CHROMIUM, NAMES, chromium, run_info, synthetic_evaluation

from cam_cli.evaluation.report import report_from_json
from cam_cli.evaluation.table import format_report
from cam_cli.report.bbox_page import write_bbox_report
from cam_cli.report.eval_page import figures_of, write_eval_report
from cam_cli.report.from_eval_files import eval_input, row_from_line
from cam_cli.report.inputs import (
    BboxImage,
    BboxReportInput,
    CamGrid,
    GridImage,
    TrainingReportInput,
)
from cam_cli.report.training_page import write_training_report

pytest.importorskip("matplotlib", reason="the report extra (pip install 'cam-cli[report]')")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium (Debian's chromium; .ci/run installs it)",
    ),
]


def _clean_page(view, pictures: int) -> None:
    assert view.console == [], view.console
    assert view.dom.root.get("data-errors") == "0"
    assert view.dom.root.get("data-images-decoded") == f"{pictures}/{pictures}"
    with Image.open(view.screenshot) as shot:
        assert shot.width == 1280
        assert shot.height > 1000


def test_an_evaluation_report_in_a_browser(tmp_path) -> None:
    report, lines = synthetic_evaluation(tmp_path)
    page = tmp_path / "report.html"
    write_eval_report(eval_input(report, lines, run_info(), NAMES), page)
    view = chromium(page, tmp_path)
    _clean_page(view, pictures=len(view.dom.sources))
    # one per failure category, and the two wrong classes again with their top-1 CAM and box
    assert len(view.dom.sources) == 8
    assert view.dom.cards == figures_of(report)
    assert view.dom.table == format_report(report_from_json(report))


def test_a_request_would_be_caught(tmp_path) -> None:
    """The checks see a page that asks for something: blocked by the page's policy, logged."""
    report, lines = synthetic_evaluation(tmp_path)
    page = tmp_path / "report.html"
    write_eval_report(eval_input(report, lines, run_info(), NAMES), page)
    text = page.read_text().replace("</main>", '<img src="http://127.0.0.1:9/x.png"></main>')
    page.write_text(text)
    view = chromium(page, tmp_path)
    assert any("Content Security Policy" in line for line in view.console)
    assert view.dom.root.get("data-errors") != "0"
    assert view.dom.root.get("data-images-decoded") == "8/9"


def test_bbox_and_training_reports_in_a_browser(tmp_path) -> None:
    report, lines = synthetic_evaluation(tmp_path)
    rows = [row_from_line(line, NAMES) for line in lines if line["error"] is None]
    images = [BboxImage(r.path, r.width, r.height, (r.top1,)) for r in rows]
    counts = Counter((r.top1.label, r.top1.name) for r in rows)
    write_bbox_report(BboxReportInput(run_info(), images, counts, len(images)), tmp_path / "b.html")
    view = chromium(tmp_path / "b.html", tmp_path)
    _clean_page(view, pictures=len(rows))

    grid = CamGrid([GridImage(rows[0].path, "n01")], [1, 2], [[None], [None]])
    metrics = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.1 * e, "val_acc": None,
                "lr": 0.1, "images": 10, "seconds": 1.0} for e in (1, 2)]  # fmt: skip
    write_training_report(TrainingReportInput(run_info(), metrics, grid, 5), tmp_path)
    view = chromium(tmp_path / "report.html", tmp_path)
    _clean_page(view, pictures=2)


def test_a_real_evaluation_report_in_a_browser(tmp_path, sample_dir, mobilenet_weights) -> None:
    """`cam-cli eval --report` on 24 images of the real sample: the page the command wrote,
    opened as a user would; its figures are the run's --json, as the table formats them. The
    screenshot is kept where CAM_CLI_REPORT_SHOTS says (to look at), else in the test's
    folder."""
    images, xml = tmp_path / "val", tmp_path / "xml"
    images.mkdir(), xml.mkdir()
    for path in sorted((sample_dir / "val").iterdir())[:24]:
        (images / path.name).symlink_to(path)
        (xml / f"{path.stem}.xml").symlink_to(sample_dir / "annotations" / f"{path.stem}.xml")
    out, page = tmp_path / "eval.json", tmp_path / "real.html"
    result = invoke("eval", "--arch", "mobilenet_v2", "--weights", mobilenet_weights,
                    "--classes", sample_dir / "LOC_synset_mapping.txt", "--images", images,
                    "--annotations", xml, "--maxboxacc", "--json", out, "--report", page,
                    "--workers", "0", "--no-fast", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(out.read_text())
    view = chromium(page, tmp_path, height=5000)
    _clean_page(view, pictures=len(view.dom.sources))
    assert len(view.dom.sources) >= 24  # the galleries' pictures, each with the run's CAM
    assert view.dom.cards == figures_of(report)
    assert view.dom.table == format_report(report_from_json(report))
    keep = os.environ.get("CAM_CLI_REPORT_SHOTS")
    if keep:
        shutil.copy(view.screenshot, Path(keep) / "real-eval-report.png")


assert SAMPLE
assert MOBILENET_WEIGHTS
