"""The Localizer's execution: lanes (one single-threaded forward per core), the decode thread,
and that neither changes a result or its order."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke, model_args, model_report
from PIL import Image

from cam_cli.inference.localizer import Localizer, RunOptions, default_workers
from cam_cli.inference.threads import prefetched, single_threaded_pool
from cam_cli.models.loading import load_model

FIGURE_KEYS = (
    "top1_cls_error",
    "top5_cls_error",
    "top1_loc_error",
    "top5_loc_error",
    "gt_known_loc_error",
)
# README "cam-cli eval": the fast path's figures stay within this many points of fp32 on every
# x86 CPU. Measured at most 0.47 (AVX2 kernels; AVX-512 BF16 and AMX differ from them and from
# each other); one image of the 434 is 0.23 points, so 0.5 would leave no room for one more.
FAST_PATH_BOUND = 1.0


def _write_images(folder, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        # A bright disc on noise, somewhere different in every image, at varied sizes.
        width, height = 64 + 7 * i, 48 + 5 * i
        yy, xx = np.mgrid[:height, :width]
        cx, cy = (i * 13) % width, (i * 7) % height
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < (min(width, height) // 3) ** 2)[..., None]
        pixels = rng.integers(0, 60, (height, width, 3)) + 180 * disc
        path = folder / f"img{i:02d}.png"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _records(localizer: Localizer, paths, **kwargs) -> list[dict]:
    return [r.as_record() for r in localizer.localize(paths, **kwargs)]


def test_lanes_and_decode_thread_keep_every_result_and_the_order(tmp_path):
    paths = _write_images(tmp_path, 11)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = paths[:4] + [str(bad)] + paths[4:] + [str(tmp_path / "missing.png")]

    torch.manual_seed(0)
    loaded = load_model(arch="small-gap", num_classes=7)
    reference = Localizer(loaded, topk=3, fast=False, lanes=1)
    expected = _records(reference, paths, batch_size=5, workers=1)
    for lanes, workers in [(2, 0), (3, 0), (2, 1)]:
        localizer = Localizer(loaded, topk=3, fast=False, lanes=lanes)
        got = _records(localizer, paths, batch_size=5, workers=workers)
        localizer.close()
        assert [r["path"] for r in got] == paths
        assert "error" in got[4]
        assert "error" in got[-1]
        for want, have in zip(expected, got, strict=True):
            if "error" in want:
                assert have["error"] == want["error"]
                continue
            assert [p["class_index"] for p in have["predictions"]] == [
                p["class_index"] for p in want["predictions"]
            ]
            assert [p["box"] for p in have["predictions"]] == [
                p["box"] for p in want["predictions"]
            ]
            np.testing.assert_allclose(
                [p["score"] for p in have["predictions"]],
                [p["score"] for p in want["predictions"]],
                atol=1e-5,
            )


@pytest.mark.slow
def test_lanes_on_real_images_match_one_lane(sample_dir, mobilenet_weights):
    paths = sorted(str(p) for p in (sample_dir / "val").iterdir())[:10]
    loaded = load_model(arch="mobilenet_v2", weights=str(mobilenet_weights))
    one = _records(Localizer(loaded, topk=5, fast=False, lanes=1), paths, batch_size=4)
    two = _records(Localizer(loaded, topk=5, fast=False, lanes=2), paths, batch_size=4)
    for a, b in zip(one, two, strict=True):
        assert [p["class_index"] for p in a["predictions"]] == [
            p["class_index"] for p in b["predictions"]
        ]
        assert [p["box"] for p in a["predictions"]] == [p["box"] for p in b["predictions"]]


def test_lane_threads_run_single_threaded_and_leave_the_setting_elsewhere():
    before = torch.get_num_threads()
    pool = single_threaded_pool(2)
    try:
        assert [pool.submit(torch.get_num_threads).result() for _ in range(4)] == [1] * 4
        assert torch.get_num_threads() == before
        seen = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert seen == [before]
    finally:
        pool.shutdown()


def test_prefetched_keeps_order_and_raises_in_order():
    assert list(prefetched(range(50), depth=2)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):  # noqa: PT012 - the loop is what fails
        for item in prefetched(failing(), depth=4):
            got.append(item)
    assert got == [1, 2]


def test_prefetched_stops_its_thread_when_the_consumer_stops():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = prefetched(endless(), depth=2)
    assert next(stream) == 0
    stream.close()
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count <= 4
    assert not any(t.name == "cam-cli-decode" for t in threading.enumerate())


def test_default_workers():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [default_workers(cpu, n) for n in (1, 2, 8, 16, 64, 128)] == [0, 0, 0, 2, 8, 8]
    assert [default_workers(cuda, n) for n in (1, 2, 16)] == [1, 1, 8]


@pytest.mark.slow
def test_compile_keeps_results_and_never_recompiles_for_short_batches(tmp_path):
    from torch._dynamo.utils import counters

    paths = _write_images(tmp_path, 7)
    torch.manual_seed(1)
    loaded = load_model(arch="small-gap", num_classes=5)
    eager = _records(Localizer(loaded, topk=2, fast=False, lanes=2), paths, batch_size=4)
    localizer = Localizer(loaded, topk=2, fast=False, lanes=2)
    counters.clear()
    assert localizer.compile(batch_size=4) > 0
    compiled_frames = counters["stats"]["unique_graphs"]
    got = _records(localizer, paths, batch_size=4)  # batches of 4 and 3: slices 2, 2 and 2, 1
    assert counters["stats"]["unique_graphs"] == compiled_frames  # no recompile
    for want, have in zip(eager, got, strict=True):
        assert [p["box"] for p in have["predictions"]] == [p["box"] for p in want["predictions"]]
        np.testing.assert_allclose(
            [p["score"] for p in have["predictions"]],
            [p["score"] for p in want["predictions"]],
            atol=1e-5,
        )


def test_a_failed_compile_is_reported_and_the_run_goes_on_eager(tmp_path, monkeypatch, caplog):
    from cam_cli.inference.localizer import compile_or_warn

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no working C++ compiler found\nlong traceback text")

    paths = _write_images(tmp_path, 3)
    loaded = load_model(arch="small-gap", num_classes=5)
    localizer = Localizer(loaded, topk=1, fast=False)
    monkeypatch.setattr(torch, "compile", no_compiler)
    with caplog.at_level("WARNING", logger="cam_cli"):
        assert not compile_or_warn(localizer, 4)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "`compile_model` failed (no working C++ compiler found); running uncompiled"
    ]
    assert all("predictions" in r for r in _records(localizer, paths, batch_size=4))


def test_a_batch_of_only_failed_images_keeps_its_place(tmp_path):
    good = _write_images(tmp_path, 4)
    bad = [str(tmp_path / f"gone{i}.jpg") for i in range(3)]
    paths = good[:2] + bad + good[2:]  # batch_size 2: [g g] [b b] [b g] [g]
    loaded = load_model(arch="small-gap", num_classes=3)
    for lanes in (1, 2):
        got = _records(Localizer(loaded, topk=1, lanes=lanes), paths, batch_size=2)
        assert [r["path"] for r in got] == paths
        assert ["error" in r for r in got] == [False, False, True, True, True, False, False]


@pytest.mark.slow
def test_real_sample_figures_fp32_and_fast_path(sample_dir, mobilenet_weights):
    """The whole 434-image sample, as the README reports it: the fp32 figures, and the fast
    path (bf16) within the README's bound of them, whatever the CPU."""
    from cam_cli.data.annotations import read_annotations

    truth = read_annotations(sample_dir / "LOC_val_solution.csv")
    loaded = load_model(
        arch="mobilenet_v2",
        weights=str(mobilenet_weights),
        classes_file=sample_dir / "LOC_synset_mapping.txt",
    )
    reports = {
        fast: model_report(
            loaded,
            sample_dir / "val",
            truth,
            run=RunOptions(device="cpu", fast=fast),
            maxboxacc=True,
        )
        for fast in (False, True)
    }
    fp32 = reports[False]
    assert fp32["images"] == 434
    assert fp32["failed_images"] == 0
    assert round(fp32["top1_cls_error"], 2) == 19.82
    assert round(fp32["top5_cls_error"], 2) == 6.22
    assert round(fp32["top1_loc_error"], 2) == 51.61
    assert round(fp32["top5_loc_error"], 2) == 42.63
    assert round(fp32["gt_known_loc_error"], 2) == 40.78
    # wsolevaluation's BoxEvaluator gives these on the maps `--save-scoremaps` writes (README);
    # cam-cli's own protocol before it gave 63.44 (87.79 / 67.28 / 35.25 at 0.50 / 0.36 / 0.28)
    maxbox = fp32["maxboxacc_v2"]
    assert maxbox["protocol"] == "wsol"
    assert round(maxbox["maxboxacc_v2"], 2) == 63.13
    assert [round(v, 2) for v in maxbox["accuracy"]] == [87.56, 67.28, 34.56]
    assert [round(v, 2) for v in maxbox["best_threshold"]] == [0.53, 0.35, 0.27]
    # The fast path (bf16 where the CPU has it natively) varies with the CPU's kernels (oneDNN
    # picks AMX, AVX-512 BF16 or AVX2 at run time): the README's bound, never its digits.
    fast = reports[True]
    for key in FIGURE_KEYS:
        assert abs(fast[key] - fp32[key]) <= FAST_PATH_BOUND, (key, fast[key], fp32[key])
    fast_maxboxacc = fast["maxboxacc_v2"]["maxboxacc_v2"]
    assert abs(fast_maxboxacc - maxbox["maxboxacc_v2"]) <= FAST_PATH_BOUND


