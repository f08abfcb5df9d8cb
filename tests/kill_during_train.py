"""``python tests/kill_during_train.py WHEN ARGS...``: `cam-cli ARGS...` in this process, killed
with SIGKILL (what ``kill -9`` does) at WHEN, so the tests can prove that ``--resume`` recovers:

- ``step:N``: right after the N-th training step of this process and the checkpoint that step
  wrote, if one was due: the kill comes as the trainer starts its next step or its evaluation.
- ``save:N``: in the middle of the N-th checkpoint write, leaving behind the half-written temp
  file such a kill leaves (the previous checkpoint stays whole: `files.atomic`).
- ``chunk:N``: in the middle of the N-th chunk write of a feature cache: half the chunk's
  features stored (and flushed), its done flag not yet set.

The hooks are patched into the trainer here; the production code carries none.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's cam_cli

from cam_cli.cli.main import main  # noqa: E402
from cam_cli.files.atomic import temp_path  # noqa: E402
from cam_cli.training.checkpoints import CheckpointWriter  # noqa: E402
from cam_cli.training.feature_cache import FeatureCache  # noqa: E402
from cam_cli.training.trainer import Trainer  # noqa: E402

HALF_A_CHECKPOINT = b"PK\x03\x04 half a checkpoint"  # what a kill mid-write leaves


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_step(count: int) -> None:
    steps = [0]  # steps finished in this process
    train_step, evaluate = Trainer.train_step, Trainer.evaluate

    def counted_step(self, pixels, labels):
        if steps[0] == count:
            kill()
        result = train_step(self, pixels, labels)
        steps[0] += 1
        return result

    def checked_evaluate(self):  # step N ended an epoch: die before the epoch's writes
        if steps[0] == count:
            kill()
        return evaluate(self)

    Trainer.train_step, Trainer.evaluate = counted_step, checked_evaluate


def kill_during_save(count: int) -> None:
    saves = [0]
    save = CheckpointWriter.save

    def counted_save(self, obj, name):
        saves[0] += 1
        if saves[0] == count:
            with open(temp_path(self.run_dir / name), "wb") as handle:
                handle.write(HALF_A_CHECKPOINT)
            kill()
        return save(self, obj, name)

    CheckpointWriter.save = counted_save


def kill_during_chunk(count: int) -> None:
    chunks = [0]
    write_chunk = FeatureCache.write_chunk

    def counted_write(self, view, chunk, values, valid):
        chunks[0] += 1
        if chunks[0] == count:
            span = self.chunk_indices(chunk)
            half = len(span) // 2
            self.features[view, span.start : span.start + half] = values[:half] + 1000
            self.features.flush()
            kill()
        return write_chunk(self, view, chunk, values, valid)

    FeatureCache.write_chunk = counted_write


if __name__ == "__main__":
    when, args = sys.argv[1], sys.argv[2:]
    kind, _, count = when.partition(":")
    hooks = {"step": kill_after_step, "save": kill_during_save, "chunk": kill_during_chunk}
    hooks[kind](int(count))
    sys.argv = ["cam-cli", *args]
    main()
