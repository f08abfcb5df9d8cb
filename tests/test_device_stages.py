"""scripts/device_checks/sync_count.py (which syncs count as the batch loop's) and
scripts/device_checks/device_stages.py as the GPU check runs it, tried on the CPU: the syncs are
faked here, the stages are real."""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "device_checks"))

import sync_count  # noqa: E402

SYNC = "called a synchronizing CUDA operation"


@pytest.fixture
def no_debug_mode(monkeypatch):
    """set_sync_debug_mode needs a CUDA driver; the warnings are faked instead."""
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)


def test_main_thread_syncs_are_set_up_and_other_threads_are_the_loop(no_debug_mode):
    def work() -> None:
        warnings.warn(SYNC, stacklevel=1)  # e.g. the model's copy to the device
        warnings.warn("something else", stacklevel=1)  # not a sync: not counted
        box = threading.Thread(
            target=lambda: warnings.warn(SYNC, stacklevel=1), name="cam-cli-box_0"
        )
        box.start()
        box.join()
        torch.cuda.Event().synchronize()  # never recorded: returns at once, still counted

    before = torch.cuda.Event.synchronize
    report = sync_count.count_syncs(work)
    assert torch.cuda.Event.synchronize is before  # the wrapper is gone again
    assert report.setup == 2
    assert report.in_loop == 1
    assert report.by_thread == {"MainThread": 2, "cam-cli-box": 1}
    assert report.kinds == {"sync-debug": 2, "event wait": 1}
    assert report.as_dict(batches=2)["per_batch"] == 0.5


def test_syncs_below_localizer_run_are_the_loop(no_debug_mode, fake, monkeypatch):
    from cam_cli.api import write_boxes
    from cam_cli.inference.localizer import Localizer
    from cam_cli.models.loading import load_model

    loaded = load_model(arch="small-gap", weights=str(fake / "weights.pth"),
                        classes_file=fake / "classes.txt")  # fmt: skip
    localizer = Localizer(loaded, device="cpu", lanes=1, topk=1, batch_size=2, fast=False)
    launch = Localizer.launch_batch

    def launch_with_a_sync(self, *args, **kwargs):
        warnings.warn(SYNC, stacklevel=1)
        return launch(self, *args, **kwargs)

    monkeypatch.setattr(Localizer, "launch_batch", launch_with_a_sync)
    paths = sorted(str(p) for p in (fake / "imgs").glob("*.jpg"))[:4]
    with open(os.devnull, "w") as devnull:
        report = sync_count.count_syncs(lambda: write_boxes(localizer, paths, output=devnull))
    assert report.in_loop == 2, report
    assert report.setup == 0, report
    (site,) = report.sites
    assert "cam_cli/inference/localizer.py:" in site  # the loop that launched it


@pytest.mark.slow
def test_device_stages_dry_run_on_the_cpu(sample_dir, mobilenet_weights, tmp_path, capsys):
    import device_stages

    code = device_stages.main([
        "--device", "cpu", "--images", str(sample_dir / "val"),
        "--classes", str(sample_dir / "LOC_synset_mapping.txt"),
        "--annotations", str(sample_dir / "LOC_val_solution.csv"),
        "--weights", str(mobilenet_weights), "--val500", str(tmp_path / "none"),
        "--batch-size", "4", "--batches", "1", "--decode-images", "8",
        "--compare-images", "4", "--parts", "stages,syncs,decode", "--out", str(tmp_path),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "check stages' pieces give what Localizer.launch_batch gives" in out
    assert out.count("PASS") == 1
    assert "FAIL" not in out
    assert out.count("NOT MEASURED (CUDA only") == 2  # the sync targets
    report = json.loads((tmp_path / "stages.json").read_text())
    stages = [row["stage"].split(":")[0] for row in report["stages"]["rows"]]
    assert stages[:4] == ["read", "decode", "forward", "CAMs"]
    assert "box step torch (device)" in stages
    assert "box step scipy (host)" in stages
    pixels = report["decode"]["sample"]["pixels"]
    assert pixels["images"] == 4
    assert pixels["decoded_on_device"] == 4
    assert pixels["max_abs"] <= 2
