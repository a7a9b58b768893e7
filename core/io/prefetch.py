"""Run an iterator one step ahead on a background thread.

pyarrow releases the GIL while it reads and decodes, so reading chunk ``k + 1`` overlaps the
computation on chunk ``k``. Exceptions from the producer are re-raised in the consumer. When
the consumer stops (done, failed or closed), the producer is stopped and given a moment to
finish the batch it is reading: a reader thread still inside pyarrow when the interpreter
exits aborts the process. (A read blocked on a pipe is not waited for.)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

T = TypeVar("T")
_POLL_SECONDS = 0.1
_JOIN_SECONDS = 0.5
_DONE = object()


def prefetched(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """Yield ``items`` in order while up to ``depth`` of them are produced ahead."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def put(entry: object) -> bool:
        while not stopped.is_set():
            try:
                buffer.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as error:
            put((_DONE, error))

    thread = threading.Thread(target=produce, name="gaussnll-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stopped.set()
        thread.join(_JOIN_SECONDS)
