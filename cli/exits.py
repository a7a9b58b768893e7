"""How each way a command can end becomes an exit code and, at most, one line on stderr.

0 ok · 1 a quality gate failed · 2 bad usage, bad input or unwritable output · 130 interrupted
(Ctrl-C) · 141 stdout closed by its reader · 143 terminated (SIGTERM). Outputs are written
atomically, so every exit but 0 leaves no output file behind.
"""

from __future__ import annotations

import signal
import sys
import traceback
from types import FrameType, TracebackType

import typer

from gaussnll.core.errors import GaussnllError, UsageError

EXIT_BAD_INPUT = 2
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


class user_errors:
    """Catch what a user can cause, print it as one line, and exit with its code.

    With ``debug`` the traceback is printed too. Anything else is a bug and propagates.
    """

    def __init__(self, debug: bool = False) -> None:
        self.debug = debug

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type | None, error: BaseException | None, trace: TracebackType | None
    ) -> bool:
        if error is None:
            return False
        code, message = _classify(error)
        if code is None:
            return False
        if self.debug and message is not None:
            traceback.print_exception(kind, error, trace, file=sys.stderr)
        if message is not None:
            print(f"gaussnll: {message}", file=sys.stderr)
        raise typer.Exit(code) from None


def _classify(error: BaseException) -> tuple[int | None, str | None]:
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
    return None, None
