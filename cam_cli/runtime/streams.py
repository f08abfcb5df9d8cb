"""CUDA streams, events and hand-offs between the pipeline's threads, in one place.

Three threads touch the GPU: the decode thread (nvJPEG and the resize), the main thread (the
forward and the CAMs) and, for a box backend with host syncs inside (torch), the box thread. Each
queues its work on a stream of its own, so a host sync in one (a drain before nvJPEG, a
``nonzero`` in the box backend) waits for that thread's work alone, never for another's.

The rules that make this correct on CUDA by construction:
- a tensor made on one stream and used on another crosses with `hand_over`: the consumer's
  stream waits on the producer's event (no host wait), and the tensor is marked as used by the
  consumer (``record_stream``), so the caching allocator does not give its block to the
  producer's stream again before the consumer is done with it;
- host tensors go to the device pinned and ``non_blocking`` (`to_device`); the host caching
  allocator keeps a pinned block until the copy that reads it is done;
- everything the host needs of a batch comes back in one `HostCopy`: copies queued
  ``non_blocking`` into pinned buffers, one event, one host wait;
- `drain_current` synchronizes the stream of the calling thread only (the decode thread's own,
  before nvJPEG, which writes on a private stream that waits for nothing: `data.decode`).

On the CPU every piece is a no-op (no stream, no event, no copy), so the CPU path computes
exactly what it computed before. `Streams` is the one thing to replace in tests: a fake that
logs which thread queued what on which stream.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

_local = threading.local()  # the stream this thread queues its work on (`running_on`)


class Stream:
    """A CUDA stream (``raw``), or none on the CPU, where every method does nothing."""

    def __init__(self, raw: torch.cuda.Stream | None = None) -> None:
        self.raw = raw

    def context(self) -> contextlib.AbstractContextManager:
        """While open, this thread's device work is queued on this stream."""
        return contextlib.nullcontext() if self.raw is None else torch.cuda.stream(self.raw)

    def synchronize(self) -> None:
        """Wait on the host until this stream's queued work is done (a host sync)."""
        if self.raw is not None:
            self.raw.synchronize()

    def record_event(self) -> Any:
        """An event marking the work queued on this stream so far (None on the CPU)."""
        return None if self.raw is None else self.raw.record_event()

    def wait_event(self, event: Any) -> None:
        """Later work on this stream waits for ``event`` on the device; the host does not."""
        if self.raw is not None and event is not None:
            self.raw.wait_event(event)

    def keep(self, tensor: Tensor) -> None:
        """``tensor`` is used on this stream: its block is not reused until this stream's work
        queued before the tensor is freed is done (``record_stream``)."""
        if self.raw is not None and tensor.is_cuda:
            tensor.record_stream(self.raw)


class Streams:
    """Where streams come from: a new one for a thread of its own, or the calling thread's."""

    def side(self, device: torch.device) -> Stream:
        """A new stream on ``device`` (none on the CPU)."""
        return Stream(torch.cuda.Stream(device)) if device.type == "cuda" else Stream()

    def current(self, device: torch.device) -> Stream:
        """The stream the calling thread queues its work on now (none on the CPU)."""
        return Stream(torch.cuda.current_stream(device)) if device.type == "cuda" else Stream()


STREAMS = Streams()


@contextlib.contextmanager
def running_on(stream: Stream) -> Iterator[Stream]:
    """This thread's device work goes on ``stream`` while open (`drain_current` knows it)."""
    before = getattr(_local, "stream", None)
    _local.stream = stream
    try:
        with stream.context():
            yield stream
    finally:
        _local.stream = before


def drain_current(device: torch.device) -> None:
    """Synchronize the calling thread's stream, not the device: the one `running_on` opened,
    else (a thread with no stream of its own) the current CUDA stream; nothing on the CPU."""
    stream = getattr(_local, "stream", None)
    if stream is not None:
        stream.synchronize()
    elif device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()


def hand_over(tensors: Iterable[Tensor | None], event: Any, consumer: Stream) -> None:
    """Tensors made on another stream (done at ``event``), now used on ``consumer``: it waits
    for them on the device, and keeps them from being reused under it."""
    consumer.wait_event(event)
    for tensor in tensors:
        if tensor is not None:
            consumer.keep(tensor)


def to_device(host: Tensor, device: torch.device) -> Tensor:
    """A host tensor on ``device``: on CUDA pinned and copied ``non_blocking`` (no host wait;
    the pinned block is held until the copy is done), elsewhere ``host.to(device)`` (a tensor
    already on ``device`` is returned as it is)."""
    if device.type != "cuda" or host.device.type != "cpu":
        return host.to(device)
    if not host.is_pinned():
        host = host.pin_memory()
    return host.to(device, non_blocking=True)


class HostCopy:
    """Device tensors on their way to the host, all in one go: each copied ``non_blocking``
    into a pinned buffer on ``stream`` (the calling thread's), then one event; `wait` is the
    one host wait. Host tensors are taken as they are (the CPU path: no copy at all)."""

    def __init__(self, tensors: Mapping[str, Tensor], stream: Stream) -> None:
        self._host: dict[str, Tensor] = {}
        with stream.context():
            for name, tensor in tensors.items():
                if tensor.is_cuda:
                    buffer = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
                    buffer.copy_(tensor, non_blocking=True)
                else:
                    buffer = tensor.cpu()
                self._host[name] = buffer
            self._event = stream.record_event()

    def wait(self) -> dict[str, np.ndarray]:
        """The arrays, once the copies are done (the views share the pinned buffers)."""
        if self._event is not None:
            self._event.synchronize()
        return {name: tensor.numpy() for name, tensor in self._host.items()}
