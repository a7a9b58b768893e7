"""stdout and stderr as the commands use them: a report that cannot be written is an output
error (exit 2), a reader that closed the pipe early is exit 141 whatever the format, and a
closed standard stream ends the run with a sensible code instead of a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from queue import Queue
from threading import Thread

from rich.console import Console

from gaussnll.cli.exits import EXIT_BAD_INPUT
from gaussnll.core import OutputError

STDOUT = "<stdout>"


class StdoutConsole(Console):
    """rich's console on stdout, except that a closed pipe raises ``BrokenPipeError`` (rich
    itself exits with code 1, which means a failed gate here)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


@contextmanager
def writing_stdout() -> Iterator[None]:
    """Report a failed write to stdout (a full disk) as an OutputError; a closed pipe stays a
    BrokenPipeError."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputError(f"cannot write {STDOUT}: {error}") from error


def write_behind(pieces: Iterable[str]) -> None:
    """Write ``pieces`` to stdout on a second thread while the next ones are made: writing
    10^5 groups' JSON (500 MB; the kernel's copy into a file took 0.9 s of 1.3 s) overlaps
    making it. A failed write stops the making and is raised here."""
    queue: Queue[str | None] = Queue(maxsize=2)
    failures: list[BaseException] = []

    def drain() -> None:  # takes every piece, written or not, so ``put`` never blocks for good
        while (piece := queue.get()) is not None:
            if not failures:
                try:
                    sys.stdout.write(piece)
                except BaseException as error:  # raised on the main thread
                    failures.append(error)

    writer = Thread(target=drain, name="gaussnll-stdout", daemon=True)
    writer.start()
    try:
        for piece in pieces:
            if failures:
                break
            queue.put(piece)
        queue.put(None)
        writer.join()
    except BaseException:  # Ctrl-C, SIGTERM, a failure making the pieces
        _abandoned(queue)
        raise
    if failures:
        raise failures[0]


def _abandoned(queue: Queue[str | None]) -> None:
    """Stop the writer of ``write_behind`` without waiting for it: it may be blocked on a
    reader that stopped reading (a pager left open), which must not keep a signal from ending
    the run. The pieces not yet written are dropped."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)


def closed_stream_code() -> int | None:
    """Prepare for a closed stdout or stderr (started with ``>&-`` or ``2>&-``): each gets
    /dev/null, so no file opened later takes its descriptor. A closed stderr is then only
    silent; a closed stdout has nowhere for the report to go: the exit code 2, said on stderr.
    None when both are open."""
    closed = [stream for stream in ("stdout", "stderr") if getattr(sys, stream) is None]
    for stream in closed:
        descriptor = 1 if stream == "stdout" else 2
        null = os.open(os.devnull, os.O_WRONLY)
        if null != descriptor:
            os.dup2(null, descriptor)
            os.close(null)
        setattr(sys, stream, open(descriptor, "w", closefd=False))  # noqa: SIM115
    if "stdout" not in closed:
        return None
    print(f"gaussnll: error: cannot write {STDOUT}: it is closed", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT
