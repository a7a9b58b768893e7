"""Reading a document a user names (a state file, a recalibration map) as untrusted input.

Such a file may be anything: a FIFO (reading it blocks until a writer comes), a device
(``/dev/zero`` never ends), a directory, a file far larger than any such document, text that is
not JSON or JSON nested deeper than the parser recurses. Each is an InputError naming the file
and what was expected, never a hang, a MemoryError or an internal error. What the document then
holds is checked against its schema by its reader (``RecalibrationMap.from_dict``,
``run.state_document``).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from typing import Any, Protocol

from gaussnll.core.errors import InputError

_BLOCK = 2**24
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def check_regular_file(path: str, what: str) -> None:
    """Refuse a local ``path`` that is not a regular file (following links), or is missing:
    ``what`` names the document (``the state``) in the message."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise InputError(f"cannot read {what}: {error.strerror or error}", path=path) from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file")
        raise InputError(f"cannot read {what}: it is {kind}, not a regular file", path=path)


def read_at_most(source: Readable, limit: int, path: str, what: str) -> bytes:
    """The whole of ``source``, read a block at a time, unless it holds more than ``limit``
    bytes (an InputError naming ``what``, e.g. ``the map``)."""
    blocks: list[bytes] = []
    total = 0
    while block := source.read(min(_BLOCK, limit + 1 - total)):
        blocks.append(block)
        total += len(block)
        if total > limit:
            raise InputError(
                f"cannot read {what}: it is larger than {limit:,} bytes, more than any such "
                "document",
                path=path,
            )
    return b"".join(blocks)


def parse_json(data: bytes, bad: Callable[[str], InputError]) -> Any:
    """The JSON value of ``data`` (UTF-8 text); ``bad(what)`` is the error of a file that is
    not JSON (a number of more than 4,300 digits, nesting deeper than Python recurses)."""
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad("not UTF-8 text") from None
    except RecursionError:
        raise bad("not JSON: nested too deeply") from None
    except ValueError:
        raise bad("not JSON") from None
