"""Render a Report for people (rich tables) or programs (JSON)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.table import Table

from gaussnll.cli.render_ensemble import ensemble_markdown, ensemble_table
from gaussnll.core import CheckResult, Report

PIT_BAR_WIDTH = 24


def report_json(
    report: Report,
    results: list[CheckResult] = (),
    *,
    config_file: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Iterator[str]:
    """One JSON object, in pieces: the report, the checks, and the resolved configuration.
    The group entries are serialised one at a time, one per line."""
    groups = (group.to_dict(report.by) for group in report.groups) if report.by else None
    return json_with_checks(report.to_dict(groups=False), results, config_file, settings, groups)


def json_with_checks(
    payload: dict[str, Any],
    results: list[CheckResult],
    config_file: str | None,
    settings: dict[str, Any] | None,
    groups: Iterable[dict[str, Any]] | None = None,
) -> Iterator[str]:
    """``payload`` with ``checks``, ``passed`` and ``config`` added, as JSON text in pieces;
    ``groups`` fill ``payload["groups"]``, one compact entry per line.

    Non-finite floats become null so every JSON parser accepts it.
    """
    payload = {
        **payload,
        "checks": [result.to_dict() for result in results],
        "passed": all(result.passed for result in results),
        "config": {"file": config_file, "settings": settings or {}},
    }
    text = json.dumps(finite(payload), indent=2, default=list)
    if groups is None:
        yield text
        return
    before, after = text.split(f"{_GROUPS_KEY} []", 1)
    yield f"{before}{_GROUPS_KEY} ["
    separator = "\n"
    for entry in groups:
        yield separator + "    " + _compact_json(entry)
        separator = ",\n"
    yield f"\n  ]{after}"


_GROUPS_KEY = '"groups":'


def _compact_json(value: dict[str, Any]) -> str:
    """One line of JSON, non-finite floats as null (looked for only when there are some)."""
    try:
        return json.dumps(value, default=list, allow_nan=False)
    except ValueError:
        return json.dumps(finite(value), default=list)


def print_report(report: Report, results: list[CheckResult] = ()) -> None:
    Console().print(report_renderable(report, results))


def report_renderable(report: Report, results: list[CheckResult] = ()) -> RenderableType:
    """The summary, coverage and the PIT histogram side by side, outputs, then the checks."""
    parts: list[RenderableType] = [summary_table(report)]
    if report.calibration is not None:
        parts.append(Columns([coverage_table(report), pit_chart(report)], padding=(0, 4)))
    if report.ensemble is not None:
        parts.append(ensemble_table(report, number))
    if len(report.outputs) > 1:
        parts.append(outputs_table(report))
    if report.by:
        parts.append(groups_table(report))
    if results:
        parts.append(checks_table(results))
    return Group(*parts)


def checks_table(results: list[CheckResult]) -> Table:
    failures = sum(not r.passed for r in results)
    title = "checks: all passed" if not failures else f"checks: {failures} failed"
    table = Table(title=title, title_justify="left")
    for header in ("metric", "value", "bound", "result"):
        table.add_column(header, justify="left" if header == "metric" else "right")
    for result in results:
        value = result.describe(number)
        verdict = "[green]pass[/]" if result.passed else "[bold red]FAIL[/]"
        bound = f"{result.check.op} {result.check.bound_text()}"
        table.add_row(result.check.metric, value, bound, verdict)
    return table


def report_markdown(report: Report, results: list[CheckResult] = ()) -> str:
    """A compact report for a pull-request comment or a CI job summary."""
    lines = [f"### gaussnll score: `{report.path}`", ""]
    headline = [("NLL (" + report.reduction + ")", report.nll), ("rows", report.rows)]
    if report.calibration is not None and report.accuracy is not None:
        cal = report.calibration
        headline += [
            ("variance scale s* (1 = calibrated)", cal.var_scale),
            ("CRPS", cal.crps),
            ("MACE", cal.mace),
            ("RMSE", report.accuracy.rmse),
        ]
    lines += ["| metric | value |", "| --- | ---: |"]
    lines += [f"| {name} | {cell(value)} |" for name, value in headline]
    if report.calibration is not None:
        cal = report.calibration
        lines += ["", "| level | observed coverage | mean width |", "| ---: | ---: | ---: |"]
        lines += [
            f"| {level:g} | {observed:.4f} | {number(width)} |"
            for level, observed, width in zip(
                cal.levels, cal.coverage, cal.interval_width, strict=True
            )
        ]
    lines += ensemble_markdown(report, number)
    if report.by:
        headers, rows = group_rows(report)
        lines += ["", f"**{groups_title(report)}**", "", "| " + " | ".join(headers) + " |"]
        lines += ["| " + " | ".join("---" for _ in headers) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines + checks_markdown(results))


def groups_title(report: Report) -> str:
    shown, total = len(report.groups), report.groups_total
    scope = (
        f"{total:,} groups"
        if shown == total
        else f"{shown:,} of {total:,} groups (--top K for more, --format json for all)"
    )
    return f"by {', '.join(report.by)}: {scope}"


def group_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """The groups table's headers and rows (each group, then the whole input as ``all``)."""
    level = _headline_level(report)
    metrics = ["nll", "crps", "var_scale", "mace", "rmse"]
    if level is not None:
        metrics.append(f"coverage@{level:g}")
    headers = [*report.by, "rows", *metrics]
    rows = [_row_cells(group.key_cells(), group.report, metrics) for group in report.groups]
    rows.append(_row_cells(["(all)"] + [""] * (len(report.by) - 1), report, metrics))
    return headers, rows