@pytest.mark.slow
def test_real_sample_figures_squeezenet_caffe(sample_dir, squeezenet_weights):
    """The README's SqueezeNet 1.1 figures (Caffe weights and normalisation, fp32)."""
    from cam_cli.data.annotations import read_annotations

    loaded = load_model(
        arch="squeezenet1_1",
        weights=str(squeezenet_weights),
        classes_file=sample_dir / "LOC_synset_mapping.txt",
        normalize="caffe",
    )
    truth = read_annotations(sample_dir / "LOC_val_solution.csv")
    report = model_report(loaded, sample_dir / "val", truth, run=RunOptions(fast=False))
    figures = [
        round(report[key], 2)
        for key in ("top1_cls_error", "top5_cls_error", "top1_loc_error", "top5_loc_error")
    ]
    assert figures == [27.42, 9.22, 52.53, 41.47]
    assert round(report["gt_known_loc_error"], 2) == 37.33


def test_localizer_and_evaluate_leave_the_callers_model_alone(tmp_path):
    """Batch norm folding and channels_last happen on the Localizer's own copy; evaluate_model
    replaces the class list on its own copy of `loaded`."""
    from cam_cli.data.annotations import ImageAnnotation
    from cam_cli.data.classes import ClassInfo

    loaded = load_model(arch="resnet18", num_classes=3)
    keys = list(loaded.model.state_dict())
    assert len(keys) == 122
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    Localizer(loaded, topk=1, fast=False)
    assert list(loaded.model.state_dict()) == keys
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())
    assert loaded.model.net.conv1.weight.is_contiguous()  # not turned channels_last

    paths = _write_images(tmp_path, 2)
    truth = {
        Path(p).stem: ImageAnnotation(Path(p).stem, ("1",), (("1", (0, 0, 5, 5)),)) for p in paths
    }
    classes = [ClassInfo(i, None, f"class {i}") for i in range(3)]
    classes_before = list(loaded.classes)
    run = RunOptions(fast=False)
    report = model_report(loaded, tmp_path, truth, classes=classes, run=run)
    assert report["images"] == 2
    assert loaded.classes == classes_before
    assert loaded.classes != classes
    assert list(loaded.model.state_dict()) == keys


