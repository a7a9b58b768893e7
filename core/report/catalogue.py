"""The metric catalogue: every number a check, a sort or a renderer can name, derived from the
report dataclasses' field declarations (``fields``), so a metric is declared once.

This module knows no report class: ``ScoreMetrics(Report)`` and ``CompareMetrics(CompareReport,
...)`` catalogue the class they are given, and each report module makes its own catalogue
(``report.SCORE_METRICS``, ``compare_report.COMPARE_METRICS``), so a report can name its metrics
without an import cycle.

A score metric is a top-level number of the report (``nll``, ``rows``), a number of its
``calibration`` or ``accuracy`` section (``mace``, ``rmse``), or a per-level value named
``NAME@LEVEL`` (``coverage@0.9``). A comparison's metrics are its paired numbers
(``delta_nll``) and either model's score metrics as ``baseline.NAME`` / ``candidate.NAME``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaussnll.core.families import ENSEMBLE
from gaussnll.core.report.fields import FieldSpec, PerReport, Shape, Shared, declared

LEVEL_SEPARATOR = "@"
CALIBRATION_SECTIONS = ("calibration", "accuracy")  # computed only with calibration
ENSEMBLE_SECTION = "ensemble"


@dataclass(frozen=True)
class Metric:
    """One catalogued metric: its name, where it sits (``path`` of attributes from the report),
    and its declaration (label, description, shape)."""

    name: str
    path: tuple[str, ...]
    spec: FieldSpec
    # A count (``rows``, ``inside_counts``; weighted, a sum of weights), shown without decimals
    # when whole.
    integer: bool = False

    @property
    def per_level(self) -> bool:
        return self.spec.shape is Shape.PER_LEVEL

    @property
    def section(self) -> str | None:
        """The section holding it (``calibration``, ``accuracy``), None at the top level."""
        return self.path[0] if len(self.path) > 1 else None

    @property
    def display_name(self) -> str:
        """The name a check uses, ``NAME@LEVEL`` for a per-level metric."""
        return f"{self.name}{LEVEL_SEPARATOR}LEVEL" if self.per_level else self.name


def catalogued(cls: type, path: tuple[str, ...] = ()) -> Iterator[Metric]:
    """The checkable metrics of a report dataclass, its sections' included, in field order."""
    types = {field.name: str(field.type) for field in dataclasses.fields(cls)}
    for name, spec in declared(cls):
        if spec.shape is Shape.SECTION and spec.of is not None:
            yield from catalogued(spec.of, (*path, name))
        elif spec.checkable:
            integer = types[name].removesuffix(" | None") in _INTEGER_TYPES
            yield Metric(name, (*path, name), spec, integer or spec.count)


_INTEGER_TYPES = ("int", "list[int]")


def split_level(metric: str) -> tuple[str, float | None]:
    """``coverage@0.9`` → ``("coverage", 0.9)``; ``nll`` → ``("nll", None)``. A level that is
    not a number raises ValueError."""
    name, separator, level = metric.partition(LEVEL_SEPARATOR)
    return name, float(level) if separator else None


def valid_level(metric: str) -> bool:
    """Whether a metric's ``@LEVEL``, if any, is a number in (0, 1)."""
    try:
        level = split_level(metric)[1]
    except ValueError:
        return False
    return level is None or 0 < level < 1


