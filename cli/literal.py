"""Data shown literally: group keys, column names, file names and values reach a terminal, a
Markdown page, an XML file or a CI log as the text they are, never as control sequences, rich
markup or Markdown syntax.

Every renderer passes data through one of these functions: ``literal`` for plain text (then
shown through ``rich.text.Text``, which reads no markup), ``shown`` for a path, URI or address
in plain text (its credentials redacted too), ``markdown`` and ``code_span`` for Markdown,
``github_message`` for a GitHub Actions annotation.
"""

from __future__ import annotations

import re

from gaussnll.core import redacted

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# C0 and C1 controls, DEL, and the invisible characters that reorder or hide text (bidi
# overrides and isolates, line and paragraph separators).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE = re.compile(_CONTROL.pattern[:-1] + "\\\\]")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~&])")


def literal(value: object) -> str:
    """``value`` as one line of printable text: control characters written as escapes
    (``\\x1b``, ``\\n``, ``\\u202e``), and a backslash doubled only where escapes were needed,
    so ordinary text (Windows paths included) is unchanged."""
    text = str(value)
    if not _CONTROL.search(text):
        return text
    return _UNSAFE.sub(_escape, text)


def shown(text: str) -> str:
    """``text`` naming a path, URI or address, as ``literal`` shows it, with the credentials of
    every URI in it ``redacted`` (``s3://***@bucket/...``)."""
    return literal(redacted(text))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def markdown(value: object) -> str:
    """``value`` as Markdown text that shows it literally, safe in a table cell: control
    characters escaped as by ``literal``, then every Markdown metacharacter (``|`` included)
    backslash-escaped."""
    return _MARKDOWN.sub(r"\\\1", literal(value))


def code_span(value: object) -> str:
    """``value`` as a Markdown code span safe in a table cell: fenced by more backticks than
    it holds in a row, padded when it starts or ends with one, ``|`` escaped (GitHub splits
    cells before it parses code spans)."""
    text = literal(value).replace("|", "\\|")
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def github_message(text: str) -> str:
    """A workflow-command message escaped as GitHub Actions requires (``%``, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