@pytest.mark.slow
def test_boxes_made_on_the_device_equal_the_host_ones(sample_dir, mobilenet_weights):
    """box_backend="torch" (the CUDA default) on the CPU: every record of the real sample equals
    the scipy path's, top-5 and the GT-known extra class; only boxes leave the device."""
    loaded = load_model(
        arch="mobilenet_v2",
        weights=str(mobilenet_weights),
        classes_file=sample_dir / "LOC_synset_mapping.txt",
    )
    paths = sorted(str(p) for p in (sample_dir / "val").iterdir())
    records = {}
    for step in ("scipy", "torch"):
        localizer = Localizer(loaded, topk=5, fast=False, box_backend=step)
        assert localizer.boxes_on_device == (step == "torch")
        results = localizer.localize(paths, extra_classes=lambda path: [7], batch_size=32)
        records[step] = [(r.as_record(), [p.box for p in r.extra]) for r in results]
    assert len(records["torch"]) == 434
    assert records["torch"] == records["scipy"]


@pytest.mark.slow
def test_maxboxacc_on_the_device_equals_the_host_sweep(sample_dir, mobilenet_weights, tmp_path):
    from cam_cli.data.annotations import read_annotations

    for path in sorted((sample_dir / "val").iterdir())[:12]:
        (tmp_path / path.name).symlink_to(path)
    truth = read_annotations(sample_dir / "LOC_val_solution.csv")
    truth = {stem: a for stem, a in truth.items() if (tmp_path / f"{stem}.JPEG").exists()}
    loaded = load_model(
        arch="mobilenet_v2",
        weights=str(mobilenet_weights),
        classes_file=sample_dir / "LOC_synset_mapping.txt",
    )
    reports = [
        model_report(
            loaded,
            tmp_path,
            truth,
            maxboxacc=True,
            run=RunOptions(fast=False, box_backend=step),
            maxboxacc_protocol="cam-cli",  # the protocol the GPU sweep computes
        )
        for step in ("scipy", "torch")
    ]
    assert reports[0]["maxboxacc_v2"]["images"] == 12
    assert reports[0] == reports[1]


