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


# --- PxAP: the run's own precision-recall curve --------------------------------------------------


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    """A tiny mask split (wsolevaluation's metadata, masks as ground truth) and a seeded
    small-gap model for it."""
    import torch

    from cam_cli.models.registry import build_model
    from cam_cli.synthetic.dataset import generate_dataset

    out = tmp_path_factory.mktemp("pxap") / "data"
    generate_dataset(out, num_classes=3, train_per_class=1, val_images=4, seed=0, masks=True)
    torch.manual_seed(0)
    torch.save(build_model("small-gap", 3).state_dict(), out / "w.pth")
    return out


def _page_text(path) -> str:
    """The page's visible text lines (tags dropped, entities decoded)."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", "\n", path.read_text()))


def test_a_pxap_run_shows_its_curve_labelled_with_the_table_figure(masks, tmp_path) -> None:
    """A model run on masks, through the CLI: the page holds the precision-recall curve the
    run's own PxAP histograms give (`PxAP.curve` on them: the area under it is the JSON's
    figure), labelled with the table's PxAP line; and the table on the page is the one the CLI
    printed, flags and all (`--fast`, where the library writes `` `fast` ``)."""
    from cam_cli.evaluation.table import format_pxap, table_cell

    page, json_out = tmp_path / "r.html", tmp_path / "r.json"
    result = invoke("eval", "--arch", "small-gap", "--weights", masks / "w.pth",
                    "--classes", masks / "LOC_synset_mapping.txt", "--wsol-metadata",
                    masks / "wsol" / "val", "--images", masks, "--workers", "0", "--fast",
                    "--quiet", "--json", json_out, "--report", page)  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(json_out.read_text())
    pxap = figures["pxap"]
    assert pxap["images"] == 4
    assert 0 < pxap["pxap"] < 100
    line = format_pxap(pxap)
    assert line in result.stdout
    assert line.endswith(f": {table_cell(pxap['pxap'])}")
    html_text = page.read_text()
    assert 'id="pxap-curve"' in html_text
    assert "PxAP precision-recall curve" in html_text
    text = _page_text(page)
    assert text.count(line) == 2  # the table's line, the curve's note
    assert f"PxAP {table_cell(pxap['pxap'])} (area under the curve, %)" in text  # its title
    shown = re.search(r'id="figures-table">(.*?)</pre>', html_text, re.S)[1]
    assert shown == result.stdout.rstrip("\n").replace("&", "&amp;").replace("<", "&lt;") \
        .replace(">", "&gt;")  # fmt: skip
    assert "--fast" in shown
    assert "`fast`" not in html_text


def test_the_pxap_curve_is_the_runs_own_histograms(masks, tmp_path) -> None:
    """Score maps (no per-image lines): the collector sums the histograms the run's PxAP
    evaluator made of each map, and its curve's area is the run's figure to the last bit;
    histograms of another run are refused, never drawn."""
    from cam_cli.data.wsol_metadata import read_wsol_metadata

    metadata = read_wsol_metadata(masks / "wsol" / "val")
    maps = tmp_path / "maps"
    rng = np.random.default_rng(0)
    for image_id in metadata.image_ids:
        (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{image_id}.npy", rng.random((224, 224)))
    options = EvalOptions(
        truth=Truth(wsol_metadata=masks / "wsol" / "val", mask_root=masks),
        source=SourceOptions(scoremaps=maps),
        outputs=OutputOptions(html_report=tmp_path / "r.html"),
    )
    collector = EvalCollector(ReportOptions(), (0.3, 0.5, 0.7))
    report = evaluate(options, on_image=collector.add)
    data = collector.report_input(report, 1.0, "2026-01-01T00:00:00")
    assert data.pxap is not None
    assert data.pxap.summary == report.pxap
    precision, recall = data.pxap.precision, data.pxap.recall
    assert recall[0] >= 0
    assert recall[-1] == 1.0
    assert np.all(np.diff(recall) >= 0)
    area = 100 * np.nansum(precision[1:] * np.diff(recall))
    assert area == pytest.approx(report.pxap["pxap"], rel=1e-12)
    collector.pxap.foreground[0] += 1  # a pixel the run did not count
    with pytest.raises(EvaluationError, match="PxAP histograms do not give its PxAP figure"):
        collector.report_input(report, 1.0, "2026-01-01T00:00:00")
    evaluate_and_report(options)
    assert 'id="pxap-curve"' in (tmp_path / "r.html").read_text()
