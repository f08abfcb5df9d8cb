"""Threads that keep the network busy: a decode thread ahead of it, and single-threaded lanes.

PIL decodes and resizes without the GIL, and torch ops release it, so threads (not processes)
overlap decoding with the forward pass and run one forward per core without copying the model.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")


def prefetched(items: Iterable[T], depth: int) -> Iterator[T]:
    """Iterate `items` in a background thread, at most `depth` ahead of the consumer.

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

    thread = threading.Thread(target=produce, name="cam-cli-decode", daemon=True)
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
