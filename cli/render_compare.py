"""Render a CompareReport: both models side by side, the paired NLL difference, the checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from gaussnll.cli.render import (
    CheckResults,
    checks_markdown,
    checks_table,
    json_with_checks,
    number,
)
from gaussnll.cli.streams import StdoutConsole
from gaussnll.core import CompareReport, Report


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


def print_compare(report: CompareReport, results: CheckResults = ()) -> None:
    StdoutConsole().print(compare_renderable(report, results))


def compare_renderable(report: CompareReport, results: CheckResults = ()) -> RenderableType:
    parts: list[RenderableType] = [side_by_side_table(report), paired_table(report)]
    if results:
        parts.append(checks_table(results))
    return Group(*parts)


def side_by_side_table(report: CompareReport) -> Table:
    table = Table(title=f"gaussnll compare: {report.label}", title_justify="left")
    for header in ("metric", "baseline", "candidate", "candidate - baseline"):
        table.add_column(header, justify="left" if header == "metric" else "right")
    for name, base, cand in metric_rows(report.baseline, report.candidate):
        table.add_row(name, number(base), number(cand), f"{cand - base:+.6f}")
    return table


def paired_table(report: CompareReport) -> Table:
    paired = report.paired
    table = Table(
        title="paired NLL difference (candidate - baseline; < 0: candidate better)",
        title_justify="left",
        show_header=False,
    )
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("verdict", verdict_text(report), style="bold")
    table.add_row(
        "mean difference ± standard error", f"{paired.delta_nll:+.6f} ± {paired.delta_nll_se:.6f}"
    )
    table.add_row(
        f"{paired.confidence:.0%} confidence interval",
        f"[{paired.delta_nll_ci_low:+.6f}, {paired.delta_nll_ci_high:+.6f}]",
    )
    table.add_row(
        "candidate / baseline better on",
        f"{paired.candidate_better:.1%} / {paired.baseline_better:.1%}",
    )
    table.add_row("paired rows", f"{paired.rows:,}, {pairing_text(report)}")
    if report.skipped_rows:
        table.add_row("skipped pairs (non-finite)", f"{report.skipped_rows:,}", style="yellow")
    return table


def verdict_text(report: CompareReport) -> str:
    return {
        "better": "candidate better, beyond noise",
        "worse": "candidate worse, beyond noise",
        "inconclusive": "no difference beyond noise",
    }[report.verdict]


def pairing_text(report: CompareReport) -> str:
    if report.pairing == "order":
        return "by order"
    return (
        f"by {report.id_column!r}; unmatched ids: "
        f"{report.unmatched_baseline:,} / {report.unmatched_candidate:,}"
    )


def metric_rows(baseline: Report, candidate: Report) -> list[tuple[str, float, float]]:
    """(name, baseline value, candidate value) for the headline metrics both reports have."""
    rows = [("nll (mean)", baseline.nll_mean, candidate.nll_mean)]
    base_cal, cand_cal = baseline.calibration, candidate.calibration
    if base_cal is None or cand_cal is None:
        return rows
    for name in ("crps", "var_scale", "nll_at_var_scale", "mace", "sharpness"):
        rows.append((name, getattr(base_cal, name), getattr(cand_cal, name)))
    for name in ("rmse", "mae", "bias"):
        rows.append((name, getattr(baseline.accuracy, name), getattr(candidate.accuracy, name)))
    for level, base, cand in zip(
        base_cal.levels, base_cal.coverage, cand_cal.coverage, strict=True
    ):
        rows.append((f"coverage@{level:g}", base, cand))
    return rows


def compare_markdown(report: CompareReport, results: CheckResults = ()) -> str:
    """A compact comparison for a pull-request comment or a CI job summary."""
    paired = report.paired
    lines = [
        f"### gaussnll compare: `{report.baseline.path}` → `{report.candidate.path}`",
        "",
        f"**{verdict_text(report)}**: NLL difference {paired.delta_nll:+.6f} "
        f"± {paired.delta_nll_se:.6f}, {paired.confidence:.0%} interval "
        f"[{paired.delta_nll_ci_low:+.6f}, {paired.delta_nll_ci_high:+.6f}]; candidate better "
        f"on {paired.candidate_better:.1%} of {paired.rows:,} rows ({pairing_text(report)}).",
        "",
        "| metric | baseline | candidate | difference |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {name} | {number(base)} | {number(cand)} | {cand - base:+.6f} |"
        for name, base, cand in metric_rows(report.baseline, report.candidate)
    ]
    return "\n".join(lines + checks_markdown(results))
