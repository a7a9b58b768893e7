"""Render a quantile model's per-level numbers (table and Markdown grids); its scalars are in
the summary like any report's."""

from __future__ import annotations

from collections.abc import Callable

from gaussnll.cli.layout import Grid
from gaussnll.core import SCORE_METRICS, Report

Cell = Callable[[float | None, bool], str]
COVERAGE_WARNING = 0.05  # a level whose coverage is further from it is shown in red


def quantile_grids(report: Report, cell: Cell) -> list[Grid]:
    """Per quantile level, then per symmetric pair's central level: every per-level metric of
    the section that those levels index, headed by the name a check uses; none without
    quantiles."""
    section = report.quantiles
    if section is None:
        return []
    grids = []
    for title, field, name, observed in (
        ("quantile levels", "levels", "level τ", "quantile_coverage"),
        ("central intervals of the quantile pairs", "interval_levels", "level p", ""),
    ):
        levels = getattr(section, field)
        metrics = [
            m
            for m in SCORE_METRICS.metrics.values()
            if m.per_level and m.section == "quantiles" and m.spec.levels == field
        ]
        rows, styles = [], {}
        for index, level in enumerate(levels):
            values = [getattr(section, m.name)[index] for m in metrics]
            cells = [cell(value, m.integer) for value, m in zip(values, metrics, strict=True)]
            rows.append([f"{level:g}", *cells])
            coverage = getattr(section, observed or "interval_coverage")[index]
            if abs(coverage - level) > COVERAGE_WARNING:
                styles[index] = "red"
        if rows:
            headers = [name, *(f"{m.name}@{name[-1]}" for m in metrics)]
            grids.append(Grid(title, headers, rows, keys=0, styles=styles))
    return grids
