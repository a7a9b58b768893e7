"""How each way a command can end becomes an exit code and, at most, one line on stderr.

0 ok · 1 a quality gate failed (and nothing else) · 2 bad usage, bad input or unwritable output
· 3 an internal error (a bug: ``--debug`` shows the traceback) · 130 interrupted (Ctrl-C) · 141
stdout closed by its reader · 143 terminated (SIGTERM). Output files are committed together as
the last step of a run, so every exit but 0 and 1 leaves none written or replaced.
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Literal

import typer

from gaussnll.cli.literal import shown
from gaussnll.cli.settings import with_flag
from gaussnll.core import GaussnllError, OptionError, UsageError, redacted

EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so cleanup runs as for Ctrl-C."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` (the default would kill us before any cleanup)."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, handler)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM for the block: the renames that commit a run's outputs, its
    last step, so a signal cannot leave some renamed and others not (the run ends as it would
    have). Only the main thread can change signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class user_errors:
    """Turn whatever ends a command early into one line on stderr and its exit code.

    ``command`` and ``given`` (the options given) let a core message about a parameter name
    the flag instead. With ``debug`` the traceback is printed too.
    """

    def __init__(self, debug: bool = False, command: str = "score", given: Iterable[str] = ()):
        self.debug = debug
        self.command = command
        self.given = tuple(given)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type | None, error: BaseException | None, trace: TracebackType | None
    ) -> Literal[False]:
        if error is None or isinstance(error, typer.Exit | SystemExit):
            return False
        if isinstance(error, OptionError):
            error = with_flag(error, self.command, self.given)
        code, message = _classify(error)
        if self.debug and message is not None:
            lines = traceback.format_exception(kind, error, trace)
            print(redacted("".join(lines)), end="", file=sys.stderr)
        if message is not None:
            print(f"gaussnll: {shown(message)}", file=sys.stderr)
        raise typer.Exit(code) from None


def _classify(error: BaseException) -> tuple[int, str | None]:
    if isinstance(error, UsageError):
        return EXIT_BAD_INPUT, f"usage error: {error}"
    if isinstance(error, GaussnllError):
        return EXIT_BAD_INPUT, f"error: {error}"
    if isinstance(error, BrokenPipeError):
        return EXIT_BROKEN_PIPE, None
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted; no output was written"
    if isinstance(error, Terminated):
        return EXIT_TERMINATED, "terminated; no output was written"
    what = (
        f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
    )
    return (
        EXIT_INTERNAL_ERROR,
        f"internal error: {what}; run with --debug for the traceback and please report it",
    )
