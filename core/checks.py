"""Quality gates: ``METRIC OP NUMBER`` or ``METRIC between LOW HIGH``, parsed, never eval'd.

Metrics are the report's JSON names: top-level numbers (``nll``, ``rows``, ...), the
``calibration`` and ``accuracy`` numbers (``mace``, ``var_scale``, ``rmse``, ...), and per-level
values as ``NAME@LEVEL`` (``coverage@0.9``, ``interval_width@0.5``). A catalogue says which
names a kind of report has: ``ScoreMetrics`` for ``score``, ``CompareMetrics`` for ``compare``
(which also reaches either model's score metrics as ``candidate.NAME``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gaussnll.core.errors import UsageError

TOP_LEVEL_METRICS = (
    "nll",
    "nll_mean",
    "nll_sum",
    "rows",
    "elements",
    "skipped_rows",
    "eps_floored",
    "seconds",
)
CALIBRATION_METRICS = (
    "mace",
    "rmsce",
    "miscalibration_area",
    "crps",
    "check_score",
    "interval_score_avg",
    "nll_full",
    "sharpness",
    "z_mean",
    "z_std",
    "z2_mean",
    "var_scale",
    "nll_at_var_scale",
)
ACCURACY_METRICS = ("mae", "rmse", "bias")
LEVEL_METRICS = ("coverage", "interval_width", "interval_score", "inside_counts")

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
    "!=": operator.ne,
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_METRIC = r"(?:[a-z]+\.)?[a-z_0-9]+(?:@" + _NUMBER + r")?"
_COMPARISON = re.compile(rf"^\s*({_METRIC})\s*(<=|>=|==|!=|<|>)\s*({_NUMBER})\s*$")
_BETWEEN = re.compile(rf"^\s*({_METRIC})\s+between\s+({_NUMBER})\s+({_NUMBER})\s*$")


@dataclass(frozen=True)
class Check:
    """One parsed gate: ``metric`` compared with ``bound`` (or inside ``[low, high]``)."""

    text: str
    metric: str
    op: str
    bounds: tuple[float, ...]

    @property
    def level(self) -> float | None:
        """The level of a ``NAME@LEVEL`` metric, else None."""
        return _level(self.metric)

    def to_dict(self) -> dict[str, Any]:
        """The check's own fields of a JSON check result."""
        return {
            "check": self.text,
            "metric": self.metric,
            "op": self.op,
            "bound": list(self.bounds),
        }

    def bound_text(self) -> str:
        return " ".join(f"{b:g}" for b in self.bounds)

    def passes(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.op == "between":
            low, high = self.bounds
            return low <= value <= high
        return _OPERATORS[self.op](value, self.bounds[0])


@dataclass(frozen=True)
class CheckResult:
    check: Check
    value: float | None
    passed: bool

    def describe(self, number: Callable[[float], str]) -> str:
        """The value as a person reads it, numbers formatted by ``number``."""
        return "missing" if self.value is None else number(self.value)

    def to_dict(self) -> dict[str, Any]:
        return {**self.check.to_dict(), "value": self.value, "passed": self.passed}


@dataclass(frozen=True)
class GroupFailure:
    """A group where a per-group check failed: its key values and the metric's value there."""

    key: dict[str, Any]
    label: str
    value: float | None


@dataclass(frozen=True)
class GroupCheckResult:
    """One check applied to every group (``--per-group``): it passes when every group does."""

    check: Check
    groups: int
    failures: tuple[GroupFailure, ...]

    value = None

    @property
    def passed(self) -> bool:
        return not self.failures

    def describe(self, number: Callable[[float], str], shown: int = 5) -> str:
        if not self.failures:
            return f"all {self.groups:,} groups pass"
        named = ", ".join(
            f"{f.label} ({'missing' if f.value is None else number(f.value)})"
            for f in self.failures[:shown]
        )
        more = f", and {len(self.failures) - shown:,} more" if len(self.failures) > shown else ""
        return f"{len(self.failures):,} of {self.groups:,} groups fail: {named}{more}"

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.check.to_dict(),
            "per_group": True,
            "groups": self.groups,
            "failed_groups": [{"key": f.key, "value": f.value} for f in self.failures],
            "value": None,
            "passed": self.passed,
        }


class ScoreMetrics:
    """The metrics of a score report (``Report.to_dict()``), by their JSON names."""

    def names(self) -> list[str]:
        """Every name a check may use (``NAME@LEVEL`` shown with a placeholder level)."""
        return [
            *TOP_LEVEL_METRICS,
            *CALIBRATION_METRICS,
            *ACCURACY_METRICS,
            *(f"{name}@LEVEL" for name in LEVEL_METRICS),
        ]

    def knows(self, metric: str) -> bool:
        name, levelled = _base_name(metric), "@" in metric
        if levelled:
            return name in LEVEL_METRICS
        return name in (*TOP_LEVEL_METRICS, *CALIBRATION_METRICS, *ACCURACY_METRICS)

    def uses_calibration(self, metric: str) -> bool:
        return _base_name(metric) in (*CALIBRATION_METRICS, *ACCURACY_METRICS, *LEVEL_METRICS)

    def value(self, report: Mapping[str, Any], metric: str) -> float | None:
        """The value ``metric`` names in ``report``; None where it lacks it (or it is null)."""
        name = _base_name(metric)
        if name in TOP_LEVEL_METRICS:
            return _number(report.get(name))
        section = report.get("accuracy" if name in ACCURACY_METRICS else "calibration")
        if not section:
            return None
        level = _level(metric)
        if level is None:
            return _number(section.get(name))
        matches = [i for i, known in enumerate(section["levels"]) if math.isclose(known, level)]
        return _number(section[name][matches[0]]) if matches else None