class ScoreMetrics:
    """The metrics of a score report class (``Report``)."""

    def __init__(self, report: type) -> None:
        # One name per number, which one section or another holds (``quantile_mace``: the
        # Gaussian's calibration or a quantile model's); ``metrics`` keeps the first of each.
        self._entries: dict[str, list[Metric]] = {}
        for metric in catalogued(report):
            self._entries.setdefault(metric.name, []).append(metric)
        self.metrics = {name: entries[0] for name, entries in self._entries.items()}

    def names(self) -> list[str]:
        """Every name a check may use (``NAME@LEVEL`` with a placeholder level)."""
        return [metric.display_name for metric in self.metrics.values()]

    def entries(self) -> list[Metric]:
        """Every catalogue entry, each section's (a name may stand in several)."""
        return [entry for entries in self._entries.values() for entry in entries]

    def find(self, metric: str) -> Metric | None:
        """The catalogue entry ``metric`` names (levelled exactly when it has ``@LEVEL``)."""
        name, separator, _ = metric.partition(LEVEL_SEPARATOR)
        entry = self.metrics.get(name)
        if entry is None or entry.per_level != bool(separator):
            return None
        return entry

    def knows(self, metric: str) -> bool:
        """Whether ``metric`` is a catalogued name, with a level in (0, 1) if it takes one."""
        return self.find(metric) is not None and valid_level(metric)

    def uses_calibration(self, metric: str) -> bool:
        entry = self.find(metric)
        if entry is None:
            return False
        return entry.section in CALIBRATION_SECTIONS or entry.spec.calibrated

    def families(self, metric: str) -> tuple[str, ...]:
        """The metric families that compute ``metric`` (``core.families``; one for each
        section that holds it); none: computed whichever families are chosen (rows, seconds),
        or not a metric."""
        if self.find(metric) is None:
            return ()
        named = self._entries[metric.partition(LEVEL_SEPARATOR)[0]]
        found = [_family_of(entry) for entry in named]
        return tuple(family for family in found if family is not None)

    def uses_ensemble(self, metric: str) -> bool:
        """Whether ``metric`` is an ensemble's (``ScoreOptions.ensemble``)."""
        entry = self.find(metric)
        return entry is not None and entry.section == ENSEMBLE_SECTION

    def integer(self, metric: str) -> bool:
        """Whether ``metric`` is a count, to be shown without decimals."""
        entry = self.find(metric)
        return entry is not None and entry.integer

    def suggestion(self, metric: str) -> str | None:
        """The known name closest to a mistyped one (``NLL`` → ``nll``), if any is close."""
        close = closest(metric.partition(LEVEL_SEPARATOR)[0], list(self.metrics))
        return None if close is None else self.metrics[close].display_name

    def value(self, report: Any, metric: str) -> float | None:
        """The value ``metric`` names in ``report``; None where it lacks it (or it is null)."""
        if self.find(metric) is None:
            return None
        for entry in self._entries[metric.partition(LEVEL_SEPARATOR)[0]]:
            value = _value_at(report, entry, metric)
            if value is not None:
                return value
        return None

    def column(self, columns: dict[str, Any], metric: str, size: int) -> np.ndarray | None:
        """``value`` for each of a batch of ``size`` reports at once, from their entries by
        column (``fields.json_columns``): NaN where null; None where the columns cannot say
        (a name of several places, a place the entries leave out)."""
        entries = self._entries.get(metric.partition(LEVEL_SEPARATOR)[0], [])
        if self.find(metric) is None or len(entries) != 1:
            return None
        (entry,) = entries
        value: Any = columns
        for attribute in entry.path:
            if isinstance(value, Shared) and value.value is None:  # an absent section
                return np.full(size, np.nan)
            if not isinstance(value, dict) or attribute not in value:
                return None
            value = value[attribute]
        numbers = _numbers(value, size)
        if numbers is None or not entry.per_level:
            return numbers if numbers is None or numbers.ndim == 1 else None
        levels = _column_levels(columns, entry)
        if levels is None or numbers.ndim != 2:
            return None
        at = _level_index(levels, metric)
        return np.full(size, np.nan) if at is None else numbers[:, at]

    def numbers(self, report: Any) -> dict[str, float]:
        """Every checkable number of ``report`` by the name a check uses (per level: one entry
        per computed level, ``coverage@0.9``), in catalogue order."""
        named: dict[str, float] = {}
        for entry in self.metrics.values():
            names = (
                [f"{entry.name}{LEVEL_SEPARATOR}{level:g}" for level in _levels(report, entry)]
                if entry.per_level
                else [entry.name]
            )
            for name in names:
                value = self.value(report, name)
                if value is not None:
                    named[name] = value
        return named


