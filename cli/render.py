"""Render a Report for people (tables, Markdown) or programs (JSON).

Metrics are named as the catalogue names them (``SCORE_METRICS``): a human label beside the
name a check uses, each number once; counts without decimals; data shown literally."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.text import Text

from gaussnll.cli.json_entries import entry_blocks
from gaussnll.cli.json_lines import finite
from gaussnll.cli.layout import Grid, blocks, show, side_by_side
from gaussnll.cli.literal import code_span, literal, markdown
from gaussnll.cli.render_ensemble import ensemble_markdown, ensemble_table
from gaussnll.cli.render_intervals import intervals_grid
from gaussnll.cli.render_quantiles import quantile_grids
from gaussnll.cli.render_samples import samples_grid
from gaussnll.cli.streams import StdoutConsole
from gaussnll.core import (
    SCORE_METRICS,
    CalibrationSummary,
    Catalog,
    CheckResult,
    GroupCheckResult,
    Report,
)

AnyResult = CheckResult | GroupCheckResult
CheckResults = Sequence[AnyResult]  # whole-report or per-group checks

PIT_BAR_WIDTH = 24


def report_json(
    report: Report,
    results: Sequence[AnyResult] = (),
    *,
    config_file: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Iterator[str]:
    """One JSON object, in pieces: the report, the checks, and the resolved configuration.
    The group entries are written a batch at a time, one per line."""
    groups = entry_blocks(report.groups, report.by) if report.by else None
    return json_with_checks(report.to_dict(groups=False), results, config_file, settings, groups)


def json_with_checks(
    payload: dict[str, Any],
    results: Sequence[AnyResult],
    config_file: str | None,
    settings: dict[str, Any] | None,
    groups: Iterable[list[str]] | None = None,
) -> Iterator[str]:
    """``payload`` with ``checks``, ``passed`` and ``config`` added, as JSON text in pieces;
    ``groups`` (batches of compact entries, none empty) fill ``payload["groups"]``, one
    entry per line.

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
    separator = "\n    "
    for batch in groups:
        yield separator + ",\n    ".join(batch)
        separator = ",\n    "
    yield f"\n  ]{after}"


_GROUPS_KEY = '"groups":'


def print_report(
    report: Report, results: Sequence[AnyResult] = (), *, config_file: str | None = None
) -> None:
    console = StdoutConsole()
    show(console, report_blocks(console, report, results, config_file))


def report_blocks(
    console: Console,
    report: Report,
    results: Sequence[AnyResult] = (),
    config_file: str | None = None,
) -> list[RenderableType]:
    """The summary, coverage and the PIT histogram side by side, outputs, groups, then the
    checks; each table laid out to fit ``console``."""
    parts = blocks(console, summary_grid(report, config_file))
    applied = recalibration_text(report)
    if applied is not None:
        parts.append(Text(f"variances recalibrated by {literal(applied)}"))
    if report.calibration is not None:
        cal = report.calibration
        if cal.coverage is not None and cal.pit_counts is not None:
            parts += side_by_side(console, coverage_grid(cal), pit_grid(cal))
        elif cal.coverage is not None or cal.pit_counts is not None:
            parts += blocks(console, coverage_grid(cal) if cal.coverage else pit_grid(cal))
    one_sided = one_sided_grid(report)
    if one_sided.rows:
        parts += blocks(console, one_sided)
    intervals = intervals_grid(report, cell)
    if intervals is not None:
        parts += blocks(console, intervals)
    if report.ensemble is not None:
        parts.append(ensemble_table(report, number))
    samples = samples_grid(report, number, scalars=False)  # the summary lists its scalars
    if samples is not None:
        parts += blocks(console, samples)
    for grid in quantile_grids(report, cell):
        parts += blocks(console, grid)
    if len(report.outputs) > 1:
        parts += blocks(console, outputs_grid(report))
    if report.by:
        parts += blocks(console, groups_grid(report))
    if results:
        parts += blocks(console, checks_grid(results, SCORE_METRICS))
    return parts


def checks_grid(results: Sequence[AnyResult], catalog: Catalog) -> Grid:
    failures = sum(not r.passed for r in results)
    title = "checks: all passed" if not failures else f"checks: {failures} failed"
    rows, styles = [], {}
    for index, result in enumerate(results):
        value = result.describe(table_number(catalog, result.check.metric))
        bound = f"{result.check.op} {result.check.bound_text()}"
        rows.append((result.check.metric, value, bound, "pass" if result.passed else "FAIL"))
        styles[index] = "green" if result.passed else "bold red"
    return Grid(title, ("metric", "value", "bound", "result"), rows, styles=styles)


