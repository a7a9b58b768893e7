"""A variance recalibration map: the factor on each output's variance that minimises the NLL on
held-out data (``s* = mean(z²)``, the report's ``var_scale``), overall and per group.

A map is a small, versioned JSON document (schema ``gaussnll.recalibration/1``)::

    {"schema": "gaussnll.recalibration/1", "eps": 1e-06, "outputs": ["mean"],
     "scale": [1.53], "by": ["region"],
     "groups": [{"key": {"region": "east"}, "scale": [1.47], "rows": 3417}, ...],
     "fitted_on": {"path": "cal.parquet", "rows": 10000}}

Applying it multiplies each floored variance ``max(var, eps)`` by its group's scale (the
overall one for a key the map has not seen): the scale is fitted on floored variances, so the
scores after it have ``var_scale`` 1 whatever ``eps`` is. The scoring rules use ``s · var``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gaussnll.core.errors import InputError, redacted
from gaussnll.core.untrusted import check_regular_file, parse_json, read_at_most

RECALIBRATION_SCHEMA = "gaussnll.recalibration/1"
MAX_MAP_BYTES = 256 * 2**20  # a map of 10^6 groups takes about 150 MB

Key = tuple[Hashable, ...]


@dataclass(frozen=True)
class RecalibrationMap:
    """Per-output variance scales, overall and per key of the ``by`` columns."""

    scale: tuple[float, ...]
    outputs: tuple[str, ...]
    eps: float
    by: tuple[str, ...] = ()
    groups: Mapping[Key, tuple[float, ...]] = field(default_factory=dict)
    group_rows: Mapping[Key, int] = field(default_factory=dict)
    fitted_on: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None  # the file it was read from

    def scale_of(self, key: Key) -> tuple[float, ...] | None:
        """The scales of a group key (key values as JSON holds them), None if not in the map."""
        return self.groups.get(tuple(_plain(value) for value in key))

    def record(self, unseen_rows: int) -> dict[str, Any]:
        """What a report says of the map it applied: its file, scales, groups, and how many
        rows had a key the map had not seen."""
        return {
            "file": None if self.path is None else redacted(self.path),
            "by": list(self.by),
            "scale": list(self.scale),
            "groups": len(self.groups),
            "unseen_rows": unseen_rows,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": RECALIBRATION_SCHEMA,
            "eps": self.eps,
            "outputs": list(self.outputs),
            "scale": list(self.scale),
            "by": list(self.by),
            "groups": [
                {
                    "key": dict(zip(self.by, key, strict=True)),
                    "scale": list(scales),
                    "rows": self.group_rows.get(key, 0),
                }
                for key, scales in self.groups.items()
            ],
            "fitted_on": {
                key: redacted(value) if key == "path" and isinstance(value, str) else value
                for key, value in self.fitted_on.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Any, path: str | None = None) -> RecalibrationMap:
        """A map from its JSON document; anything malformed is an InputError naming ``path``."""

        def bad(what: str) -> InputError:
            return _malformed(what, path)

        if not isinstance(data, dict) or data.get("schema") != RECALIBRATION_SCHEMA:
            raise bad(f"its schema must be {RECALIBRATION_SCHEMA!r}")
        outputs = _strings(data.get("outputs"), bad, "outputs")
        if not outputs:
            raise bad("outputs must name at least one output")
        by = _strings(data.get("by", []), bad, "by")
        scale = _scales(data.get("scale"), len(outputs), bad, "scale")
        eps = _number(data.get("eps"))
        if eps is None or eps < 0:
            raise bad("eps must be a finite number >= 0")
        groups: dict[Key, tuple[float, ...]] = {}
        rows: dict[Key, int] = {}
        entries = data.get("groups", [])
        if not isinstance(entries, list):
            raise bad("groups must be a list")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), dict):
                raise bad("each group needs a key object")
            if sorted(entry["key"]) != sorted(by):
                raise bad(f"a group's key must name the columns {list(by)}")
            values = [entry["key"][name] for name in by]
            if not all(_is_scalar(value) for value in values):
                raise bad("a group's key values must be null, booleans, numbers or text")
            key = tuple(values)
            if key in groups:
                raise bad(f"the group {dict(zip(by, key, strict=True))} appears twice")
            groups[key] = _scales(entry.get("scale"), len(outputs), bad, "a group's scale")
            count = entry.get("rows", 0)
            if not (type(count) is int and count >= 0):
                raise bad("a group's rows must be a whole number >= 0")
            rows[key] = count
        fitted_on = data.get("fitted_on", {})
        if not isinstance(fitted_on, dict) or not all(map(_is_scalar, fitted_on.values())):
            raise bad("fitted_on must be an object of null, booleans, numbers or text")
        return cls(scale, outputs, eps, by, groups, rows, fitted_on, path)

    @classmethod
    def load(cls, path: str) -> RecalibrationMap:
        """The map in the file ``path`` (a regular file, of at most ``MAX_MAP_BYTES``)."""
        check_regular_file(path, "the map")
        try:
            with open(path, "rb") as handle:
                data = read_at_most(handle, MAX_MAP_BYTES, path, "the map")
        except OSError as error:
            raise InputError(f"cannot read the map: {error.strerror or error}", path=path) from None
        return cls.from_dict(parse_json(data, lambda what: _malformed(what, path)), path)


def _malformed(what: str, path: str | None) -> InputError:
    return InputError(f"not a gaussnll recalibration map: {what}", path=path)


def _is_scalar(value: Any) -> bool:
    """Whether ``value`` is a JSON scalar: null, a boolean, a number or text."""
    return value is None or isinstance(value, bool | int | float | str)


def _number(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (a boolean, an integer beyond a
    float, NaN, an infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    """A key value as JSON holds it (dates and other values as text)."""
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def _strings(value: Any, bad: Callable[[str], InputError], name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad(f"{name} must be a list of names")
    return tuple(value)


def _scales(
    value: Any, outputs: int, bad: Callable[[str], InputError], name: str
) -> tuple[float, ...]:
    numbers = [_number(s) for s in value] if isinstance(value, list) else []
    if len(numbers) != outputs or not all(s is not None and s > 0 for s in numbers):
        raise bad(f"{name} must be {outputs} finite positive number(s), one per output")
    return tuple(s for s in numbers if s is not None)
