"""Render the bootstrap intervals of ``--ci`` (one grid for the table, Markdown and HTML):
each headline metric's value beside its interval's ends, by the names a check uses."""

from __future__ import annotations

from collections.abc import Callable

from gaussnll.cli.layout import Grid
from gaussnll.core import Report

Cell = Callable[[float | None], str]
# The metrics with intervals, in the order shown (coverage: one row per level).
INTERVAL_METRICS = ("nll", "dss", "crps", "mace", "quantile_mace", "rmse", "var_scale")
VALUE_OF = {"nll": "nll_mean"}  # the interval is the mean's, whatever --reduction says


def intervals_grid(report: Report, cell: Cell) -> Grid | None:
    """Each metric with an interval: its value, then ``NAME_ci_low`` and ``NAME_ci_high``
    (None without ``--ci``)."""
    ci = report.ci
    if ci is None:
        return None
    names = [*INTERVAL_METRICS, *(f"coverage@{level:g}" for level in ci.levels)]
    rows = []
    for name in names:
        metric, at, level = name.partition("@")
        low, high = (report.metric(f"{metric}_ci_{end}{at}{level}") for end in ("low", "high"))
        if low is not None:
            value = report.metric(VALUE_OF.get(name, name))
            rows.append((name, cell(value), cell(low), cell(high)))
    keyed = "their values" if ci.key == "values" else ci.key
    title = (
        f"{ci.level * 100:g}% bootstrap intervals ({ci.replicates:,} replicates, rows keyed "
        f"by {keyed})"
    )
    return Grid(title, ("name", "value", "NAME_ci_low", "NAME_ci_high"), rows, keys=1)
