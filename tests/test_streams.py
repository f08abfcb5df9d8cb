"""Streams and hand-offs between the pipeline's threads (`runtime.streams`), checked on the CPU
with a fake stream factory that logs which thread queued what on which stream.

The race these tests guard against cannot be seen on a CPU: nvJPEG writes on a private stream
that waits for nothing, so the stream its output blocks come from must be idle when it
decodes, and only the decode thread may queue work there. The fake logs every use, drain,
event and ``record_stream`` with its thread, and a fake nvJPEG checks the stream at each call.
"""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial

import numpy as np
import pytest
import torch
import torchvision.io
from PIL import Image

from cam_cli.data.batches import collate_images
from cam_cli.data.decode import JpegRoutingDataset, decode_batches, decode_pending
from cam_cli.data.jpeg_codecs import jpeg_codec
from cam_cli.inference.localizer import Localizer
from cam_cli.inference.threads import decoded_beside
from cam_cli.models.loading import load_model
from cam_cli.runtime import streams as streams_module
from cam_cli.runtime.streams import HostCopy, Stream, hand_over, running_on, to_device

CPU = torch.device("cpu")
SIZE = 32
DECODE_THREAD = "cam-cli-device-decode"


class FakeEvent:
    def __init__(self, log: list, stream: FakeStream) -> None:
        self.log, self.stream = log, stream

    def synchronize(self) -> None:
        self.log.append((self.stream, "host waits", threading.current_thread().name, self))


class FakeStream:
    """Logs ``(stream, op, thread, object)`` for every call; the stream API of `Stream`."""

    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def __repr__(self) -> str:
        return self.name

    def _note(self, op: str, thing: object = None) -> None:
        self.log.append((self, op, threading.current_thread().name, thing))

    @contextmanager
    def context(self) -> Iterator[None]:
        self._note("use")  # work queued on it from here on
        yield

    def synchronize(self) -> None:
        self._note("synchronize")

    def record_event(self) -> FakeEvent:
        event = FakeEvent(self.log, self)
        self._note("record_event", event)
        return event

    def wait_event(self, event: FakeEvent) -> None:
        self._note("wait_event", event)

    def keep(self, tensor: torch.Tensor) -> None:
        self._note("keep", tensor)


class FakeStreams:
    """`runtime.streams.Streams` with fakes: a new one per `side`, one per thread for
    `current` (as CUDA's current stream is per thread)."""

    def __init__(self) -> None:
        self.log: list = []
        self.sides: list[FakeStream] = []
        self._current: dict[str, FakeStream] = {}
        self._lock = threading.Lock()

    def side(self, device: torch.device) -> FakeStream:
        stream = FakeStream(f"side{len(self.sides)}", self.log)
        self.sides.append(stream)
        return stream

    def current(self, device: torch.device) -> FakeStream:
        name = threading.current_thread().name
        with self._lock:
            return self._current.setdefault(name, FakeStream(f"current({name})", self.log))

    def ops(self, stream: FakeStream) -> list[tuple[str, str, object]]:
        return [(op, thread, thing) for s, op, thread, thing in self.log if s is stream]


