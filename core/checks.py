"""Quality gates: ``METRIC OP NUMBER`` or ``METRIC between LOW HIGH``, parsed, never eval'd.

Metrics are the report's JSON names: top-level numbers (``nll``, ``rows``, ...), the
``calibration`` and ``accuracy`` numbers (``mace``, ``var_scale``, ``rmse``, ...), and per-level
values as ``NAME@LEVEL`` (``coverage@0.9``, ``interval_width@0.5``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
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
_METRIC = r"[a-z_0-9]+(?:@" + _NUMBER + r")?"
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
        return float(self.metric.split("@")[1]) if "@" in self.metric else None

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check.text,
            "metric": self.check.metric,
            "op": self.check.op,
            "bound": list(self.check.bounds),
            "value": self.value,
            "passed": self.passed,
        }


def metric_names() -> list[str]:
    """Every name a check may use (``NAME@LEVEL`` shown with a placeholder level)."""
    return [
        *TOP_LEVEL_METRICS,
        *CALIBRATION_METRICS,
        *ACCURACY_METRICS,
        *(f"{name}@LEVEL" for name in LEVEL_METRICS),
    ]


def parse_check(text: str) -> Check:
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
    name = metric.split("@")[0]
    known = (*TOP_LEVEL_METRICS, *CALIBRATION_METRICS, *ACCURACY_METRICS)
    if ("@" in metric and name not in LEVEL_METRICS) or ("@" not in metric and name not in known):
        raise UsageError(
            f"--check {text!r}: unknown metric {metric!r}; the metrics are "
            + ", ".join(metric_names())
        )
    check = Check(text.strip(), metric, op, bounds)
    if check.level is not None and not 0 < check.level < 1:
        raise UsageError(f"--check {text!r}: the level must be in (0, 1)")
    return check


def parse_checks(texts: Iterable[str]) -> list[Check]:
    return [parse_check(text) for text in texts]


def needs_calibration(checks: Iterable[Check]) -> bool:
    return any(
        c.metric.split("@")[0] in (*CALIBRATION_METRICS, *ACCURACY_METRICS, *LEVEL_METRICS)
        for c in checks
    )


def check_levels(checks: Iterable[Check]) -> list[float]:
    """The levels that ``NAME@LEVEL`` checks need computed."""
    return [c.level for c in checks if c.level is not None]


def evaluate(checks: Iterable[Check], report: Mapping[str, Any]) -> list[CheckResult]:
    """Each check against a report's JSON dict (``Report.to_dict()``)."""
    results = []
    for check in checks:
        value = metric_value(report, check)
        passed = value is not None and check.passes(value)
        results.append(CheckResult(check, value, passed))
    return results


def metric_value(report: Mapping[str, Any], check: Check) -> float | None:
    """The value ``check`` names in ``report``; None where the report lacks it (or it is null)."""
    name = check.metric.split("@")[0]
    if name in TOP_LEVEL_METRICS:
        return _number(report.get(name))
    section = report.get("accuracy" if name in ACCURACY_METRICS else "calibration")
    if not section:
        return None
    if check.level is None:
        return _number(section.get(name))
    levels = section["levels"]
    matches = [i for i, level in enumerate(levels) if math.isclose(level, check.level)]
    return _number(section[name][matches[0]]) if matches else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
