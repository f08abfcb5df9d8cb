"""Score maps in wsolevaluation's layout (`evaluation.scoremap_files`), scored without a model
(`sources.given_maps`, through `evaluate.evaluate`), and CAM thresholds carried from another
report (`maxboxacc.carried_thresholds`): hand-made maps whose figures are worked out below."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import takes_under

from cam_cli.data.annotations import ImageAnnotation
from cam_cli.data.ground_truth import GroundTruth
from cam_cli.errors import EvaluationError
from cam_cli.eval_options import EvalOptions, MetricOptions, SourceOptions, TruthOptions
from cam_cli.evaluation.evaluate import evaluate
from cam_cli.evaluation.report import Report
from cam_cli.evaluation.scoremap_files import (
    find_scoremaps,
    load_scoremap,
    save_scoremap,
    scoremap_id,
    scoremap_path,
)

SNAKE = "n01751748"


def scored(root, annotations, **metrics) -> Report:
    """The report of the maps in ``root`` against in-memory annotations."""
    options = EvalOptions(
        truth=GroundTruth(annotations),
        source=SourceOptions(scoremaps=root),
        metrics=MetricOptions(**metrics),
    )
    return evaluate(options)


def evaluate_scoremaps(root, annotations, **metrics) -> dict:
    """`scored`, as the JSON report."""
    return scored(root, annotations, **metrics).to_json()


def _annotation(stem: str, box) -> ImageAnnotation:
    return ImageAnnotation(stem, (SNAKE,), ((SNAKE, tuple(box)),), 224, 224)


def test_layout_is_np_save_of_the_image_id(tmp_path):
    images = tmp_path / "data" / "val"
    images.mkdir(parents=True)
    image = images / "ILSVRC2012_val_00000001.JPEG"
    image.touch()
    image_id = scoremap_id(image, images.parent)
    assert image_id == "val/ILSVRC2012_val_00000001.JPEG"
    link = images / "linked.JPEG"  # a link keeps its own id; nothing escapes the map folder
    link.symlink_to(tmp_path / "elsewhere.JPEG")
    assert scoremap_id(link, images.parent) == "val/linked.JPEG"
    assert scoremap_id(tmp_path / "outside.JPEG", images) == "outside.JPEG"
    scoremap = np.linspace(0, 1, 224 * 224).reshape(224, 224)
    written = save_scoremap(tmp_path / "maps", image_id, scoremap)
    assert written == tmp_path / "maps" / "val" / "ILSVRC2012_val_00000001.JPEG.npy"
    assert written == scoremap_path(tmp_path / "maps", image_id)
    back = np.load(written)  # what their CamDataset does
    assert back.dtype == np.float64
    assert back.shape == (224, 224)
    np.testing.assert_array_equal(back, scoremap)
    assert not [p for p in written.parent.iterdir() if p.name.startswith(".")]  # no temp left
    assert find_scoremaps(tmp_path / "maps") == {"ILSVRC2012_val_00000001": written}


def two_maps(root: Path) -> dict[str, ImageAnnotation]:
    """Image a: a strong blob (1.0) and a weak one (0.4, 8-bit 102) on the gt box; the weak
    blob is in the mask while int(t * 255) < 102, i.e. t <= 0.39. Image b: a blob (1.0) on the
    gt box over a background of 0.3 (8-bit 76); the background is out from t = 0.30 on
    (int(76.5) = 76, strictly above); before that the mask is the whole image, IoU 3600/50176."""
    a = np.zeros((224, 224))
    a[10:20, 10:20] = 1.0
    a[100:150, 100:150] = 0.4
    b = np.full((224, 224), 0.3)
    b[60:120, 60:120] = 1.0
    save_scoremap(root, "val/a.JPEG", a)
    save_scoremap(root, "val/b.JPEG", b)
    return {"a": _annotation("a", (100, 100, 149, 149)), "b": _annotation("b", (60, 60, 119, 119))}


def test_scoremaps_scored_as_boxevaluator(tmp_path):
    truth = two_maps(tmp_path)
    report = evaluate_scoremaps(tmp_path, truth)
    maxbox = report["maxboxacc_v2"]
    # a hits at t <= 0.39 (weak blob box [100, 100, 150, 150]: 2500 / 2601), b at t >= 0.30
    # (blob box [60, 60, 120, 120]: 3600 / 3721): both at 0.30..0.39, the lowest is reported
    assert report["images"] == 2
    assert report["failed_images"] == 0
    assert maxbox["accuracy"] == [100.0, 100.0, 100.0]
    assert maxbox["best_threshold"] == [pytest.approx(0.30)] * 3
    assert maxbox["maxboxacc_v2"] == 100.0
    assert maxbox["protocol"] == "wsol"
    assert maxbox["threshold_source"] == "best on these images"
    assert report["settings"]["mode"] == "scoremaps"


def test_thresholds_carried_from_a_report(tmp_path):
    truth = two_maps(tmp_path / "maps")
    chosen = tmp_path / "val-split.json"
    chosen.write_text(
        json.dumps(
            {
                "maxboxacc_v2": {
                    "images": 7,
                    "iou_thresholds": [0.3, 0.5, 0.7],
                    "best_threshold": [0.35, 0.5, 0.2],
                    "protocol": "wsol",
                }
            }
        )
    )
    result = scored(tmp_path / "maps", truth, cam_threshold_from=chosen)
    report = result.to_json()
    carried = report["maxboxacc_v2_carried"]
    # 0.35: both hit; 0.5: b only; 0.2: a only
    assert carried["threshold"] == pytest.approx([0.35, 0.5, 0.2])  # the grid's values
    assert carried["accuracy"] == [100.0, 50.0, 50.0]
    assert carried["maxboxacc_v2"] == pytest.approx(200 / 3)
    assert carried["threshold_source"] == f"{chosen.resolve()} (best on its 7 images)"
    assert report["maxboxacc_v2"]["maxboxacc_v2"] == 100.0  # this split's own best, beside it
    assert report["settings"]["cam_threshold_from"] == str(chosen.resolve())
    from cam_cli.evaluation.table import format_report

    table = format_report(result)
    assert f"MaxBoxAccV2 at CAM thresholds from {chosen.resolve()}" in table
    assert "IoU >= 0.5: 50.00 at CAM threshold 0.50" in table


def test_carried_thresholds_must_be_of_the_same_protocol(tmp_path):
    truth = two_maps(tmp_path / "maps")
    old = tmp_path / "old.json"  # a report from before the protocol existed: cam-cli's
    old.write_text(
        json.dumps(
            {
                "maxboxacc_v2": {
                    "images": 3,
                    "iou_thresholds": [0.3, 0.5, 0.7],
                    "best_threshold": [0.5, 0.4, 0.3],
                }
            }
        )  # fmt: skip
    )
    with pytest.raises(EvaluationError, match="protocol cam-cli"):
        evaluate_scoremaps(tmp_path / "maps", truth, cam_threshold_from=old)
    without = tmp_path / "no-maxbox.json"
    without.write_text(json.dumps({"maxboxacc_v2": None}))
    with pytest.raises(EvaluationError, match="no MaxBoxAccV2"):
        evaluate_scoremaps(tmp_path / "maps", truth, cam_threshold_from=without)


def test_a_bad_map_is_a_failed_image_and_unmatched_maps_are_listed(tmp_path):
    truth = two_maps(tmp_path)
    np.save(tmp_path / "val" / "c.JPEG.npy", np.zeros((100, 100)))
    truth["c"] = _annotation("c", (0, 0, 10, 10))
    report = evaluate_scoremaps(tmp_path, truth)
    assert report["images"] == 3
    assert report["failed_images"] == 1
    assert "224x224" in report["failed"][0]["error"]
    assert report["maxboxacc_v2"]["accuracy"] == [pytest.approx(200 / 3)] * 3  # c: a miss
    with pytest.raises(ValueError, match="224x224"):
        load_scoremap(tmp_path / "val" / "c.JPEG.npy")
    np.save(tmp_path / "val" / "d.JPEG.npy", np.zeros((224, 224)))
    with pytest.raises(EvaluationError, match="1 score maps have no annotation"):
        evaluate_scoremaps(tmp_path, truth)
    assert evaluate_scoremaps(tmp_path, truth, allow_missing=True)["missing"]["left_out"] == 1


def test_real_maps_saved_by_a_model_run_give_its_figure(sample_dir, mobilenet_weights, tmp_path):
    """12 real images: `--save-scoremaps` then `--scoremaps` gives the model run's MaxBoxAccV2,
    per IoU level and threshold (the check the README runs with wsolevaluation's own code)."""
    from conftest import model_report

    from cam_cli.data.annotations import read_annotations
    from cam_cli.inference.localizer import RunOptions
    from cam_cli.models.loading import load_model

    images = tmp_path / "val"
    images.mkdir()
    for path in sorted((sample_dir / "val").iterdir())[:12]:
        (images / path.name).symlink_to(path)
    truth = read_annotations(sample_dir / "annotations")
    truth = {stem: a for stem, a in truth.items() if (images / f"{stem}.JPEG").exists()}
    loaded = load_model(
        arch="mobilenet_v2",
        weights=str(mobilenet_weights),
        classes_file=sample_dir / "LOC_synset_mapping.txt",
    )
    run = model_report(
        loaded, images, truth, maxboxacc=True, run=RunOptions(fast=False),
        save_scoremaps=tmp_path / "maps",
    )  # fmt: skip
    saved = find_scoremaps(tmp_path / "maps")
    assert sorted(saved) == sorted(truth)
    assert len(saved) == 12
    first = load_scoremap(saved[min(saved)])
    assert first.dtype == np.float64
    assert (first.min(), first.max()) == (0.0, 1.0)
    scored = evaluate_scoremaps(tmp_path / "maps", truth)
    assert scored["maxboxacc_v2"] == run["maxboxacc_v2"]


def test_wsol_metadata_reads_only_its_ids_maps(tmp_path):
    """With a metadata split, the maps are `root/<id>.npy` of its ids, as their evaluator
    loads them: a folder that also holds another split's maps (one sharing a file stem, as
    ImageNetV2's `val2/0/a.jpeg`) is scored, no --allow-missing; a listed id without its map
    is still named."""
    from cam_cli.data.wsol_metadata import WsolMetadata, write_wsol_metadata

    maps = tmp_path / "maps"
    two_maps(maps)
    save_scoremap(maps, "val2/0/a.jpeg", np.zeros((224, 224)))  # train-fullsup's, same stem
    save_scoremap(maps, "val/c.JPEG", np.zeros((224, 224)))  # an image this split leaves out
    ids = ("val/a.JPEG", "val/b.JPEG")
    boxes = {"val/a.JPEG": ((100, 100, 149, 149),), "val/b.JPEG": ((60, 60, 119, 119),)}
    sizes = dict.fromkeys(ids, (224, 224))
    write_wsol_metadata(WsolMetadata(ids, dict.fromkeys(ids, 0), sizes, boxes), tmp_path / "m")
    options = EvalOptions(
        truth=TruthOptions(wsol_metadata=tmp_path / "m"), source=SourceOptions(scoremaps=maps)
    )
    report = evaluate(options).to_json()
    assert report["images"] == 2
    assert report["missing"]["left_out"] == 0
    assert report["maxboxacc_v2"]["accuracy"] == [100.0, 100.0, 100.0]  # as test above
    assert report["maxboxacc_v2"]["best_threshold"] == [pytest.approx(0.30)] * 3
    (maps / "val" / "b.JPEG.npy").unlink()
    with pytest.raises(EvaluationError, match="1 annotations have no score map"):
        evaluate(options)


# --- issue 25: maps read header first, dot names, image sizes under the pixel limit ---------


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width`` x ``height`` (grey), with no pixel data: what a
    decompression bomb shows before it is decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)  # a few rows: enough for a reader of the header
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def test_a_map_of_a_dot_named_image_is_read_never_taken_for_a_temp_file(tmp_path):
    """Issue 25 (16): `.dot.JPEG.npy` was skipped as a writer's temp file."""
    truth = two_maps(tmp_path)
    written = save_scoremap(tmp_path, "val/.dot.JPEG", np.zeros((224, 224)))
    assert written.name == ".dot.JPEG.npy"
    assert find_scoremaps(tmp_path)[".dot"] == written
    truth[".dot"] = _annotation(".dot", (0, 0, 10, 10))
    assert evaluate_scoremaps(tmp_path, truth)["images"] == 3


