"""Render a CompareReport: both models side by side, the paired NLL difference, the checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rich.console import Console, RenderableType
from rich.text import Text

from gaussnll.cli.layout import Grid, blocks, show
from gaussnll.cli.literal import code_span, markdown
from gaussnll.cli.render import (
    CONFIG,
    CheckResults,
    cell,
    checks_grid,
    checks_markdown,
    config_markdown,
    count,
    json_with_checks,
    label,
    markdown_table,
    titled_markdown,
)
from gaussnll.cli.streams import StdoutConsole
from gaussnll.core import COMPARE_METRICS, CompareReport, Report


def compare_json(
    report: CompareReport,
    results: CheckResults = (),
    *,
    config_file: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Iterator[str]:
    """One JSON object (schema ``gaussnll.compare/1``) with the checks and the configuration,
    in pieces."""
    return json_with_checks(report.to_dict(), results, config_file, settings)


def print_compare(
    report: CompareReport, results: CheckResults = (), *, config_file: str | None = None
) -> None:
    console = StdoutConsole()
    show(console, compare_blocks(console, report, results, config_file))


def compare_blocks(
    console: Console,
    report: CompareReport,
    results: CheckResults = (),
    config_file: str | None = None,
) -> list[RenderableType]:
    parts = blocks(console, side_by_side_grid(report))
    parts.append(Text(f"verdict: {verdict_text(report)}", style="bold"))
    parts += blocks(console, paired_grid(report, config_file))
    if report.by:
        parts += blocks(console, paired_groups_grid(report))
    if results:
        parts += blocks(console, checks_grid(results, COMPARE_METRICS))
    return parts


def side_by_side_grid(report: CompareReport) -> Grid:
    headers = ("metric", "name", "baseline", "candidate", "candidate - baseline")
    rows = [
        (label(name), name, cell(base), cell(cand), f"{cand - base:+.6f}")
        for name, base, cand in metric_rows(report.baseline, report.candidate)
    ]
    return Grid(f"gaussnll compare: {report.label}", headers, rows, keys=2, optional=(0,))


def paired_grid(report: CompareReport, config_file: str | None = None) -> Grid:
    """The paired difference: one number per row, by its label and the name a check uses;
    how rows were paired, and the config file read (the verdict goes above it, so the numbers'
    labels fit 80 columns)."""
    names = ["delta_nll", "delta_nll_se", "delta_nll_ci_low", "delta_nll_ci_high"]
    names += ["candidate_better", "baseline_better", "rows"]
    if report.paired.weight_sum is not None:
        names.append("weight_sum")
    if report.pairing == "id":
        names += ["unmatched_baseline", "unmatched_candidate"]
    if report.skipped_rows:
        names.append("skipped_rows")
    rows = []
    for name in names:
        metric = COMPARE_METRICS.metrics[name]
        value = COMPARE_METRICS.value(report, name)
        rows.append((metric.spec.label, name, cell(value, metric.integer)))
    rows.append(("paired by", "pairing", pairing_text(report)))
    if config_file is not None:
        rows.append((*CONFIG, config_file))
    title = (
        f"paired NLL difference (candidate - baseline; < 0: candidate better), "
        f"{report.paired.confidence:.0%} confidence interval"
    )
    return Grid(
        title,
        ("what", "name", "value"),
        rows,
        keys=2,
        styles={0: "bold"},
        row_blocks=False,
        optional=(0,),
    )


def verdict_text(report: CompareReport) -> str:
    return {
        "better": "candidate better, beyond noise",
        "worse": "candidate worse, beyond noise",
        "inconclusive": "no difference beyond noise",
    }[report.verdict]


def pairing_text(report: CompareReport) -> str:
    return "order" if report.pairing == "order" else f"id column {report.id_column}"


COMPARED = ("nll_mean", "crps", "var_scale", "nll_at_var_scale", "mace", "sharpness")
COMPARED_ACCURACY = ("rmse", "mae", "bias")


def metric_rows(baseline: Report, candidate: Report) -> list[tuple[str, float, float]]:
    """(metric name, baseline value, candidate value) for the headline metrics both reports
    have, coverage per level last."""
    names = list(COMPARED + COMPARED_ACCURACY)
    if baseline.calibration is not None:
        names += [f"coverage@{level:g}" for level in baseline.calibration.levels]
    rows = []
    for name in names:
        base, cand = baseline.metric(name), candidate.metric(name)
        if base is not None and cand is not None:
            rows.append((name, base, cand))
    return rows


def compare_markdown(
    report: CompareReport, results: CheckResults = (), *, config_file: str | None = None
) -> str:
    """A compact comparison for a pull-request comment or a CI job summary."""
    paired = report.paired
    paths = f"{code_span(report.baseline.path)} → {code_span(report.candidate.path)}"
    lines = [
        f"### gaussnll compare: {paths}",
        "",
        *config_markdown(config_file),
        f"**{verdict_text(report)}**: NLL difference (`delta_nll`) {paired.delta_nll:+.6f} "
        f"± {paired.delta_nll_se:.6f}, {paired.confidence:.0%} interval "
        f"[{paired.delta_nll_ci_low:+.6f}, {paired.delta_nll_ci_high:+.6f}]; candidate better "
        f"on {paired.candidate_better:.1%} of {paired.rows:,} rows "
        f"(paired by {markdown(pairing_text(report))}).",
        "",
    ]
    grid = side_by_side_grid(report)
    lines += markdown_table(grid.headers, grid.rows, keys=grid.keys, code=1)
    grid = paired_grid(report)
    lines += ["", f"**{markdown(grid.title)}**", ""]
    lines += markdown_table(grid.headers, grid.rows, keys=grid.keys, code=1)
    if report.by:
        lines += titled_markdown(paired_groups_grid(report))
    return "\n".join(lines + checks_markdown(results, COMPARE_METRICS))


SHOWN_GROUPS = 20  # the worst groups a table or Markdown comparison lists (JSON has them all)
_PAIRED_COLUMNS = ("delta_nll", "delta_nll_ci_low", "delta_nll_ci_high", "candidate_better")


def paired_groups_grid(report: CompareReport) -> Grid:
    """The worst groups' paired NLL differences (largest first), with their intervals."""
    shown = report.groups[:SHOWN_GROUPS]
    rows = [
        [
            *group.key_cells(),
            count(group.report.paired.rows),
            *(cell(group.report.metric(name)) for name in _PAIRED_COLUMNS),
            group.report.verdict,
        ]
        for group in shown
    ]
    scope = (
        f"{report.groups_total:,} groups"
        if len(shown) == report.groups_total
        else f"the {len(shown)} worst of {report.groups_total:,} groups (--format json for all)"
    )
    title = f"by {', '.join(report.by)}: {scope}, the largest delta_nll first"
    headers = [*report.by, "rows", *_PAIRED_COLUMNS, "verdict"]
    return Grid(title, headers, rows, keys=len(report.by))
