"""One compact line of JSON per group entry, its long lists of floats written from a memo.

With both calibration curves (``--group-metrics +calibration,one_sided``), 10^5 groups' entries
are about 5 KB each, most of it the curves (100 floats each), and turning a float into its
shortest text (``float.__repr__``, what ``json`` does) is most of the cost of writing them. A
curve's values are counts over the group's elements, so the groups of a run share few distinct
values: each one's text is made once and looked up after that. The entry is written by
``json.dumps`` as before, each long list of floats in it standing for a token that is then
replaced by the list's text: the same bytes as ``json.dumps`` of the whole entry (see
bench/README.md for what it saves).
"""

from __future__ import annotations

import json
import math
from typing import Any

LONG = 32  # lists at least this long, of floats only, are written from the memo
_MEMO_LIMIT = 1 << 20  # distinct texts kept at most (then the memo starts again)
_TOKEN = "\ud800"  # a lone surrogate: no text read from a file holds one


class _Texts(dict[float, str]):
    """Each float's JSON text (non-finite: ``null``), made when first asked for. Zeros and
    non-finite values are never kept: ``-0.0`` equals ``0.0`` as a key and NaN no key."""

    def __missing__(self, value: float) -> str:
        if not math.isfinite(value):
            return "null"
        text = float.__repr__(value)
        if value:
            if len(self) >= _MEMO_LIMIT:
                self.clear()
            self[value] = text
        return text


TEXTS = _Texts()


def compact_json(value: dict[str, Any]) -> str:
    """``value`` as one line of JSON, non-finite floats as null."""
    lists: dict[str, str] = {}
    swapped = _swapped(value, lists)
    try:
        text = json.dumps(swapped, default=list, allow_nan=False)
    except ValueError:  # non-finite floats outside the long lists
        text = json.dumps(finite(swapped), default=list)
    for token, written in lists.items():
        rendered = json.dumps(token)
        if text.count(rendered) != 1:  # cannot happen with text from files: the plain way
            return json.dumps(finite(value), default=list)
        text = text.replace(rendered, written)
    return text


def _swapped(value: dict[str, Any], lists: dict[str, str]) -> dict[str, Any]:
    """``value`` (not changed) with each long list of floats in its objects replaced by a
    token, the list's text kept in ``lists`` under it."""
    swapped = {}
    for key, item in value.items():
        if isinstance(item, dict):
            item = _swapped(item, lists)
        elif isinstance(item, list) and item:
            if len(item) >= LONG and set(map(type, item)) == {float}:
                token = f"{_TOKEN}{len(lists)}"
                lists[token] = "[" + ", ".join(map(TEXTS.__getitem__, item)) + "]"
                item = token
            elif isinstance(item[0], dict):
                item = [_swapped(each, lists) for each in item]
        swapped[key] = item
    return swapped


def finite(value: object) -> object:
    """``value`` with non-finite floats as None, so every JSON parser accepts it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value
