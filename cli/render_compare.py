"""Render a CompareReport: both models side by side, the paired differences of their scores
(the headline's, the NLL's unless the models' forms share no NLL, first), the checks."""

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
from gaussnll.core import COMPARE_METRICS, PAIRED_SCORES, CompareReport, Report


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
    side_by_side = side_by_side_grid(report)
    parts = blocks(console, side_by_side) if side_by_side.rows else []
    parts.append(Text(f"verdict: {verdict_text(report)}{on_score(report)}", style="bold"))
    parts += blocks(console, paired_grid(report, config_file))
    if paired_scores_shown(report):
        parts += blocks(console, paired_scores_grid(report))
        parts.append(Text(not_compared_text(report)))
    calibration = calibration_ci_grid(report)
    if calibration is not None:
        parts += blocks(console, calibration)
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
    score = report.paired.headline
    names = [f"delta_{score}{part}" for part in ("", "_se", "_ci_low", "_ci_high")]
    names += ["candidate_better", "baseline_better", "rows"]
    if report.paired.weight_sum is not None:
        names.append("weight_sum")
    if report.pairing == "id":
        names += ["unmatched_baseline", "unmatched_candidate"]
    if report.skipped_rows:
        names.append("skipped_rows")
    rows = []
    what = PAIRED_SCORES[score]
    for name in names:
        metric = COMPARE_METRICS.metrics[name]
        value = COMPARE_METRICS.value(report, name)
        text = metric.spec.label.replace("NLL", what) if name.endswith("_better") else None
        rows.append((text or metric.spec.label, name, cell(value, metric.integer)))
    rows.append(("paired by", "pairing", pairing_text(report)))
    if config_file is not None:
        rows.append((*CONFIG, config_file))
    title = (
        f"paired {what} difference (candidate - baseline; < 0: candidate better), "
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


def paired_scores_shown(report: CompareReport) -> bool:
    """Whether the comparison has more to show than the NLL difference: other scores, or
    scores it could not compare."""
    return report.paired.compared != ("nll",) or bool(report.paired.not_compared)


def paired_scores_grid(report: CompareReport) -> Grid:
    """Every compared score: each model's mean and the paired difference with its interval."""
    paired = report.paired
    rows = []
    for score in paired.compared:
        delta, means = paired.delta(score), paired.means[score]
        if delta is not None:
            values = (means["baseline"], means["candidate"])
            signed = (delta.mean, delta.ci_low, delta.ci_high)
            rows.append((score, *map(cell, values), *(f"{v:+.6f}" for v in signed)))
    title = (
        f"paired scores: delta_<score> = candidate - baseline, {paired.confidence:.0%} "
        "interval from low to high"
    )
    return Grid(title, ("score", "baseline", "candidate", "delta", "low", "high"), rows)


def calibration_ci_grid(report: CompareReport) -> Grid | None:
    """The calibration differences with their bootstrap intervals (None without ``--ci``, or
    when no calibration family was computed)."""
    deltas, ci = report.calibration_ci, report.baseline.ci
    if deltas is None or ci is None:
        return None
    rows = []
    levelled = [f"delta_coverage@{level:g}" for level in deltas.levels]
    for name in ("delta_mace", "delta_quantile_mace", *levelled):
        metric, at, level = name.partition("@")
        ends = ("", "_ci_low", "_ci_high")
        values = [report.metric(f"{metric}{end}{at}{level}") for end in ends]
        if None not in values:
            rows.append((name, *(f"{v:+.6f}" for v in values if v is not None)))
    if not rows:
        return None
    title = (
        f"calibration differences (candidate - baseline), {ci.level * 100:g}% bootstrap "
        f"intervals ({ci.replicates:,} replicates)"
    )
    return Grid(title, ("name", "delta", "NAME_ci_low", "NAME_ci_high"), rows)


def not_compared_text(report: CompareReport) -> str:
    """Which scores were not compared, and why: a line per reason."""
    reasons: dict[str, list[str]] = {}
    for score, why in report.paired.not_compared.items():
        reasons.setdefault(why, []).append(score)
    return "\n".join(f"not compared: {', '.join(s)}: {why}" for why, s in reasons.items())


def on_score(report: CompareReport) -> str:
    """`` (on wis)`` where the verdict reads another score than the NLL."""
    score = report.paired.headline
    return "" if score == "nll" else f" (on {score})"


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
    score, main = paired.headline, paired.main
    paths = f"{code_span(report.baseline.path)} → {code_span(report.candidate.path)}"
    lines = [
        f"### gaussnll compare: {paths}",
        "",
        *config_markdown(config_file),
        f"**{verdict_text(report)}**: {PAIRED_SCORES[score]} difference (`delta_{score}`) "
        f"{main.mean:+.6f} ± {main.se:.6f}, {paired.confidence:.0%} interval "
        f"[{main.ci_low:+.6f}, {main.ci_high:+.6f}]; candidate better "
        f"on {paired.candidate_better:.1%} of {paired.rows:,} rows "
        f"(paired by {markdown(pairing_text(report))}).",
        "",
    ]
    grid = side_by_side_grid(report)
    if grid.rows:
        lines += [*markdown_table(grid.headers, grid.rows, keys=grid.keys, code=1), ""]
    grid = paired_grid(report)
    lines += [f"**{markdown(grid.title)}**", ""]
    lines += markdown_table(grid.headers, grid.rows, keys=grid.keys, code=1)
    if paired_scores_shown(report):
        lines += titled_markdown(paired_scores_grid(report))
        lines += ["", *(f"- {markdown(line)}" for line in not_compared_text(report).splitlines())]
    calibration = calibration_ci_grid(report)
    if calibration is not None:
        lines += titled_markdown(calibration)
    if report.by:
        lines += titled_markdown(paired_groups_grid(report))
    return "\n".join(lines + checks_markdown(results, COMPARE_METRICS))


SHOWN_GROUPS = 20  # the worst groups a table or Markdown comparison lists (JSON has them all)
_PAIRED_COLUMNS = ("", "_ci_low", "_ci_high")


def paired_groups_grid(report: CompareReport) -> Grid:
    """The worst groups' paired differences of the headline score (largest first), with
    their intervals."""
    shown = report.groups[:SHOWN_GROUPS]
    score = report.paired.headline
    columns = [*(f"delta_{score}{part}" for part in _PAIRED_COLUMNS), "candidate_better"]
    rows = [
        [
            *group.key_cells(),
            count(group.report.paired.rows),
            *(cell(group.report.metric(name)) for name in columns),
            group.report.verdict,
        ]
        for group in shown
    ]
    scope = (
        f"{report.groups_total:,} groups"
        if len(shown) == report.groups_total
        else f"the {len(shown)} worst of {report.groups_total:,} groups (--format json for all)"
    )
    title = f"by {', '.join(report.by)}: {scope}, the largest delta_{score} first"
    headers = [*report.by, "rows", *columns, "verdict"]
    return Grid(title, headers, rows, keys=len(report.by))
