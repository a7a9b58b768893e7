"""The exceptions gaussnll raises for problems a user can fix.

Hierarchy::

    GaussnllError          base: a user-facing problem, rendered as one line, exit code 2
    ├── UsageError         the options contradict each other or are out of range
    │   └── OptionError    one option's value is invalid (names the Python parameter)
    ├── InputError         the data cannot be read or violates what the options promise
    │   └── NegativeSpreadError
    └── OutputError        an output file cannot be written (disk full, permissions)

Anything else escaping gaussnll is a bug: the command line reports it as an internal error.

``redacted`` keeps credentials out of every message: a URI's userinfo (``s3://KEY:SECRET@``,
``tcp://user:pass@``) never reaches an error, a report, a state file or a log.
"""

from __future__ import annotations

import re

# A scheme, then the userinfo: everything up to the last "@" before the host's end.
_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#\s]*)@")
# A query parameter named as a secret (?secret_key=..., &sig=..., &token=...): its value.
_SECRET_VALUE = re.compile(
    r"([?&][A-Za-z0-9_.-]*(?:secret|password|passwd|token|key|sig|credential)[A-Za-z0-9_.-]*=)"
    r"[^&#\s]*",
    re.IGNORECASE,
)


def redacted(text: str) -> str:
    """``text`` with the userinfo of every URI in it, and the values of query parameters
    named as secrets, replaced by ``***`` (``s3://KEY:SECRET@bucket/x`` →
    ``s3://***@bucket/x``); other text unchanged."""
    # The same userinfo quoted elsewhere without its scheme (a library's "invalid address
    # 'user:pass@host'") goes too.
    for userinfo in sorted(set(_USERINFO.findall(text)) - {""}, key=len, reverse=True):
        text = text.replace(f"{userinfo}@", "***@")
    return _SECRET_VALUE.sub(r"\1***", text)


class GaussnllError(Exception):
    """A problem in what the user gave us; its message is one line meant for them, with any
    URI's credentials ``redacted``."""

    def __str__(self) -> str:
        return redacted(super().__str__())


class UsageError(GaussnllError):
    """Options that are invalid on their own or together."""


class OptionError(UsageError):
    """An invalid value of one option: ``parameter`` is its Python name (``eps``,
    ``columns.mean``), ``detail`` what was expected, so a front end can name its own flag."""

    def __init__(self, parameter: str, detail: str) -> None:
        self.parameter = parameter
        self.detail = detail
        super().__init__(f"{parameter} {detail}")


class InputError(GaussnllError):
    """Data that cannot be read, or a value that breaks the contract (file, column, row)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.detail = message
        self.path = path
        self.column = column
        self.row = row
        where = [part for part in (path, _column(column), _row(row)) if part]
        super().__init__(": ".join([*where, message]) if where else message)


class NegativeSpreadError(InputError):
    """A negative variance or standard deviation (torch raises on these too). Once counted
    (``counted``): ``first`` is the message of the first alone, ``negatives`` how many the input
    holds from it on, ``complete`` whether they were counted to its end."""

    first: str | None = None
    negatives: int | None = None
    complete: bool = True

    @classmethod
    def counted(cls, first: InputError, negatives: int, *, complete: bool) -> NegativeSpreadError:
        """The ``first`` negative spread, its message telling how many there are."""
        noun = "value" if negatives == 1 else "values"
        bound = "in all" if complete else "at least, before another error"
        error = cls(
            f"{first.detail} ({negatives:,} negative {noun} {bound})",
            path=first.path,
            column=first.column,
            row=first.row,
        )
        error.first, error.negatives, error.complete = first.detail, negatives, complete
        return error


class OutputError(GaussnllError):
    """An output that cannot be created or written."""


def _column(column: str | None) -> str | None:
    return f"column {column!r}" if column is not None else None


def _row(row: int | None) -> str | None:
    return f"row {row}" if row is not None else None