# --- moved from test_hardening.py (issue 13: what a careless user or an attacker tries) ---


def test_nan_weights_give_error_records_and_exit_1(fake, tmp_path):
    state = torch.load(fake / "weights.pth", weights_only=True)
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
             for k, v in state.items()}  # fmt: skip
    torch.save(state, tmp_path / "nan.pth")
    out = tmp_path / "o.jsonl"
    args = model_args(fake, tmp_path / "nan.pth")
    result = invoke("bbox", *args, "--images", fake / "imgs", "--output", out)
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]  # strict JSON
    assert len(records) == 3
    assert all(r["error"] == "non-finite scores (NaN) from the model" for r in records)
    assert "3 of 3 images failed" in result.stderr
    assert "NaN" not in out.read_text().replace("(NaN)", "")
    evaluated = invoke("eval", *args, "--images", fake / "imgs", "--annotations", fake / "xml",
                       "--json", tmp_path / "r.json",
                       "--per-image", tmp_path / "p.jsonl")  # fmt: skip
    assert evaluated.exit_code == 1, evaluated.output
    assert json.loads((tmp_path / "r.json").read_text())["failed_images"] == 3
    for line in (tmp_path / "p.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    # the ranked rules and ten-crop build their records in the same loop: flagged alike
    for extra in (["--box-rule", "zhou2016"], ["--ten-crop"]):
        ranked = tmp_path / f"ranked{len(extra[-1])}.jsonl"
        result = invoke("bbox", *args, *extra, "--images", fake / "imgs", "--output", ranked)
        assert result.exit_code == 1, result.output
        records = [json.loads(line) for line in ranked.read_text().splitlines()]
        assert all(r["error"] == "non-finite scores (NaN) from the model" for r in records)
