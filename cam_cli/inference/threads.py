"""Threads that keep the network busy: a decode thread ahead of it, and single-threaded lanes.

PIL decodes and resizes without the GIL, and torch ops release it, so threads (not processes)
overlap decoding with the forward pass and run one forward per core without copying the model.
Device decoding (nvJPEG) runs in a thread of its own on a CUDA stream of its own
(`decoded_beside`), handing each batch to the network with an event (`runtime.streams`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import torch

from cam_cli.runtime.streams import STREAMS, Streams, hand_over, running_on

if TYPE_CHECKING:
    from cam_cli.data.batches import ImageBatch

T = TypeVar("T")


def prefetched(items: Iterable[T], depth: int, name: str = "cam-cli-decode") -> Iterator[T]:
    """Iterate `items` in a background thread (``name``), at most `depth` ahead of the consumer.

    PIL decodes and resizes without the GIL, so decoding overlaps the forward pass. An
    exception in the thread is raised here, in order; closing the generator stops the thread.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((done, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            slots.put((done, error))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                slots.get(timeout=0.1)
        thread.join()


def decoded_beside(
    batches: Iterable[ImageBatch],
    decode: Callable[[Iterable[ImageBatch]], Iterable[ImageBatch]],
    device: torch.device,
    *,
    streams: Streams = STREAMS,
    depth: int = 2,
) -> Iterator[ImageBatch]:
    """``decode(batches)`` run in a thread of its own, at most ``depth`` batches ahead, its
    device work on a stream of its own; each batch reaches the caller's stream with a hand-off.

    Why a stream of its own: nvJPEG writes on a private stream that waits for nothing, so the
    stream its output blocks come from must be idle before each decode (`data.decode` drains
    the thread's own stream, `runtime.streams.drain_current`). Only this thread queues work on
    it, so that drain waits for the previous batch's decode and resize alone, never for the
    forward or the box backend, and no other thread can free a block into its pool meanwhile.
    The caller's stream waits on each batch's event before the pixels are used, and keeps
    them (``record_stream``), so their blocks are not reused under the forward.

    ``decode`` and ``streams`` are the decoder and the stream factory (fakes in tests).
    """
    side = streams.side(device)

    def produce() -> Iterator[tuple[ImageBatch, object]]:
        decoded = iter(decode(batches))
        while True:
            with running_on(side):
                batch = next(decoded, None)
                if batch is None:
                    return
                ready = side.record_event()
            yield batch, ready

    for batch, ready in prefetched(produce(), depth, name="cam-cli-device-decode"):
        hand_over([batch.pixels], ready, streams.current(device))  # in the consumer's thread
        yield batch


def single_threaded_pool(size: int) -> ThreadPoolExecutor:
    """`size` threads whose torch ops run on one thread each; torch's setting elsewhere is kept.

    torch.set_num_threads also sets the process-wide default that threads take on their first
    parallel op, so every pool thread is made to take 1 (and start) before the default is put
    back for the rest of the program.
    """
    default = torch.get_num_threads()
    started = threading.Barrier(size + 1)

    def one_thread() -> None:
        torch.set_num_threads(1)
        torch.get_num_threads()  # fixes this thread's count now

    pool = ThreadPoolExecutor(size, thread_name_prefix="cam-cli-lane", initializer=one_thread)
    waiting = [pool.submit(started.wait) for _ in range(size)]
    started.wait()
    for future in waiting:
        future.result()
    torch.set_num_threads(default)
    return pool
