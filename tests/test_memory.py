"""The inference batch bounded by memory (`runtime.memory`): issue 19 (8), where
``--input-size 4096`` with the default batch of 32 asked for ~2 GB per image at once and ended
in an allocation traceback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cam_cli.data.classes import anonymous_classes
from cam_cli.errors import SetupError
from cam_cli.inference.localizer import Localizer
from cam_cli.models.loading import LoadedModel
from cam_cli.models.preprocess import IMAGENET
from cam_cli.models.registry import build_model
from cam_cli.runtime import memory

CPU = torch.device("cpu")


def test_per_image_estimate():
    # 224^2 = 50176 pixels: (512 activation + 3 uint8 + 4 float input) bytes each, plus
    # 5 CAMs of 4 bytes per pixel, on the device and on the host.
    assert memory.per_image_bytes(224, 5) == 50176 * 519 + 2 * 4 * 5 * 50176 == 28_048_384
    assert memory.per_image_bytes(224, 5, crops=10) == 10 * 50176 * 519 + 2 * 4 * 5 * 50176
    # 4096 px: about 9 GB per image, so 32 of them were never going to fit
    assert memory.per_image_bytes(4096, 5) > 8 * 2**30


def test_batch_for_memory_takes_half_the_free_memory(monkeypatch, caplog):
    need = memory.per_image_bytes(512, 5)
    monkeypatch.setattr(memory, "free_memory", lambda device: 20 * need + 1)
    with caplog.at_level("INFO", logger="cam_cli"):
        assert memory.batch_for_memory(32, 512, 5, CPU) == 10
        assert memory.batch_for_memory(8, 512, 5, CPU) == 8  # fits: unchanged, no note
    assert len(caplog.records) == 1
    assert (
        caplog.records[0]
        .getMessage()
        .startswith("note: 10 images per forward pass instead of 32 at input size 512")
    )
    monkeypatch.setattr(memory, "free_memory", lambda device: need // 10)
    assert memory.batch_for_memory(32, 512, 5, CPU) == 1  # never below one image
    monkeypatch.setattr(memory, "free_memory", lambda device: None)
    assert memory.batch_for_memory(32, 512, 5, CPU) == 32  # cannot tell: as asked


def test_free_memory_of_this_machine():
    free = memory.free_memory(CPU)
    assert free is None or 0 < free < 2**50


def test_an_allocation_failure_is_one_line():
    words = r"^out of memory at input size 4096 with 3 images"
    with pytest.raises(SetupError, match=words), memory.out_of_memory(4096, 3):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 68719476736 bytes. Error code 12"
        )
    with pytest.raises(RuntimeError, match="shape"), memory.out_of_memory(224, 1):
        raise RuntimeError("shape '[1, 3, 1, 1]' is invalid")  # not memory: as it was


@pytest.mark.slow
def test_localize_in_smaller_batches_gives_the_same_results(tmp_path, monkeypatch, caplog):
    paths = []
    for i in range(5):
        rng = np.random.default_rng(i)
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    torch.manual_seed(0)
    loaded = LoadedModel("small-gap", build_model("small-gap", 3).eval(), anonymous_classes(3),
                         IMAGENET, 256)  # fmt: skip
    localizer = Localizer(loaded, topk=2, fast=False, lanes=1)
    whole = [r.as_record() for r in localizer.localize(paths, batch_size=32, workers=0)]
    need = memory.per_image_bytes(256, 2)
    monkeypatch.setattr(memory, "free_memory", lambda device: 4 * need)
    with caplog.at_level("INFO", logger="cam_cli"):
        assert localizer.batch_for_memory(32) == 2
        parts = [r.as_record() for r in localizer.localize(paths, batch_size=32, workers=0)]
    assert parts == whole
    assert len(whole) == 5
    assert all("predictions" in r for r in whole)
    assert any("2 images per forward pass instead of 32" in r.getMessage() for r in caplog.records)
    localizer.close()
