"""A run folder's files, each written atomically: last.pt and best.pt, metrics.jsonl and
config.toml; plus the RNG states a mid-epoch resume restores.

Checkpoints hold only tensors and plain containers, so ``torch.load(weights_only=True)`` reads
them; `files.atomic` writes them, so ``kill -9`` at any moment leaves the previous file intact.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cam_cli.errors import InputFileError
from cam_cli.files.atomic import save_torch_atomic, write_text_atomic
from cam_cli.files.reading import loads, text_lines
from cam_cli.training.config import TrainConfig, dump_toml

LAST, BEST, METRICS, CONFIG_FILE = "last.pt", "best.pt", "metrics.jsonl", "config.toml"


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain values (weights_only-loadable); they matter for dropout.
    Data order and augmentation are seeded per epoch/image and need no saved state."""
    numpy_state = np.random.get_state()
    assert isinstance(numpy_state, tuple)  # the legacy global generator is MT19937: a tuple
    kind, keys, pos, has_gauss, gauss = numpy_state
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {
            "version": version,
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """The states `rng_state` saved, put back (a mid-epoch resume of one process)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))  # fmt: skip
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


class CheckpointWriter:
    """Writes last.pt / best.pt into the run folder atomically (rank 0 only)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def save(self, obj: dict[str, Any], name: str) -> Path:
        path = self.run_dir / name
        save_torch_atomic(obj, path, derived=True)
        return path


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.is_file():
        return []
    rows = []
    for number, line in text_lines(path):  # bounded (`files.reading`)
        if line.strip():
            try:
                rows.append(loads(line, f"{path}:{number}"))
            except InputFileError:
                continue  # cannot happen with atomic rewrites; tolerate hand edits
    return rows


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl atomically: one line per epoch, never a torn line."""
    by_epoch = {int(row["epoch"]): row for row in rows}
    text = "".join(json.dumps(by_epoch[epoch]) + "\n" for epoch in sorted(by_epoch))
    write_text_atomic(text, run_dir / METRICS, derived=True)


def write_run_config(run_dir: Path, config: TrainConfig) -> None:
    header = "Resolved by `cam-cli train`; pass it as --config to repeat this run."
    write_text_atomic(dump_toml(config.to_dict(), header), run_dir / CONFIG_FILE, derived=True)
