"""Host syncs of a piece of work on CUDA, per thread and per call site (for
`scripts/device_checks/device_stages.py`).

Two sources, because neither sees every host wait:
- ``torch.cuda.set_sync_debug_mode("warn")``: a warning for each stream or device synchronize,
  blocking copy (``.cpu()``, ``.item()``, a pageable ``.to("cuda")``) and op whose output size
  depends on the data (``nonzero``) made through PyTorch's CUDA wrappers;
- ``torch.cuda.Event.synchronize``, which that mode does not report (it calls
  ``cudaEventSynchronize`` directly): `runtime.streams.HostCopy.wait`, the pipeline's one host
  wait per batch, is one. It is counted by wrapping the method for the time of the count.
A library's own waits (nvJPEG inside torchvision, triton's launcher) are seen by neither.

A sync belongs to the batch loop when it is made in a thread other than the main one (decode,
box and pin-memory threads), or in the main thread below ``Localizer._run``; the rest (model
copies to the device, probes, the report) is set-up, shown apart and not divided by batches.
"""

from __future__ import annotations

import threading
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_OWN_FILES = {Path(__file__).resolve(), Path(warnings.__file__).resolve()}


@dataclass
class SyncReport:
    """What `count_syncs` saw; ``sites`` maps "kind at call site" to a count."""

    in_loop: int = 0
    setup: int = 0
    by_thread: Counter = field(default_factory=Counter)
    sites: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)

    def per_batch(self, batches: int) -> float:
        return self.in_loop / max(1, batches)

    def as_dict(self, batches: int) -> dict:
        return {
            "batches": batches,
            "in_loop": self.in_loop,
            "per_batch": self.per_batch(batches),
            "setup": self.setup,
            "by_thread": dict(self.by_thread),
            "kinds": dict(self.kinds),
            "top_sites": self.sites.most_common(12),
        }


def _thread_name() -> str:
    """``cam-cli-box_0`` -> ``cam-cli-box``: one name per pool, as tests/test_streams.py does."""
    return threading.current_thread().name.rstrip("_0123456789") or "thread"


def _site(stack: list[traceback.FrameSummary]) -> tuple[str, bool]:
    """The two innermost frames of this repository (else the innermost frame), and whether
    the stack passes through ``Localizer._run`` (the batch loop)."""
    frames = [f for f in stack if Path(f.filename).resolve() not in _OWN_FILES]
    in_run = any(f.name == "_run" and f.filename.endswith("localizer.py") for f in frames)
    ours = []
    for frame in reversed(frames):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(REPO) and "scripts" not in path.parts[len(REPO.parts) : -1]:
            ours.append(f"{path.relative_to(REPO)}:{frame.lineno} {frame.name}")
            if len(ours) == 2:
                break
    if not ours and frames:
        last = frames[-1]
        ours = [f"{Path(last.filename).name}:{last.lineno} {last.name}"]
    return " <- ".join(ours) or "?", in_run


def count_syncs(work: Callable[[], object]) -> SyncReport:
    """Run ``work()`` with both sources listening; every thread's syncs are counted."""
    import torch

    report = SyncReport()
    lock = threading.Lock()
    original = torch.cuda.Event.synchronize

    def note(kind: str) -> None:
        site, in_run = _site(traceback.extract_stack()[:-2])
        thread = _thread_name()
        in_loop = in_run or thread != "MainThread"
        with lock:
            report.by_thread[thread] += 1
            report.kinds[kind] += 1
            if in_loop:
                report.in_loop += 1
                report.sites[f"{kind} at {site}"] += 1
            else:
                report.setup += 1
                report.sites[f"(set-up) {kind} at {site}"] += 1

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if "synchroniz" in str(message):
            note("sync-debug")

    def event_synchronize(self) -> None:
        note("event wait")
        original(self)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = showwarning
        torch.cuda.Event.synchronize = event_synchronize
        torch.cuda.set_sync_debug_mode("warn")
        try:
            work()
        finally:
            torch.cuda.set_sync_debug_mode("default")
            torch.cuda.Event.synchronize = original
    return report