def test_a_map_declaring_a_huge_or_a_sparse_array_fails_from_its_header(tmp_path):
    """Issue 25 (8): 200000 x 200000 float64 (allocation traceback) and a sparse 12000 x 12000
    (1.15 GB read before it was refused): each a failed image, named, from its header."""
    from test_npy import header_only

    truth = two_maps(tmp_path)
    header_only(tmp_path / "val" / "huge.JPEG.npy", (200_000, 200_000))
    header_only(tmp_path / "val" / "sparse.JPEG.npy", (12_000, 12_000), size=128 + 8 * 144 * 10**6)
    truth["huge"] = _annotation("huge", (0, 0, 10, 10))
    truth["sparse"] = _annotation("sparse", (0, 0, 10, 10))
    started = time.monotonic()
    report = evaluate_scoremaps(tmp_path, truth)
    takes_under(5, started)
    errors = {Path(f["path"]).name: f["error"] for f in report["failed"]}
    assert "declares shape [200000, 200000]" in errors["huge.JPEG.npy"]
    assert errors["sparse.JPEG.npy"] == "a score map must be 224x224, not 12000x12000"
    assert report["images"] == 4
    assert report["failed_images"] == 2


def test_image_sizes_for_the_maps_are_read_under_the_pixel_limit(tmp_path):
    """Issue 25 (9): `--scoremaps ... --images` read sizes with a bare Image.open (a
    DecompressionBombError traceback for a 30000 x 30000 header)."""
    truth = {stem: replace(a, width=None, height=None) for stem, a in two_maps(tmp_path).items()}
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    paths = {"a": images / "a.png", "b": png_header(images / "b.png", 30_000, 30_000)}
    Image.new("L", (224, 224)).save(paths["a"])
    options = EvalOptions(truth=GroundTruth(truth, images=paths),
                          source=SourceOptions(scoremaps=tmp_path))  # fmt: skip
    with pytest.raises(EvaluationError) as refused:
        evaluate(options)
    message = str(refused.value)
    assert message.startswith(f"{paths['b']}: cannot read the image's size (refused: ")
    assert "exceeds the limit of 178956970" in message