def _jpegs(folder, count: int) -> list[str]:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(count):
        path = folder / (f"{i}.png" if i == 3 else f"{i}.jpg")  # one PNG: the PIL path
        pixels = rng.integers(0, 255, (24 + i, 40 + 3 * i, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def _routed_batches(paths: list[str], per_batch: int) -> list:
    routed = JpegRoutingDataset(paths, SIZE)
    items = [routed[i] for i in range(len(paths))]
    return [collate_images(items[i : i + per_batch]) for i in range(0, len(items), per_batch)]


def test_the_decode_thread_alone_uses_its_stream_drained_before_each_decode(
    tmp_path, monkeypatch, request
):
    """The decode thread's stream: used by that thread only, drained before every nvJPEG call
    (nothing queued on it since), while another thread queues work of its own meanwhile; each
    batch reaches the consumer after its stream waited on the batch's event and kept its
    pixels. The pixels are those of the decode without a thread."""
    fake = FakeStreams()
    real_decode = torchvision.io.decode_jpeg
    decodes: list[int] = []

    def fake_nvjpeg(data, *args, **kwargs):
        # what it finds is checked below: an exception here would send the files to PIL
        (side,) = fake.sides
        ops = fake.ops(side)
        drained = bool(ops) and ops[-1][0] == "synchronize"  # nothing queued since
        users = {thread for _, thread, _ in ops}
        decodes.append((threading.current_thread().name, drained, users))
        return real_decode(data, *args, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", fake_nvjpeg)
    # the fake stands in for torchvision's decoder, the one that needs the drain
    monkeypatch.setenv("CAM_CLI_JPEG_CODEC", "torchvision")
    jpeg_codec.cache_clear()
    request.addfinalizer(jpeg_codec.cache_clear)
    paths = _jpegs(tmp_path, 7)
    decode = partial(decode_batches, device=CPU, size=SIZE, max_pixels=10**8)
    got = []
    with ThreadPoolExecutor(1, "box") as box_thread:
        for batch in decoded_beside(_routed_batches(paths, 2), decode, CPU, streams=fake):
            consumer = fake.current(CPU)
            waited, kept = fake.ops(consumer)[-2:]
            assert waited[:2] == ("wait_event", "MainThread")
            assert waited[2].stream is fake.sides[0]  # the event of the decode thread's stream
            assert kept[0] == "keep"
            assert kept[2] is batch.pixels
            # the race of the issue: another thread queues and frees work meanwhile
            box_thread.submit(lambda: fake.current(CPU).record_event()).result()
            got.append(batch)

    (side,) = fake.sides
    assert {thread for _, thread, _ in fake.ops(side)} == {DECODE_THREAD}
    recorded = [thing for op, _, thing in fake.ops(side) if op == "record_event"]
    consumer = fake.current(CPU)
    waited = [thing for op, _, thing in fake.ops(consumer) if op == "wait_event"]
    assert waited == recorded
    assert len(recorded) == 4
    # one batched call per batch (the PNG went to the PIL path), each in the decode thread,
    # on its drained stream, which no other thread had used
    assert decodes == [(DECODE_THREAD, True, {DECODE_THREAD})] * 4
    for batch in got:
        reference = decode_pending(_routed_batches([s.path for s in batch.items], 9)[0], CPU,
                                   SIZE, 10**8)  # fmt: skip
        assert torch.equal(batch.pixels, reference.pixels)
    assert [s.path for b in got for s in b.items] == paths


def test_a_decode_error_reaches_the_consumer_and_the_thread_stops():
    def failing(batches):
        yield from []
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(decoded_beside([], failing, CPU, streams=FakeStreams()))


def test_hand_over_waits_then_keeps_and_the_host_copy_waits_once():
    fake = FakeStreams()
    producer, consumer = fake.side(CPU), fake.side(CPU)
    a, b = torch.arange(3), torch.ones(2)
    with running_on(producer):
        ready = producer.record_event()
    hand_over([a, None, b], ready, consumer)
    assert [(op, thing) for op, _, thing in fake.ops(consumer)] == [
        ("wait_event", ready), ("keep", a), ("keep", b)
    ]  # fmt: skip
    copy = HostCopy({"a": a, "b": b}, consumer)
    assert not [op for op, _, _ in fake.ops(consumer) if op == "host waits"]
    host = copy.wait()
    assert [op for op, _, _ in fake.ops(consumer)][-3:] == ["use", "record_event", "host waits"]
    np.testing.assert_array_equal(host["a"], [0, 1, 2])
    assert np.shares_memory(host["a"], a.numpy())  # on the CPU: no copy at all


def test_the_cpu_path_is_a_no_op():
    stream = Stream()
    assert stream.record_event() is None
    stream.wait_event(None)
    stream.synchronize()
    x = torch.arange(4)
    stream.keep(x)  # record_stream would refuse a CPU tensor
    assert to_device(x, CPU) is x
    with running_on(stream):
        streams_module.drain_current(CPU)
    assert HostCopy({"x": x}, stream).wait()["x"].tolist() == [0, 1, 2, 3]


@pytest.mark.slow
def test_the_pipeline_with_the_decode_thread_and_fake_streams_gives_the_same_results(
    sample_dir, mobilenet_weights
):
    """decode="device" on the CPU, a few real images: the same records with the decode thread
    as without, for the scipy and the torch box step; the main thread never waits for the
    device (no drain, no event wait), the torch step's stream is the box thread's alone and
    waits on the forward's event first."""
    loaded = load_model(
        arch="mobilenet_v2",
        weights=str(mobilenet_weights),
        classes_file=sample_dir / "LOC_synset_mapping.txt",
    )
    paths = sorted(str(p) for p in (sample_dir / "val").iterdir())[:6]

    def records(step: str, thread: bool, fake: FakeStreams | None = None) -> list:
        localizer = Localizer(
            loaded, topk=2, fast=False, decode="device", box_backend=step, lanes=1
        )
        assert localizer.box_backend == step
        assert localizer.boxes_on_device == (step == "torch")
        localizer.decode_thread = thread
        if fake is not None:
            localizer.streams = fake
        results = localizer.localize(paths, extra_classes=lambda path: [3], batch_size=2)
        return [(r.as_record(), [p.box for p in r.extra]) for r in results]

    reference = records("scipy", thread=False)
    for step in ("scipy", "torch"):
        fake = FakeStreams()
        assert records(step, thread=True, fake=fake) == reference
        main_waits = [op for _, op, thread, _ in fake.log if thread == "MainThread"]
        assert "synchronize" not in main_waits
        assert "host waits" not in main_waits
        users = {side: {thread for _, thread, _ in fake.ops(side)} for side in fake.sides}
        assert sorted(map(sorted, users.values())) == sorted(
            [[DECODE_THREAD]] + ([["cam-cli-box_0"]] if step == "torch" else [])
        )  # each side stream used by its own thread alone
        if step == "torch":
            (box_side,) = [side for side, threads in users.items() if threads != {DECODE_THREAD}]
            ops = fake.ops(box_side)
            assert ops[0][0] == "use"
            assert ops[1][0] == "wait_event"
            assert ops[1][2].stream is fake.current(torch.device("cpu"))  # the forward's
            assert [op for op, _, _ in ops[2:8]] == ["keep"] * 6  # every tensor that crosses


# --- on CUDA: host syncs counted with torch.cuda.set_sync_debug_mode ------------------------


def _count_syncs(work) -> Counter:
    """Host syncs during ``work()`` per thread name, as set_sync_debug_mode("warn") reports
    them (it sees syncs made through PyTorch's CUDA wrappers, not a library's own)."""
    syncs: Counter = Counter()

    def note(message, category, *args, **kwargs) -> None:
        if "synchroniz" in str(message):
            syncs[threading.current_thread().name.rstrip("_0123456789")] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note
        torch.cuda.set_sync_debug_mode("warn")
        try:
            work()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return syncs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("step", ["scipy", "triton", "torch"])
def test_host_syncs_per_batch_on_cuda(fake, tmp_path, step):
    """bbox-like runs on CUDA (device decoding where torchvision has it, an extra class as eval
    asks): the main thread never waits for the device with a sync-free box step; the box
    thread waits once per batch. Run with -s to see every thread's count."""
    from conftest import model_report, write_image, write_xml

    from cam_cli.boxes.backends import triton_problem
    from cam_cli.data.annotations import read_annotations
    from cam_cli.settings import RunOptions

    cuda = torch.device("cuda")
    if step == "triton" and triton_problem(cuda) is not None:
        pytest.skip(f"triton: {triton_problem(cuda)}")
    (tmp_path / "imgs").mkdir()
    paths = []
    for i in range(16):
        path = tmp_path / "imgs" / f"{i:02d}.jpg"
        write_image(path, seed=i, size=(64, 48))
        write_xml(tmp_path / "xml" / f"{i:02d}.xml", 64, 48, [("n01440764", (4, 5, 40, 30))])
        paths.append(str(path))
    loaded = load_model(arch="small-gap", weights=str(fake / "weights.pth"),
                        classes_file=fake / "classes.txt", device="cuda")  # fmt: skip
    localizer = Localizer(loaded, device="cuda", box_backend=step, topk=2, fast=False, workers=1)
    list(localizer.localize(paths[:4], batch_size=4))  # warm-up: cuDNN, pinned blocks, probe
    batches = 4

    def bbox() -> None:
        results = list(localizer.localize(paths, extra_classes=lambda p: [1], batch_size=4))
        assert len(results) == 16
        assert all(r.error is None for r in results)

    syncs = _count_syncs(bbox)
    print(f"\nbbox, box step {step}, decode {localizer.decode}: {dict(syncs)} in {batches} batches")
    if step != "torch":
        assert syncs["MainThread"] == 0, syncs
        assert syncs["cam-cli-box"] <= batches, syncs
    assert syncs["cam-cli-device-decode"] <= 2 * batches, syncs  # the drain (+ torchvision's?)
    if step == "torch":
        return
    truth = read_annotations(tmp_path / "xml")
    run = RunOptions(device="cuda", box_backend=step, fast=False, batch_size=4, workers=1)

    def sweep() -> None:
        report = model_report(loaded, tmp_path / "imgs", truth, maxboxacc=True, run=run,
                                maxboxacc_protocol="cam-cli")  # fmt: skip
        assert report["images"] == 16

    syncs = _count_syncs(sweep)
    print(f"eval --maxboxacc cam-cli, box step {step}: {dict(syncs)} in {batches} batches")
    # the main thread's count includes the run's set-up (the model's copy to the device)
    assert syncs["cam-cli-box"] <= batches, syncs
    assert syncs["cam-cli-device-decode"] <= 2 * batches, syncs
