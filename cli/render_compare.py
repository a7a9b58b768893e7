"""Render a CompareReport: both models side by side, the paired NLL difference, the checks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console, RenderableType

from gaussnll.cli.layout import Grid, blocks, show
from gaussnll.cli.literal import code_span, markdown
from gaussnll.cli.render import (
    cell,
    checks_grid,
    checks_markdown,
    json_with_checks,
    label,
    markdown_table,
)
from gaussnll.core import COMPARE_METRICS, CheckResult, CompareReport, Report


def compare_json(
    report: CompareReport,
    results: list[CheckResult] = (),
    *,
    config_file: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Iterator[str]:
    """One JSON object (schema ``gaussnll.compare/1``) with the checks and the configuration,
    in pieces."""
    return json_with_checks(report.to_dict(), results, config_file, settings)


def print_compare(report: CompareReport, results: Sequence[CheckResult] = ()) -> None:
    console = Console()
    show(console, compare_blocks(console, report, results))


def compare_blocks(
    console: Console, report: CompareReport, results: Sequence[CheckResult] = ()
) -> list[RenderableType]:
    parts = blocks(console, side_by_side_grid(report))
    parts += blocks(console, paired_grid(report))
    if results:
        parts += blocks(console, checks_grid(results, COMPARE_METRICS))
    return parts


def side_by_side_grid(report: CompareReport) -> Grid:
    headers = ("metric", "name", "baseline", "candidate", "candidate - baseline")
    rows = [
        (label(name), name, cell(base), cell(cand), f"{cand - base:+.6f}")
        for name, base, cand in metric_rows(report.baseline, report.candidate)
    ]
    return Grid(f"gaussnll compare: {report.label}", headers, rows, keys=2)


def paired_grid(report: CompareReport) -> Grid:
    """The paired difference, each number beside the name a check uses."""
    paired = report.paired
    rows = [
        ("verdict", "", verdict_text(report)),
        (
            "mean difference ± standard error",
            "delta_nll ± delta_nll_se",
            f"{paired.delta_nll:+.6f} ± {paired.delta_nll_se:.6f}",
        ),
        (
            f"{paired.confidence:.0%} confidence interval",
            "delta_nll_ci_low, delta_nll_ci_high",
            f"[{paired.delta_nll_ci_low:+.6f}, {paired.delta_nll_ci_high:+.6f}]",
        ),
        (
            "candidate / baseline better on",
            "candidate_better / baseline_better",
            f"{paired.candidate_better:.1%} / {paired.baseline_better:.1%}",
        ),
        ("paired rows", "rows", f"{paired.rows:,}, {pairing_text(report)}"),
    ]
    styles = {0: "bold"}
    if report.skipped_rows:
        styles[len(rows)] = "yellow"
        rows.append(("skipped pairs (non-finite)", "skipped_rows", f"{report.skipped_rows:,}"))
    return Grid(
        "paired NLL difference (candidate - baseline; < 0: candidate better)",
        ("what", "name", "value"),
        rows,
        keys=2,
        styles=styles,
        row_blocks=False,
    )


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


def compare_markdown(report: CompareReport, results: Sequence[CheckResult] = ()) -> str:
    """A compact comparison for a pull-request comment or a CI job summary."""
    paired = report.paired
    paths = f"{code_span(report.baseline.path)} → {code_span(report.candidate.path)}"
    lines = [
        f"### gaussnll compare: {paths}",
        "",
        f"**{verdict_text(report)}**: NLL difference (`delta_nll`) {paired.delta_nll:+.6f} "
        f"± {paired.delta_nll_se:.6f}, {paired.confidence:.0%} interval "
        f"[{paired.delta_nll_ci_low:+.6f}, {paired.delta_nll_ci_high:+.6f}]; candidate better "
        f"on {paired.candidate_better:.1%} of {paired.rows:,} rows "
        f"({markdown(pairing_text(report))}).",
        "",
    ]
    grid = side_by_side_grid(report)
    lines += markdown_table(grid.headers, grid.rows, keys=grid.keys, code=1)
    return "\n".join(lines + checks_markdown(results, COMPARE_METRICS))
