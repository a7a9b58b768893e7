"""A failed gate is never silent: one line on stderr per failed check (per failing group with
``--per-group``), whatever goes to stdout, and the same as a GitHub Actions error annotation
when run there."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from gaussnll.cli.literal import github_message, literal
from gaussnll.core import Catalog, CheckResult, GroupCheckResult

ANNOTATION_TITLE = "gaussnll check failed"


def plain_value(value: float | None, integer: bool) -> str:
    """A check's value for a log line or JUnit: counts as plain integers, else 6 digits."""
    if value is None:
        return "missing"
    return str(int(value)) if integer and float(value).is_integer() else f"{value:.6g}"


def log_number(catalog: Catalog, metric: str) -> Callable[[float], str]:
    """How a log line or JUnit writes values of ``metric`` (see ``plain_value``)."""
    integer = catalog.integer(metric)
    return lambda value: plain_value(value, integer)


def failure_lines(results: Sequence[CheckResult | GroupCheckResult], catalog: Catalog) -> list[str]:
    """What each failed check says: ``coverage@0.9 >= 0.85 (got 0.8217)``, led by the option
    that made it (``--max-regression 0.01: ...``), one per failing group (named by its key) for
    a per-group check."""
    lines = []
    for result in results:
        if result.passed:
            continue
        integer = catalog.integer(result.check.metric)
        if isinstance(result, GroupCheckResult):
            lines += [
                f"{result.check.text} in group {group_name(failure.key)} "
                f"(got {plain_value(failure.value, integer)})"
                for failure in result.failures
            ]
        else:
            line = f"{result.check.text} (got {plain_value(result.value, integer)})"
            origin = result.check.origin
            lines.append(line if origin is None else f"{origin}: {line}")
    return [literal(line) for line in lines]


def group_name(key: dict[str, Any]) -> str:
    """``region=north, model=a`` (``null`` for a missing value)."""
    return ", ".join(
        f"{column}={'null' if value is None else value}" for column, value in key.items()
    )


def report_failures(
    results: Sequence[CheckResult | GroupCheckResult], catalog: Catalog, stream: TextIO
) -> None:
    """Write the failed checks' lines to ``stream`` (stderr), and under GitHub Actions
    (``GITHUB_ACTIONS=true``) as ``::error`` annotations too."""
    lines = failure_lines(results, catalog)
    annotate = os.environ.get("GITHUB_ACTIONS") == "true"
    for line in lines:
        print(f"gaussnll: check failed: {line}", file=stream)
        if annotate:
            print(f"::error title={ANNOTATION_TITLE}::{github_message(line)}", file=stream)