def report_markdown(
    report: Report, results: Sequence[AnyResult] = (), *, config_file: str | None = None
) -> str:
    """A compact report for a pull-request comment or a CI job summary."""
    lines = [f"### gaussnll score: {code_span(report.path)}", "", *config_markdown(config_file)]
    applied = recalibration_text(report)
    if applied is not None:
        lines += [f"Variances recalibrated by {markdown(applied)}.", ""]
    lines += ["| metric | name | value |", "| --- | --- | ---: |"]
    for label, name, value in headline_rows(report, MARKDOWN_HEADLINE):
        lines.append(f"| {markdown(label)} | `{name}` | {value} |")
    lines.append(f"| {SHAPE[0]} | `{SHAPE[1]}` | {shape_text(report)} |")
    if report.calibration is not None and report.calibration.coverage is not None:
        grid = coverage_grid(report.calibration)
        lines += ["", *markdown_table(grid.headers, grid.rows, keys=0)]
    intervals = intervals_grid(report, cell)
    if intervals is not None:
        lines += titled_markdown(intervals)
    lines += ensemble_markdown(report, number)
    samples = samples_grid(report, number)
    if samples is not None:
        lines += ["", f"**{markdown(samples.title)}**", ""]
        lines += markdown_table(samples.headers, samples.rows, keys=samples.keys, code=1)
    for grid in quantile_grids(report, cell):
        lines += titled_markdown(grid)
    if len(report.outputs) > 1:
        lines += titled_markdown(outputs_grid(report))
    if report.by:
        lines += titled_markdown(groups_grid(report))
    return "\n".join(lines + checks_markdown(results, SCORE_METRICS))


def titled_markdown(grid: Grid) -> list[str]:
    """A grid as Markdown lines: its title in bold, then its table."""
    lines = ["", f"**{markdown(grid.title)}**", ""]
    return lines + markdown_table(grid.headers, grid.rows, keys=grid.keys)


MARKDOWN_HEADLINE = (
    *("nll", "rows", "weight_sum", "var_scale", "crps", "mace", "quantile_mace", "rmse"),
    *("wis", "crossing_rows"),
)
SHAPE = ("rows × outputs × members", "shape")  # label and name of the shape's row
CONFIG = ("options from", "config")  # ... and of the config file's


def config_markdown(config_file: str | None) -> list[str]:
    """The line naming the config file the options came from (none without one)."""
    return [] if config_file is None else [f"Options from {code_span(config_file)}.", ""]


