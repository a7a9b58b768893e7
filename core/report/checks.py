"""Quality gates: ``METRIC OP NUMBER`` or ``METRIC between LOW HIGH``, parsed, never eval'd.

Metrics are named as in the metric catalogue (``catalogue``): ``nll``, ``mace``,
``coverage@0.9``, and for a comparison ``delta_nll`` or ``candidate.NAME``. Messages name the
``check`` parameter; a front end names its own flag.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gaussnll.core.errors import OptionError
from gaussnll.core.report.catalogue import Catalog, CompareMetrics, split_level, valid_level
from gaussnll.core.report.report import SCORE_METRICS

CHECK = "check"  # the parameter named in messages

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
    "!=": operator.ne,
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_METRIC = r"(?:[A-Za-z]+\.)?[A-Za-z_][A-Za-z_0-9]*(?:@" + _NUMBER + r")?"
_COMPARISON = re.compile(rf"^\s*({_METRIC})\s*(<=|>=|==|!=|<|>)\s*({_NUMBER})\s*$")
_BETWEEN = re.compile(rf"^\s*({_METRIC})\s+between\s+({_NUMBER})\s+({_NUMBER})\s*$")


@dataclass(frozen=True)
class Check:
    """One parsed gate: ``metric`` compared with ``bound`` (or inside ``[low, high]``);
    ``origin``: the option that made it, as its user wrote it (``--max-regression 0.01``),
    None for a check given as text."""

    text: str
    metric: str
    op: str
    bounds: tuple[float, ...]
    origin: str | None = None

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


def parse_check(text: str, catalog: Catalog = SCORE_METRICS) -> Check:
    """Parse one check expression; a malformed one or an unknown metric is an OptionError."""
    bounds: tuple[float, ...]
    if match := _COMPARISON.match(text):
        metric, op, bounds = match[1], match[2], (float(match[3]),)
    elif match := _BETWEEN.match(text):
        metric, op, bounds = match[1], "between", (float(match[2]), float(match[3]))
        if bounds[0] > bounds[1]:
            raise OptionError(CHECK, f"{text!r}: the lower bound is above the upper one")
    else:
        raise OptionError(
            CHECK,
            "must be 'METRIC OP NUMBER' (OP one of <= < >= > == !=) or "
            f"'METRIC between LOW HIGH'. Got {text!r} instead.",
        )
    if not valid_level(metric):
        raise OptionError(CHECK, f"{text!r}: the level must be in (0, 1)")
    if not catalog.knows(metric):
        close = catalog.suggestion(metric)
        hint = f" (did you mean {close!r}?)" if close else ""
        detail = ""
        if isinstance(catalog, CompareMetrics):
            detail = "; METRIC is one of " + ", ".join(SCORE_METRICS.names())
        raise OptionError(
            CHECK,
            f"{text!r}: unknown metric {metric!r}{hint}; the metrics are "
            + ", ".join(catalog.names())
            + detail,
        )
    return Check(text.strip(), metric, op, bounds)


def parse_checks(texts: Iterable[str], catalog: Catalog = SCORE_METRICS) -> list[Check]:
    return [parse_check(text, catalog) for text in texts]


def metric_levels(metrics: Iterable[str]) -> list[float]:
    """The levels that ``NAME@LEVEL`` metrics need computed."""
    return [level for level in map(_level, metrics) if level is not None]


def evaluate(
    checks: Iterable[Check], report: Any, catalog: Catalog = SCORE_METRICS
) -> list[CheckResult]:
    """Each check against a ``Report`` (or, with ``COMPARE_METRICS``, a ``CompareReport``)."""
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


def _level(metric: str) -> float | None:
    return split_level(metric)[1]
