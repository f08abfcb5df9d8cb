"""Loading a model (`models.loading`, `models.weights`): broken checkpoints and weights files
that are empty, FIFOs, pickles or odd state_dicts are one line and exit 2, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import WNIDS, invoke, one_line_error

from cam_cli.models.checkpoint_format import CHECKPOINT_FORMAT
from cam_cli.models.preprocess import IMAGENET


def _checkpoint(fake: Path, path: Path, **changes) -> Path:
    data = {
        "format": CHECKPOINT_FORMAT, "arch": "small-gap",
        "classes": [{"index": i, "wnid": w, "name": w} for i, w in enumerate(WNIDS)],
        "model": torch.load(fake / "weights.pth", weights_only=True),
        "preprocessing": IMAGENET.to_dict(), "input_size": 64,
    }  # fmt: skip
    data.update(changes)
    for key in [k for k, v in data.items() if v is None]:
        del data[key]
    torch.save(data, path)
    return path


@pytest.mark.parametrize(
    ("changes", "words"),
    [({"arch": "no-such-net"}, "no-such-net"), ({"arch": None}, "arch"),
     ({"classes": "abc"}, "damaged"), ({"classes": [{"wnid": "x"}]}, "damaged"),
     # issue 19 (8, 9): tracebacks or per-image ZeroDivisionErrors before
     ({"preprocessing": {**IMAGENET.to_dict(), "mean": [0.5, 0.5]}}, "mean must be 3"),
     ({"model": [1, 2]}, "its weights are a list, not a state_dict"),
     ({"classes": []}, "its class list is empty"),
     ({"input_size": 0}, "its input_size 0: must be between 32 and 4096"),
     ({"input_size": -5}, "its input_size -5: must be between 32 and 4096"),
     ({"input_size": 100000}, "its input_size 100000: must be between 32 and 4096")],
)  # fmt: skip
def test_broken_checkpoints(fake, tmp_path, changes, words):
    checkpoint = _checkpoint(fake, tmp_path / "c.pt", **changes)
    result = invoke("bbox", "--checkpoint", checkpoint, "--images", fake / "imgs", "-q")
    one_line_error(result, "c.pt", words)


def test_weights_files_that_are_empty_fifos_or_pickles(fake, tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    base = ["bbox", "--arch", "small-gap", "--images", fake / "imgs", "-q", "--weights"]
    one_line_error(invoke(*base, empty), "empty file (0 bytes)")
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    one_line_error(invoke(*base, fifo), "not a regular file")

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    result = invoke(*base, tmp_path / "evil.pth")
    one_line_error(result, "cannot be loaded safely")
    assert "weights_only" not in result.stderr
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    result = invoke(*base, tmp_path / "garbage.pth")
    one_line_error(result, "not a loadable weights file")
    assert "weights_only" not in result.stderr


def test_state_dicts_with_an_int_key_or_no_classes(fake, tmp_path):
    """Issue 19 (9): an int key was an AttributeError traceback, a classifier of 0 rows a
    RuntimeError on the first image."""
    weights = torch.load(fake / "weights.pth", weights_only=True)
    torch.save({**weights, 3: torch.zeros(1)}, tmp_path / "int.pth")
    torch.save({k: v[:0] if v.shape[:1] == (3,) else v for k, v in weights.items()},
               tmp_path / "zero.pth")  # fmt: skip
    base = ["bbox", "--arch", "small-gap", "--images", fake / "imgs", "-q", "--weights"]
    one_line_error(invoke(*base, tmp_path / "int.pth"), "int.pth", "the key 3 is not a string")
    one_line_error(invoke(*base, tmp_path / "zero.pth"), "zero.pth", "has 0 classes")
