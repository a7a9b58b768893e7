"""How long to wait for a first answer from elsewhere (an object store, a Dask scheduler) before
giving up with one line (``--timeout``): a server that accepts a connection and never answers
would otherwise hold a run forever, since neither pyarrow's GCS client nor Dask's handshake
bounds that wait. The bound is one setting of the process (``answer_timeout``), so every
filesystem call sees it, whichever thread makes it (a reader thread, a Dask task)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from gaussnll.core.errors import OptionError

DEFAULT_TIMEOUT_S = 30.0
T = TypeVar("T")
_bound = [DEFAULT_TIMEOUT_S]


def timeout_seconds() -> float:
    """The bound in force."""
    return _bound[0]


def checked_timeout(seconds: float) -> float:
    """``seconds`` if it is a positive, finite number of seconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise OptionError("timeout", f"must be a number of seconds. Got {seconds!r} instead.")
    if not (math.isfinite(seconds) and seconds > 0):
        raise OptionError(
            "timeout", f"must be a positive, finite number of seconds. Got {seconds!r} instead."
        )
    return float(seconds)


@contextmanager
def answer_timeout(seconds: float | None) -> Iterator[float]:
    """The bound is ``seconds`` for the block (None: unchanged)."""
    previous = _bound[0]
    if seconds is not None:
        _bound[0] = checked_timeout(seconds)
    try:
        yield _bound[0]
    finally:
        _bound[0] = previous


def answered(call: Callable[[], T]) -> T:
    """``call()``'s result or exception, or ``TimeoutError`` when it has given neither within
    the bound. It runs in a daemon thread, left behind if it never returns: a blocked call into
    C++ (a stalled request) cannot be interrupted, but the run need not wait for it."""
    outcome: list[tuple[bool, object]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # handed to the caller's thread
            outcome.append((False, error))
        finally:
            done.set()

    threading.Thread(target=run, name="gaussnll-answer", daemon=True).start()
    if not done.wait(timeout_seconds()):
        raise TimeoutError(f"no answer within {timeout_seconds():g} s")
    succeeded, value = outcome[0]
    if not succeeded:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]