class CompareMetrics:
    """The metrics of a comparison report class (``CompareReport``): its paired numbers (a
    ``ScoreMetrics`` of the class: per level as ``NAME@LEVEL``), and either model's score
    metrics (``score``) as ``baseline.NAME`` / ``candidate.NAME``."""

    sides = ("baseline", "candidate")

    def __init__(self, report: type, score: ScoreMetrics) -> None:
        self.paired = ScoreMetrics(report)
        self.metrics = self.paired.metrics
        self.score = score

    def names(self) -> list[str]:
        return [*self.paired.names(), *(f"{side}.METRIC" for side in self.sides)]

    def knows(self, metric: str) -> bool:
        side, name = self._split(metric)
        if side is None:
            return self.paired.knows(name)
        return side in self.sides and self.score.knows(name)

    def uses_calibration(self, metric: str) -> bool:
        side, name = self._split(metric)
        return side is not None and self.score.uses_calibration(name)

    def integer(self, metric: str) -> bool:
        side, name = self._split(metric)
        return (self.paired if side is None else self.score).integer(name)

    def uses_ensemble(self, metric: str) -> bool:
        side, name = self._split(metric)
        return side is not None and self.score.uses_ensemble(name)

    def families(self, metric: str) -> tuple[str, ...]:
        """The metric families that compute either model's ``metric``, or a paired number's
        (none: always computed)."""
        side, name = self._split(metric)
        return (self.paired if side is None else self.score).families(name)

    def suggestion(self, metric: str) -> str | None:
        side, name = self._split(metric)
        if side is None:
            return self.paired.suggestion(name)
        close = self.score.suggestion(name)
        return None if close is None or side not in self.sides else f"{side}.{close}"

    def value(self, report: Any, metric: str) -> float | None:
        side, name = self._split(metric)
        if side is None:
            return self.paired.value(report, name)
        return self.score.value(getattr(report, side), name)

    @classmethod
    def _split(cls, metric: str) -> tuple[str | None, str]:
        """``baseline.nll`` → ``("baseline", "nll")``; a paired number (whose level may hold
        a dot, ``delta_coverage@0.9``) → ``(None, metric)``."""
        side, dot, name = metric.partition(".")
        return (side, name) if dot and LEVEL_SEPARATOR not in side else (None, metric)


def _levels(report: Any, entry: Metric) -> list[float]:
    """The levels of a per-level metric: its section's (``spec.levels`` names the field), or
    the calibration's for one outside a section with levels (none where its section is
    absent)."""
    holder = getattr(report, entry.section, None) if entry.section is not None else None
    if holder is None or not hasattr(holder, entry.spec.levels):
        if entry.spec.levels != "levels":
            return []
        holder = getattr(report, "calibration", None)  # a comparison has none of its own
    return [] if holder is None else list(getattr(holder, entry.spec.levels))


def _column_levels(columns: dict[str, Any], entry: Metric) -> list[float] | None:
    """``_levels`` from a batch's entry columns: the levels every report shares (None: they
    differ, or are not in the columns)."""
    holder = columns.get(entry.section) if entry.section is not None else None
    if not isinstance(holder, dict) or entry.spec.levels not in holder:
        if entry.spec.levels != "levels":
            return []
        holder = columns.get("calibration")
    if isinstance(holder, Shared) and holder.value is None:
        return []
    levels = holder.get(entry.spec.levels) if isinstance(holder, dict) else None
    return list(levels.value) if isinstance(levels, Shared) else None


def _numbers(leaf: Any, size: int) -> np.ndarray | None:
    """A column's numbers as float64 (a row of numbers a report: a matrix), NaN for null;
    None when they are not numbers."""
    if isinstance(leaf, Shared):
        value = leaf.value
        if value is None or isinstance(value, int | float):
            return np.full(size, np.nan if value is None else float(value))
        return None
    if not isinstance(leaf, PerReport):
        return None
    values = leaf.values
    if isinstance(values, np.ndarray):
        return values.astype(np.float64) if values.dtype.kind in "fiub" else None
    if not all(value is None or isinstance(value, int | float) for value in values):
        return None
    return np.array([np.nan if value is None else value for value in values], dtype=np.float64)


def _value_at(report: Any, entry: Metric, metric: str) -> float | None:
    """The value of ``metric`` at ``entry``'s place in ``report`` (None: absent or null)."""
    value: Any = report
    for attribute in entry.path:
        value = getattr(value, attribute)
        if value is None:
            return None
    if not entry.per_level:
        return _number(value)
    at = _level_index(_levels(report, entry), metric)
    return None if at is None else _number(value[at])


def _level_index(levels: list[float], metric: str) -> int | None:
    """The position among ``levels`` of ``metric``'s ``@LEVEL`` (None: not among them)."""
    _, level = split_level(metric)
    matches = [i for i, known in enumerate(levels) if math.isclose(known, level or math.nan)]
    return matches[0] if matches else None


def _family_of(entry: Metric) -> str | None:
    """The family that computes a catalogue entry (None: always computed)."""
    if entry.spec.family is not None:
        return entry.spec.family
    return ENSEMBLE if entry.section == ENSEMBLE_SECTION else None


def closest(name: str, names: list[str]) -> str | None:
    """The one of ``names`` that ``name`` most likely means: the same but for case, or a close
    spelling; None when none is close."""
    lowered = {known.lower(): known for known in names}
    if name.lower() in lowered:
        return lowered[name.lower()]
    matches = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.75)
    return matches[0] if matches else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


Catalog = ScoreMetrics | CompareMetrics