def _row_cells(key_cells: list[str], report: Report, metrics: list[str]) -> list[str]:
    return [*key_cells, f"{report.rows:,}", *(_metric_cell(report.metric(m)) for m in metrics)]


def groups_table(report: Report) -> Table:
    headers, rows = group_rows(report)
    table = Table(title=groups_title(report), title_justify="left")
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index < len(report.by) else "right")
    for index, row in enumerate(rows):
        is_total = index == len(rows) - 1
        if is_total:
            table.add_section()
        table.add_row(*row, style="bold" if is_total else None)
    return table


def _headline_level(report: Report) -> float | None:
    """The coverage level the groups table shows: the one closest to 0.9."""
    if report.calibration is None:
        return None
    return min(report.calibration.levels, key=lambda level: abs(level - 0.9))


def _metric_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def checks_markdown(results: list[CheckResult]) -> list[str]:
    """The checks as Markdown lines (none without checks)."""
    if not results:
        return []
    failures = sum(not r.passed for r in results)
    verdict = "all checks passed" if not failures else f"{failures} check(s) failed"
    lines = ["", f"**{verdict}**", "", "| | check | value |", "| --- | --- | ---: |"]
    lines += [
        f"| {'✅' if r.passed else '❌'} | `{r.check.text}` | {r.describe(number)} |"
        for r in results
    ]
    return lines


def cell(value: float | int | None) -> str:
    if value is None:
        return "missing"
    return f"{value:,}" if isinstance(value, int) else number(value)


def summary_table(report: Report) -> Table:
    table = Table(title=f"gaussnll score: {report.path}", show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    reduced = "-" if report.nll is None else number(report.nll)
    table.add_row(f"nll ({report.reduction})", reduced, style="bold green")
    table.add_row("nll mean", number(report.nll_mean))
    table.add_row("nll sum", number(report.nll_sum))
    cal, acc = report.calibration, report.accuracy
    if cal is not None and acc is not None:
        table.add_section()
        table.add_row("nll with constant (full)", number(cal.nll_full))
        table.add_row("variance scale s* (1 = calibrated)", number(cal.var_scale))
        table.add_row("nll with variance x s*", number(cal.nll_at_var_scale))
        table.add_row("CRPS", number(cal.crps))
        table.add_row(
            "check score / interval score",
            f"{number(cal.check_score)} / {number(cal.interval_score_avg)}",
        )
        table.add_row(
            "MACE / RMSCE / miscal. area",
            f"{cal.mace:.4f} / {cal.rmsce:.4f} / {cal.miscalibration_area:.4f}",
        )
        table.add_row("sharpness sqrt(mean var)", number(cal.sharpness))
        table.add_row("z mean / std", f"{cal.z_mean:.4f} / {cal.z_std:.4f}")
        table.add_row(
            "MAE / RMSE / bias", f"{number(acc.mae)} / {number(acc.rmse)} / {number(acc.bias)}"
        )
    table.add_section()
    table.add_row("rows / elements", f"{report.rows:,} / {report.elements:,}")
    if report.skipped_rows:
        reasons = ", ".join(f"{role} {n:,}" for role, n in report.skipped_reasons.items() if n)
        table.add_row(
            "skipped rows (non-finite)", f"{report.skipped_rows:,} ({reasons})", style="yellow"
        )
    if report.eps_floored:
        table.add_row("variances floored to eps", f"{report.eps_floored:,}", style="yellow")
    table.add_row("eps / full", f"{report.eps:g} / {str(report.full).lower()}")
    table.add_row("device / dtype", f"{report.device} / {report.dtype}")
    table.add_row("seconds / rows/s", f"{report.seconds:.3f} / {report.rows_per_second:,.0f}")
    return table


def coverage_table(report: Report) -> Table:
    cal = report.calibration
    table = Table(title="central intervals", title_justify="left")
    for header in ("level", "observed", "inside", "mean width", "interval score"):
        table.add_column(header, justify="right")
    for level, observed, inside, width, interval in zip(
        cal.levels,
        cal.coverage,
        cal.inside_counts,
        cal.interval_width,
        cal.interval_score,
        strict=True,
    ):
        style = "red" if abs(observed - level) > 0.05 else None
        table.add_row(
            f"{level:g}",
            f"{observed:.4f}",
            f"{inside:,}",
            number(width),
            number(interval),
            style=style,
        )
    return table


def pit_chart(report: Report) -> Table:
    """PIT histogram bars: flat is calibrated, a U over-confident, a hump under-confident."""
    cal = report.calibration
    table = Table(
        title="PIT histogram (flat = calibrated)", title_justify="left", show_header=False, box=None
    )
    table.add_column("bin", justify="right", style="dim")
    table.add_column("bar")
    table.add_column("count", justify="right", style="dim")
    top = max(cal.pit_counts) or 1
    for index, count in enumerate(cal.pit_counts):
        start = index / cal.pit_bins
        table.add_row(f"{start:.2f}", "█" * round(PIT_BAR_WIDTH * count / top), f"{count:,}")
    return table


def outputs_table(report: Report) -> Table:
    table = Table(title="per output", title_justify="left")
    for header in ("output", "nll mean", "CRPS", "var scale", "RMSE"):
        table.add_column(header, justify="right" if header != "output" else "left")
    for output in report.outputs:
        cal, acc = output.calibration, output.accuracy
        table.add_row(
            output.column,
            number(output.nll_mean),
            number(cal.crps) if cal else "-",
            number(cal.var_scale) if cal else "-",
            number(acc.rmse) if acc else "-",
        )
    return table


def number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.6f}" if abs(value) < 1e6 else f"{value:.6e}"


def finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value
