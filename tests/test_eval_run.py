"""`eval --report`: the page made from the run itself (`report.eval_run`). Its rows are the
per-image lines the run writes, its curves the run's MaxBoxAccV2 counts, the gallery images
carry the CAMs the run computed; the options are checked before any work; without it nothing
changes."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
from conftest import invoke

from cam_cli.errors import EvaluationError
from cam_cli.eval_options import EvalOptions, MetricOptions, OutputOptions, SourceOptions
from cam_cli.eval_options import TruthOptions as Truth
from cam_cli.evaluation.evaluate import evaluate
from cam_cli.report.eval_page import gallery_selection
from cam_cli.report.eval_run import EvalCollector, class_names, evaluate_and_report
from cam_cli.report.from_eval_files import eval_input, read_lines, run_info_from_settings
from cam_cli.report.inputs import ReportOptions
from cam_cli.settings import ModelOptions, RunOptions

pytest.importorskip("matplotlib", reason="the report extra (pip install 'cam-cli[report]')")


def _sample(tmp_path, sample_dir, count: int = 24):
    images, xml = tmp_path / "val", tmp_path / "xml"
    images.mkdir(), xml.mkdir()
    for path in sorted((sample_dir / "val").iterdir())[:count]:
        (images / path.name).symlink_to(path)
        (xml / f"{path.stem}.xml").symlink_to(sample_dir / "annotations" / f"{path.stem}.xml")
    return images, xml


def _options(images, xml, sample_dir, weights, **outputs) -> EvalOptions:
    model = ModelOptions(arch="mobilenet_v2", weights=str(weights),
                         classes_file=sample_dir / "LOC_synset_mapping.txt")  # fmt: skip
    return EvalOptions(
        truth=Truth(annotations=xml, images=images),
        source=SourceOptions(model=model, run=RunOptions(workers=0, fast=False)),
        metrics=MetricOptions(maxboxacc=True),
        outputs=OutputOptions(**outputs),
    )


# --- the options, before any work -------------------------------------------------------------


@pytest.mark.parametrize(
    ("outputs", "says"),
    [
        ({"html_report": "-"}, "`html_report` needs a FILE"),
        ({"html_report": "r.json", "json_report": "r.json"}, "`html_report` and `json_report`"),
        ({"html_report": "p.jsonl", "per_image": "p.jsonl"}, "`html_report` and `per_image`"),
    ],
)
def test_the_page_needs_a_file_of_its_own(outputs, says) -> None:
    options = EvalOptions(
        truth=Truth(annotations="a", images="i"), outputs=OutputOptions(**outputs)
    )
    with pytest.raises(EvaluationError, match=re.escape(says)):
        options.validate()


def test_without_matplotlib_one_line_says_how_to_install(tmp_path, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    (tmp_path / "xml").mkdir(), (tmp_path / "val").mkdir()
    result = invoke("eval", "--annotations", tmp_path / "xml", "--images", tmp_path / "val",
                    "--report", tmp_path / "r.html")  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "cam-cli: error: --report draws its plots with matplotlib: pip install 'cam-cli[report]'"
    ]
    assert not (tmp_path / "r.html").exists()


def test_the_page_is_never_written_over_an_input(tmp_path, sample_dir, mobilenet_weights) -> None:
    images, xml = _sample(tmp_path, sample_dir, count=2)
    target = sorted(xml.iterdir())[0]
    before = target.read_bytes()
    result = invoke("eval", "--arch", "mobilenet_v2", "--weights", mobilenet_weights,
                    "--classes", sample_dir / "LOC_synset_mapping.txt", "--images", images,
                    "--annotations", xml, "--report", target, "--quiet")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--report" in result.stderr
    assert "--annotations" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert target.read_bytes() == before


# --- the run's own figures ---------------------------------------------------------------------


def test_the_page_input_is_the_run_itself(tmp_path, sample_dir, mobilenet_weights) -> None:
    """What the collector kept during the run equals what the run's per-image lines and JSON
    give (`eval_input`): the same rows and verdicts, the same curves; every gallery image
    carries the true class's CAM and the top-1 CAM the network computed."""
    images, xml = _sample(tmp_path, sample_dir)
    per_image = tmp_path / "p.jsonl"
    options = _options(images, xml, sample_dir, mobilenet_weights, per_image=per_image,
                       html_report=tmp_path / "r.html")  # fmt: skip
    small = ReportOptions(gallery_cap=2)
    collector = EvalCollector(small, (0.3, 0.5, 0.7), class_names(options))
    from cam_cli.report import eval_run

    eval_run.FLUSH, old = 5, eval_run.FLUSH  # choose the galleries several times on the way
    try:
        report = evaluate(options, on_image=collector.add)
    finally:
        eval_run.FLUSH = old
    data = collector.report_input(report, 1.0, "2026-01-01T00:00:00")
    first = json.loads(per_image.read_text().splitlines()[0])
    assert first["image_id"] == data.rows[0].image_id
    names = class_names(options)
    from_files = eval_input(data.figures, read_lines(per_image), run_info_from_settings(
        data.figures["settings"], "x", "y"), names)  # fmt: skip
    assert data.rows == from_files.rows  # the CAMs are not compared: equal rows, equal verdicts
    assert len(data.rows) == 24
    assert data.rows[0].true_name == names[data.rows[0].true_label]
    assert data.maxboxacc is not None
    assert from_files.maxboxacc is not None
    assert np.array_equal(data.maxboxacc.accuracy, from_files.maxboxacc.accuracy)
    chosen = {r.image_id for group in gallery_selection(data.rows, small).values() for r in group}
    with_cams = {r.image_id for r in data.rows if r.true_cam is not None}
    assert chosen
    assert with_cams == chosen
    for row in data.rows:
        if row.image_id in chosen:
            assert row.true_cam.shape == (7, 7)
            assert row.top1_cam.shape == (7, 7)
            assert np.isfinite(row.true_cam).all()


def test_without_the_page_nothing_changes(tmp_path, sample_dir, mobilenet_weights) -> None:
    """The same table, JSON and per-image lines, byte for byte, with and without it."""
    images, xml = _sample(tmp_path, sample_dir, count=8)
    outs = {}
    for name, extra in (("plain", []), ("page", ["--report", tmp_path / "r.html"])):
        json_out, per_image = tmp_path / f"{name}.json", tmp_path / f"{name}.jsonl"
        result = invoke("eval", "--arch", "mobilenet_v2", "--weights", mobilenet_weights,
                        "--classes", sample_dir / "LOC_synset_mapping.txt", "--images", images,
                        "--annotations", xml, "--maxboxacc", "--json", json_out,
                        "--per-image", per_image, "--workers", "0", "--quiet", *extra)  # fmt: skip
        assert result.exit_code == 0, result.output
        outs[name] = (result.stdout, json_out.read_bytes(), per_image.read_bytes())
    assert outs["plain"] == outs["page"]
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "cam-cli eval report" in page
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: no temporary file left


def test_the_library_call_writes_the_page_too(tmp_path, sample_dir, mobilenet_weights) -> None:
    images, xml = _sample(tmp_path, sample_dir, count=3)
    options = _options(images, xml, sample_dir, mobilenet_weights, html_report=tmp_path / "r.html")
    report = evaluate_and_report(options, ReportOptions(gallery_cap=1))
    assert report.images == 3
    assert (tmp_path / "r.html").stat().st_size > 10_000
