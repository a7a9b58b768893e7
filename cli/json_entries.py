"""Group entries of the JSON written a batch at a time from their columns, not one dict each.

A batch of groups' entries (``GroupScore.columns``) share their shape: the same fields, the
same nesting, lists of the same lengths. So the text of an entry is a template made once per
batch (field names, nesting, the values every group shares) with a hole for each value that
varies, and the values are turned into text a column at a time: a column of numbers by one
``tolist`` and ``repr`` over it, a matrix (a calibration curve a group) from the texts of its
distinct values (a curve's values are counts over a group's elements, so a batch has few)
joined once and cut into rows. The bytes are those of ``json.dumps`` of each entry with
non-finite floats as null (tests/test_json_entries.py); groups whose reports give no columns
are written one entry at a time (``compact_json``). See bench/README.md for what it saves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from gaussnll.cli.json_lines import TEXTS, compact_json, finite
from gaussnll.core import GroupScore, PerReport, Shared, prefetched

BATCH = 512  # groups whose entries are made together
_SAMPLE = 64  # rows of a matrix that tell whether its values recur
_AHEAD = 2  # batches whose columns are made ahead, on the second thread
_NONFINITE = frozenset({"nan", "inf", "-inf"})  # float.__repr__ of what JSON writes as null


def entry_blocks(groups: Iterable[GroupScore], by: tuple[str, ...]) -> Iterator[list[str]]:
    """Each group's entry (``GroupScore.to_dict``) as one line of compact JSON, a batch of
    groups at a time: a batch's lines are in memory together, not every group's. The next
    batches' columns are made on a second thread (their summaries are derived by torch, which
    lets the text of this batch be made meanwhile)."""
    for batch, columns in prefetched(_columns(groups, by), depth=_AHEAD):
        if columns is None:
            yield [compact_json(group.to_dict(by)) for group in batch]
        else:
            yield entry_texts(columns, len(batch))


def _columns(
    groups: Iterable[GroupScore], by: tuple[str, ...]
) -> Iterator[tuple[list[GroupScore], dict[str, Any] | None]]:
    """Batches of groups of one ``reports`` each, with their columns (``GroupScore.columns``)."""
    batch: list[GroupScore] = []
    for group in groups:
        if batch and (len(batch) == BATCH or group.reports is not batch[0].reports):
            yield batch, GroupScore.columns(batch, by)
            batch = []
        batch.append(group)
    if batch:
        yield batch, GroupScore.columns(batch, by)


def entry_texts(columns: dict[str, Any], size: int) -> list[str]:
    """The ``size`` entries of ``columns`` (``json_columns``: objects of ``Shared`` and
    ``PerReport`` values, lists of such objects) as compact JSON texts."""
    template = _Template()
    template.node(columns)
    pattern = "%s".join(part.replace("%", "%%") for part in template.static)
    if not template.holes:
        return [pattern % ()] * size
    return [pattern % row for row in zip(*template.holes, strict=True)]


class _Template:
    """An entry's text as static parts with a hole between each two: ``holes[k]`` holds each
    entry's text for the hole after ``static[k]``."""

    def __init__(self) -> None:
        self.static = [""]
        self.holes: list[list[str]] = []
        self._made: dict[Any, tuple[Any, list[str]]] = {}  # texts by column (``_texts``)

    def node(self, value: Any) -> None:
        if isinstance(value, dict):
            self._text("{")
            for at, (name, item) in enumerate(value.items()):
                self._text(f"{', ' if at else ''}{json.dumps(name)}: ")
                self.node(item)
            self._text("}")
        elif isinstance(value, list):  # an object per output
            self._text("[")
            for at, item in enumerate(value):
                self._text(", " if at else "")
                self.node(item)
            self._text("]")
        elif isinstance(value, Shared):
            self._text(json.dumps(finite(value.value), default=list))
        elif isinstance(value, PerReport):
            self._values(value.values)
        else:
            raise TypeError(f"not an entry's column: {type(value).__name__}")

    def _text(self, text: str) -> None:
        self.static[-1] += text

    def _values(self, values: Any) -> None:
        if isinstance(values, np.ndarray) and values.ndim == 2:
            texts = _matrix_texts(values)
        elif not isinstance(values, np.ndarray) and _same_keys(values):
            # objects of the same fields: a column each
            self.node({name: PerReport([value[name] for value in values]) for name in values[0]})
            return
        else:
            texts = self._texts(values)
        self.holes.append(texts)
        self.static.append("")

    def _texts(self, values: Any) -> list[str]:
        """Each value's text, made once for columns alike (``nll`` is ``nll_mean``'s list,
        ``var_scale`` holds ``z2_mean``'s numbers)."""
        array = isinstance(values, np.ndarray)
        key = (values.dtype.str, values.tobytes()) if array else id(values)
        if key not in self._made:  # kept with its texts: no other list takes its id
            self._made[key] = (values, _texts(values.tolist() if array else values))
        return self._made[key][1]


def _same_keys(values: list[Any]) -> bool:
    """Whether ``values`` are dicts with the same text keys in the same order."""
    if not all(type(value) is dict for value in values):
        return False
    keys = {tuple(value) for value in values}
    return len(keys) == 1 and all(type(key) is str for key in next(iter(keys)))


def _texts(values: list[Any]) -> list[str]:
    """Each value's JSON text, non-finite floats as null: floats and ints a column at once."""
    kinds = set(map(type, values))
    if kinds == {float}:
        texts = list(map(float.__repr__, values))
        if _NONFINITE.isdisjoint(texts):
            return texts
        return ["null" if text in _NONFINITE else text for text in texts]
    if kinds == {int}:
        return list(map(int.__repr__, values))
    return [json.dumps(finite(value), default=list) for value in values]


def _matrix_texts(matrix: np.ndarray) -> list[str]:
    """The text of each row of a matrix of numbers (the list ``tolist`` gives for it): the
    texts of its distinct values, made once, joined in one step and cut at the rows' ends."""
    rows, width = matrix.shape
    if width == 0:
        return ["[]"] * rows
    kind = matrix.dtype.kind
    if kind not in "fiub":  # not numbers: row by row
        return ["[" + ", ".join(_texts(row)) + "]" for row in matrix.tolist()]
    sample = matrix[:_SAMPLE]
    if 2 * len(np.unique(sample)) > sample.size:  # mostly distinct values: no lookup
        texts = _texts(matrix.ravel().tolist())
        cuts = range(0, rows * width, width)
        return ["[" + ", ".join(texts[at : at + width]) + "]" for at in cuts]
    # Floats told apart by their bits: -0.0 is not 0.0 (and the integers sort faster).
    bits = np.ascontiguousarray(matrix).view(f"i{matrix.itemsize}") if kind == "f" else matrix
    distinct, inverse = np.unique(bits, return_inverse=True)
    values = (distinct.view(matrix.dtype) if kind == "f" else distinct).tolist()
    if kind == "f" and 4 * len(values) <= matrix.size:  # values that recur
        texts = list(map(TEXTS.__getitem__, values))
    else:
        texts = _texts(values)
    inverse = inverse.reshape(matrix.shape)
    cells = np.array(texts, dtype=object)[inverse]
    joined = ", ".join(cells.ravel().tolist())
    widths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) + len(", ")
    ends = np.cumsum(widths[inverse].sum(axis=1))  # each row's end, its separator included
    starts = np.concatenate(([0], ends[:-1]))
    return [
        f"[{joined[start:end]}]"
        for start, end in zip(starts.tolist(), (ends - len(", ")).tolist(), strict=True)
    ]