def shape_text(report: Report) -> str:
    """The shape scored, ``rows × outputs × members`` (1 member unless an ensemble or draws),
    so a mean of several values scored against one target (a forgotten ``--ensemble``) shows."""
    members: int | str = report.ensemble.members if report.ensemble is not None else 1
    if report.samples is not None:
        members = report.samples.sample_members or "several"
    return f"{count(report.rows)} × {len(report.outputs)} × {members}"


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], keys: int, code: int | None = None
) -> list[str]:
    """A Markdown table: the first ``keys`` columns left-aligned, numbers right-aligned;
    column ``code`` (metric names) as code spans."""
    align = ["---" if index < keys else "---:" for index in range(len(headers))]
    heads = [markdown(header) for header in headers]
    lines = ["| " + " | ".join(heads) + " |", "| " + " | ".join(align) + " |"]
    for row in rows:
        cells = [code_span(c) if i == code and c else markdown(c) for i, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def groups_title(report: Report) -> str:
    shown, total = len(report.groups), report.groups_total
    scope = (
        f"{total:,} groups"
        if shown == total
        else f"{shown:,} of {total:,} groups (--top K for more, --format json for all)"
    )
    return f"by {', '.join(report.by)}: {scope}"


def groups_grid(report: Report) -> Grid:
    """Each group's key, rows and headline metrics, then the whole input as ``(all)``."""
    shown = [(group.key_cells(), group.report) for group in report.groups]  # built once
    metrics = group_metrics(report, [group_report for _, group_report in shown])
    headers = [*report.by, "rows", *metrics]
    rows = [_row_cells(key, group_report, metrics) for key, group_report in shown]
    rows.append(_row_cells(["(all)"] + [""] * (len(report.by) - 1), report, metrics))
    total = len(rows) - 1
    return Grid(
        groups_title(report),
        headers,
        rows,
        keys=len(report.by),
        sections=frozenset({total}),
        styles={total: "bold"},
    )


QUANTILE_GROUP_METRICS = ("wis", "crps_quantile", "quantile_mace", "crossing_rows")


def group_metrics(report: Report, group_reports: Sequence[Report]) -> list[str]:
    """The metrics a table of groups shows: the weight sum when weighted, the headline
    scores, and the coverage at the level closest to 0.9 (a quantile model's own)."""
    metrics = ["weight_sum"] if report.weight_sum is not None else []
    if report.quantiles is not None:  # a quantile model: no density, no Gaussian numbers
        return [*metrics, *QUANTILE_GROUP_METRICS]
    metrics += ["nll", "crps", "var_scale", "mace", "rmse"]
    level = _headline_level(report)
    if level is not None:
        metrics.append(f"coverage@{level:g}")
    return [metric for metric in metrics if _computed_for(group_reports, metric)]


def _computed_for(group_reports: Sequence[Report], metric: str) -> bool:
    """Whether the groups shown have ``metric``: ``--group-metrics`` may leave its family out
    (``mace``'s calibration curve is a group's only when asked for)."""
    return not group_reports or any(report.metric(metric) is not None for report in group_reports)


def _row_cells(key_cells: list[str], report: Report, metrics: list[str]) -> list[str]:
    values = (cell(report.metric(m), SCORE_METRICS.integer(m)) for m in metrics)
    return [*key_cells, count(report.rows), *values]


def _headline_level(report: Report) -> float | None:
    """The coverage level the groups table shows: the one closest to 0.9."""
    if report.calibration is None:
        return None
    return min(report.calibration.levels, key=lambda level: abs(level - 0.9))


def checks_markdown(results: Sequence[AnyResult], catalog: Catalog) -> list[str]:
    """The checks as Markdown lines (none without checks)."""
    if not results:
        return []
    failures = sum(not r.passed for r in results)
    verdict = "all checks passed" if not failures else f"{failures} check(s) failed"
    lines = ["", f"**{verdict}**", "", "| | check | value |", "| --- | --- | ---: |"]
    for result in results:
        value = result.describe(table_number(catalog, result.check.metric))
        mark = "✅" if result.passed else "❌"
        lines.append(f"| {mark} | {code_span(result.check.text)} | {markdown(value)} |")
    return lines


def table_number(catalog: Catalog, metric: str) -> Callable[[float], str]:
    """How a table writes values of ``metric``: a count as an integer, else as ``number``."""
    integer = catalog.integer(metric)
    return lambda value: cell(value, integer)


def cell(value: float | None, integer: bool = False) -> str:
    """A number in a table: ``-`` when missing, a count with thousands separators (a weighted
    count that is not whole as any number)."""
    if value is None:
        return "-"
    return count(value) if integer and float(value).is_integer() else number(value)


def count(value: float) -> str:
    return f"{int(value):,}"


def headline_rows(report: Report, names: Sequence[str]) -> list[tuple[str, str, str]]:
    """(human label, the name a check uses, value) of each named metric the report has."""
    rows = []
    for name in names:
        value = report.metric(name)
        if value is not None:
            rows.append((label(name, report), name, cell(value, SCORE_METRICS.integer(name))))
    return rows


def label(name: str, report: Report | None = None) -> str:
    """A metric's human label from the catalogue (``nll`` names its reduction)."""
    text = SCORE_METRICS.metrics[name.partition("@")[0]].spec.label
    return f"{text} ({report.reduction})" if name == "nll" and report is not None else text


# The one-sided calibration has a table of its own (its long names would crowd the labels out).
ONE_SIDED = tuple(
    f"{scope}quantile_{name}"
    for scope in ("", "mixture_")
    for name in ("mace", "rmsce", "miscalibration_area")
)
_SUMMARY_SKIPPED = frozenset(
    {"nll", "seconds", "skipped_rows", "eps_floored", "z2_mean", *ONE_SIDED}
)
SAME_NUMBER = {"var_scale": "z2_mean"}  # s* = mean(z²): one number, two names


def summary_grid(report: Report, config_file: str | None = None) -> Grid:
    """Every scalar metric once, by label and the name a check uses; then how it was run
    (named by its JSON keys), the shape scored and the config file read.

    ``nll`` is the mean or the sum by ``reduction``: its name goes beside that one."""
    rows: list[tuple[str, str, str]] = []
    sections, styles = set(), {}
    section: str | None = None
    for metric in SCORE_METRICS.metrics.values():
        if metric.per_level or metric.name in _SUMMARY_SKIPPED or metric.section == "ci":
            continue  # the intervals have a table of their own
        value = report.metric(metric.name)
        if value is None:
            continue
        if metric.section != section:
            sections.add(len(rows))
            section = metric.section
        name = metric.name
        if name == f"nll_{report.reduction}":
            styles[len(rows)] = "bold green"
            name = f"nll, {name}"
        if name in SAME_NUMBER:
            name = f"{name}, {SAME_NUMBER[name]}"
        rows.append((metric.spec.label, name, cell(value, metric.integer)))
    sections.add(len(rows))
    for name, value, text in (
        ("skipped_rows", report.skipped_rows, _skipped_text(report)),
        ("eps_floored", report.eps_floored, count(report.eps_floored)),
    ):
        if value:
            styles[len(rows)] = "yellow"
            rows.append((label(name), name, text))
    speed = count(report.rows_per_second) if math.isfinite(report.rows_per_second) else "-"
    full = str(report.full).lower()
    rows += [
        (*SHAPE, shape_text(report)),
        ("variance floor / constant added", "eps / full", f"{report.eps:g} / {full}"),
        ("computed on / in", "device / dtype", f"{report.device} / {report.dtype}"),
        (label("seconds"), "seconds", f"{report.seconds:.3f}"),
        ("rows per second", "rows_per_second", speed),
    ]
    if config_file is not None:
        rows.append((*CONFIG, config_file))
    return Grid(
        f"gaussnll score: {report.path}",
        ("metric", "name", "value"),
        rows,
        keys=2,
        sections=frozenset(sections),
        styles=styles,
        row_blocks=False,
        optional=(0,),
    )


def one_sided_grid(report: Report) -> Grid:
    """The one-sided calibration (the Gaussian's, then the mixture's), by label and the name a
    check uses: no rows when not computed."""
    rows = [(label(name), name, value) for _, name, value in headline_rows(report, ONE_SIDED)]
    return Grid(
        "one-sided calibration: the target at or below the τ-quantile (sees a bias)",
        ("metric", "name", "value"),
        rows,
        keys=2,
        optional=(0,),
    )


def recalibration_text(report: Report) -> str | None:
    """The recalibration map applied (``--recalibration``), as text: its file, scales and
    groups; None without one."""
    applied = report.recalibration
    if applied is None:
        return None
    name = applied["file"] or "a map given in Python"
    scales = ", ".join(f"{scale:g}" for scale in applied["scale"])
    text = f"{name} (scale {scales}"
    if applied["by"]:
        text += (
            f"; {applied['groups']:,} group(s) by {', '.join(applied['by'])}; "
            f"{applied['unseen_rows']:,} row(s) of other keys took the overall scale"
        )
    return text + ")"


def _skipped_text(report: Report) -> str:
    reasons = ", ".join(f"{role} {n:,}" for role, n in report.skipped_reasons.items() if n)
    return f"{report.skipped_rows:,} ({reasons})"


def coverage_grid(cal: CalibrationSummary) -> Grid:
    """Per level: every per-level metric, headed by the name a check uses (the summary
    table gives their labels)."""
    per_level = [
        m for m in SCORE_METRICS.metrics.values() if m.per_level and m.section == "calibration"
    ]
    headers = ["level p", *(f"{m.name}@p" for m in per_level)]
    rows, styles = [], {}
    for index, level in enumerate(cal.levels):
        values = [getattr(cal, m.name)[index] for m in per_level]
        cells = [cell(value, m.integer) for value, m in zip(values, per_level, strict=True)]
        rows.append([f"{level:g}", *cells])
        if abs((cal.coverage or [level])[index] - level) > 0.05:
            styles[index] = "red"
    return Grid("central intervals", headers, rows, keys=0, styles=styles)


def pit_grid(cal: CalibrationSummary) -> Grid:
    """PIT histogram bars: flat is calibrated, a U over-confident, a hump under-confident."""
    counts = cal.pit_counts or []
    top = max(counts, default=0) or 1
    rows = [
        (f"{index / cal.pit_bins:.2f}", "█" * round(PIT_BAR_WIDTH * n / top), cell(n, True))
        for index, n in enumerate(counts)
    ]
    return Grid(
        "PIT histogram (flat = calibrated)",
        ("bin", "bar", "count"),
        rows,
        keys=2,
        show_header=False,
        box=False,
        row_blocks=False,
    )


def outputs_grid(report: Report) -> Grid:
    names = ("nll_mean", "crps", "var_scale", "rmse")
    rows = []
    for output in report.outputs:
        sections = {"calibration": output.calibration, "accuracy": output.accuracy, None: output}
        values = []
        for name in names:
            holder = sections[SCORE_METRICS.metrics[name].section]
            values.append(cell(None if holder is None else getattr(holder, name)))
        rows.append((output.column, *values))
    return Grid("per output", ("output", *names), rows)


def number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.6f}" if abs(value) < 1e6 else f"{value:.6e}"
