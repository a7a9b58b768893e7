"""Render a Report for people (a rich table) or programs (JSON)."""

from __future__ import annotations

import json
import math

from rich.console import Console
from rich.table import Table

from gaussnll.core.report import Report


def report_json(report: Report) -> str:
    """One JSON object; non-finite floats become null so every JSON parser accepts it."""
    return json.dumps(_finite(report.to_dict()), indent=2)


def report_table(report: Report) -> Table:
    """The default human-readable summary."""
    table = Table(title=f"gaussnll score — {report.path}", show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    reduced = "—" if report.nll is None else _number(report.nll)
    table.add_row(f"nll ({report.reduction})", reduced, style="bold green")
    table.add_row("nll mean", _number(report.nll_mean))
    table.add_row("nll sum", _number(report.nll_sum))
    if len(report.outputs) > 1:
        for output in report.outputs:
            table.add_row(f"  nll mean [{output.column}]", _number(output.nll_mean))
    table.add_row("rows", f"{report.rows:,}")
    table.add_row("elements", f"{report.elements:,}")
    table.add_row("eps", f"{report.eps:g}")
    table.add_row("full", str(report.full).lower())
    table.add_row("device / dtype", f"{report.device} / {report.dtype}")
    table.add_row("seconds", f"{report.seconds:.3f}")
    table.add_row("rows/s", f"{report.rows_per_second:,.0f}")
    return table


def print_table(report: Report) -> None:
    Console().print(report_table(report))


def _number(value: float) -> str:
    return f"{value:.6f}" if abs(value) < 1e6 else f"{value:.6e}"


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