class CompareMetrics:
    """The metrics of a comparison (``CompareReport.to_dict()``): the paired differences, and
    either model's score metrics as ``baseline.NAME`` / ``candidate.NAME``."""

    sides = ("baseline", "candidate")

    def __init__(self, paired: Sequence[str]) -> None:
        self.paired = tuple(paired)
        self._score = ScoreMetrics()

    def names(self) -> list[str]:
        return [*self.paired, *(f"{side}.METRIC" for side in self.sides)]

    def knows(self, metric: str) -> bool:
        side, name = self._split(metric)
        if side is None:
            return name in self.paired
        return side in self.sides and self._score.knows(name)

    def uses_calibration(self, metric: str) -> bool:
        side, name = self._split(metric)
        return side is not None and self._score.uses_calibration(name)

    def value(self, report: Mapping[str, Any], metric: str) -> float | None:
        side, name = self._split(metric)
        if side is None:
            return _number(report.get(name))
        return self._score.value(report[side], name)

    @staticmethod
    def _split(metric: str) -> tuple[str | None, str]:
        side, dot, name = metric.partition(".")
        return (side, name) if dot else (None, metric)


Catalog = ScoreMetrics | CompareMetrics
SCORE_METRICS = ScoreMetrics()


def parse_check(text: str, catalog: Catalog = SCORE_METRICS) -> Check:
    """Parse one ``--check`` expression; a malformed one or an unknown metric is a UsageError."""
    if match := _COMPARISON.match(text):
        metric, op, bounds = match[1], match[2], (float(match[3]),)
    elif match := _BETWEEN.match(text):
        metric, op, bounds = match[1], "between", (float(match[2]), float(match[3]))
        if bounds[0] > bounds[1]:
            raise UsageError(f"--check {text!r}: the lower bound is above the upper one")
    else:
        raise UsageError(
            f"--check must be 'METRIC OP NUMBER' (OP one of <= < >= > == !=) or "
            f"'METRIC between LOW HIGH'. Got {text!r} instead."
        )
    if not catalog.knows(metric):
        detail = ""
        if isinstance(catalog, CompareMetrics):
            detail = "; METRIC is one of " + ", ".join(SCORE_METRICS.names())
        raise UsageError(
            f"--check {text!r}: unknown metric {metric!r}; the metrics are "
            + ", ".join(catalog.names())
            + detail
        )
    if not valid_level(metric):
        raise UsageError(f"--check {text!r}: the level must be in (0, 1)")
    return Check(text.strip(), metric, op, bounds)


def parse_checks(texts: Iterable[str], catalog: Catalog = SCORE_METRICS) -> list[Check]:
    return [parse_check(text, catalog) for text in texts]


def needs_calibration(checks: Iterable[Check], catalog: Catalog = SCORE_METRICS) -> bool:
    return any(catalog.uses_calibration(c.metric) for c in checks)


def check_levels(checks: Iterable[Check]) -> list[float]:
    """The levels that ``NAME@LEVEL`` checks need computed."""
    return metric_levels(check.metric for check in checks)


def metric_levels(metrics: Iterable[str]) -> list[float]:
    """The levels that ``NAME@LEVEL`` metrics need computed."""
    return [level for level in map(_level, metrics) if level is not None]


def valid_level(metric: str) -> bool:
    """Whether a metric's ``@LEVEL``, if any, is a number in (0, 1)."""
    try:
        level = _level(metric)
    except ValueError:
        return False
    return level is None or 0 < level < 1


def evaluate(
    checks: Iterable[Check], report: Mapping[str, Any], catalog: Catalog = SCORE_METRICS
) -> list[CheckResult]:
    """Each check against a report's JSON dict (``Report.to_dict()`` for score metrics)."""
    results = []
    for check in checks:
        value = catalog.value(report, check.metric)
        passed = value is not None and check.passes(value)
        results.append(CheckResult(check, value, passed))
    return results


def evaluate_per_group(checks: Iterable[Check], report: Any) -> list[GroupCheckResult]:
    """Each check against every group of a grouped ``Report`` (all groups, before ``--top``)."""
    results = []
    for check in checks:
        failures = []
        for group in report.groups:
            value = group.report.metric(check.metric)
            if value is None or not check.passes(value):
                key = group.to_dict(report.by)["key"]
                failures.append(GroupFailure(key, group.label(), value))
        results.append(GroupCheckResult(check, len(report.groups), tuple(failures)))
    return results


def _base_name(metric: str) -> str:
    return metric.split("@")[0]


def _level(metric: str) -> float | None:
    return float(metric.split("@")[1]) if "@" in metric else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
