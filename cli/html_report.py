"""``--html FILE``: one self-contained HTML page of a report, its checks and its figures.

Everything drawn comes from the report (so any run of the same data draws the same page);
figures are inline SVG (``figures``), the style sheet is inline, nothing is fetched and no
script runs. Every value from the data or the command line is escaped (``literal``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from typing import Any, TypeVar

from gaussnll.cli import figures
from gaussnll.cli.layout import Grid
from gaussnll.cli.render import CheckResults, cell, outputs_grid, recalibration_text
from gaussnll.cli.render_compare import (
    calibration_ci_grid,
    not_compared_text,
    paired_scores_grid,
    paired_scores_shown,
)
from gaussnll.cli.render_ensemble import ENSEMBLE_TITLE, ensemble_rows
from gaussnll.cli.render_intervals import intervals_grid
from gaussnll.cli.render_quantiles import quantile_grids
from gaussnll.cli.render_recalibrate import RecalibrationReport
from gaussnll.cli.render_samples import samples_grid
from gaussnll.core import (
    PAIRED_SCORES,
    SCORE_METRICS,
    CalibrationSummary,
    CompareReport,
    Report,
)

GROUP_CURVES = 6  # small calibration curves for this many worst-calibrated groups
GROUP_ROWS = 100  # groups listed in the page's table
HEADLINE = (
    "nll",
    "crps",
    "var_scale",
    "mace",
    "quantile_mace",
    "ence",
    "miscalibration_area",
    "rmse",
    "sharpness",
)
GROUP_METRICS = ("nll", "crps", "var_scale", "mace", "ence", "rmse")
COMPARED = ("nll", "crps", "var_scale", "mace", "ence", "miscalibration_area", "rmse", "bias")

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430;
  background: #f4f6f9; margin: 0; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 10px; }
.source { color: #556; margin: 0 0 18px; word-break: break-all; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap: 10px; }
.card { background: #fff; border-radius: 8px; padding: 10px 14px; box-shadow: 0 1px 3px #0002; }
.card .value { font-size: 19px; font-weight: 600; } .card .name { color: #556; font-size: 12.5px; }
.verdict { font-size: 20px; font-weight: 600; padding: 10px 14px; border-radius: 8px;
  display: inline-block; margin-bottom: 12px; }
.better { background: #dff3e4; color: #17642e; } .worse { background: #fbe1e1; color: #9b1c1c; }
.inconclusive { background: #eceff3; color: #444; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 14px; }
figure { background: #fff; margin: 0; padding: 8px; border-radius: 8px;
  box-shadow: 0 1px 3px #0002; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { color: #556; font-size: 12.5px; padding: 4px 6px 0; }
table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 3px #0002;
  font-size: 13.5px; }
th, td { padding: 5px 12px; border-bottom: 1px solid #e4e8ee; text-align: right; }
th { background: #eef1f5; } td.key, th.key { text-align: left; }
tr.total td { font-weight: 600; border-top: 2px solid #c9d0da; }
td.worst { background: #fde2d5; color: #8a2a00; font-weight: 600; }
.pass { color: #17642e; font-weight: 600; } .fail { color: #b11c1c; font-weight: 700; }
.note { color: #556; font-size: 13px; } .wide { overflow-x: auto; }
footer { margin-top: 36px; color: #778; font-size: 12px; }
"""


def literal(value: Any) -> str:
    """``value`` as HTML text: control characters shown as escapes, markup escaped."""
    return html.escape(figures.printable(str(value)), quote=True)


def number(value: Any) -> str:
    """A number as a person reads it: integers with separators, floats to 5 digits."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return literal(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.5g}" if math.isfinite(value) else literal(value)


def score_page(
    report: Report, results: CheckResults, settings: dict[str, Any], command: str = "score"
) -> str:
    """The page of a score report: of ``gaussnll score``, or of ``gaussnll merge``
    (``command``)."""
    seconds = f"{report.seconds:.2f} s"
    parts = [
        f"<h1>gaussnll {literal(command)}</h1><p class='source'>{literal(report.path)} · "
        f"{report.rows:,} rows · {literal(report.format)} · {seconds}{_recalibrated(report)}</p>",
        _cards((SCORE_METRICS.metrics[name].spec.label, report.metric(name)) for name in HEADLINE),
        _checks(results),
    ]
    calibration = report.calibration
    if report.quantiles is not None:  # a quantile model: its own section, no Gaussian's
        parts += [_grid(grid) for grid in quantile_grids(report, cell)]
        parts += ["<div class='figures'>", *_quantile_figures(report), "</div>"]
    elif calibration is None:
        parts.append("<p class='note'>Calibration was not computed (--no-calibration).</p>")
    else:
        parts += ["<h2>Calibration</h2><div class='figures'>", *_figures(calibration), "</div>"]
        if calibration.coverage is not None:
            parts.append(_coverage(calibration))
    intervals = intervals_grid(report, cell)
    if intervals is not None:
        parts.append(_grid(intervals))
    if report.ensemble is not None:
        parts.append(_ensemble(report))
    samples = samples_grid(report, number, scalars=False)  # all metrics lists its scalars
    if samples is not None:
        parts += [_grid(samples), "<div class='figures'>", *_sample_figures(report), "</div>"]
    if len(report.outputs) > 1:
        parts.append(_grid(outputs_grid(report)))
    if report.by:
        parts.append(_groups(report))
    parts += [_all_metrics(report), _settings(settings)]
    return _page(f"gaussnll {command}: {report.path}", parts)


def compare_page(report: CompareReport, results: CheckResults, settings: dict[str, Any]) -> str:
    """The page of a ``gaussnll compare`` report."""
    paired = report.paired
    main, label = paired.main, PAIRED_SCORES[paired.headline]
    what = f"mean {label} difference"
    models = (("baseline", report.baseline), ("candidate", report.candidate))
    parts = [
        f"<h1>gaussnll compare</h1><p class='source'>baseline {literal(report.baseline.path)}"
        f"<br>candidate {literal(report.candidate.path)}<br>{paired.rows:,} paired rows "
        f"(pairing by {literal(report.pairing)}) · {report.seconds:.2f} s</p>",
        f"<div class='verdict {literal(report.verdict)}'>verdict: {literal(report.verdict)} · "
        f"{literal(what)} {number(main.mean)}, {paired.confidence:.0%} interval "
        f"[{number(main.ci_low)}, {number(main.ci_high)}]</div>",
        _cards(
            [
                (f"{what} (candidate - baseline)", main.mean),
                ("candidate better on (rows)", paired.candidate_better),
                ("baseline better on (rows)", paired.baseline_better),
                (
                    "unmatched baseline / candidate",
                    f"{report.unmatched_baseline:,} / {report.unmatched_candidate:,}",
                ),
            ]
        ),
        _checks(results),
        "<h2>Paired difference</h2><div style='max-width:640px'>",
        _figure(
            figures.paired_difference(
                main.mean, main.ci_low, main.ci_high, paired.confidence, label
            ),
            f"The {literal(what)} per row and its normal confidence interval; the verdict is "
            "better or worse when the whole interval lies below or above 0.",
        ),
        "</div>",
    ]
    if paired_scores_shown(report):
        parts += [_grid(paired_scores_grid(report)), f"<p class='note'>{_not_compared(report)}</p>"]
    calibration = calibration_ci_grid(report)
    if calibration is not None:
        parts.append(_grid(calibration))
    parts.append(_model_table(models, "Both models"))
    parts += _overlaid(models)
    parts.append(_settings(settings))
    return _page(f"gaussnll compare: {report.label}", parts)


def _not_compared(report: CompareReport) -> str:
    """The scores not compared and why, one per line."""
    return "<br>".join(literal(line) for line in not_compared_text(report).splitlines())


def recalibrate_page(report: RecalibrationReport, settings: dict[str, Any]) -> str:
    """The page of a ``gaussnll recalibrate`` run: the scores and figures before and after."""
    models = (("before", report.before), ("after", report.after))
    parts = [
        f"<h1>gaussnll recalibrate</h1><p class='source'>{literal(report.path)} → "
        f"{literal(report.output)} · {report.before.rows:,} rows</p>",
        f"<p class='note'>{literal(report.title)}; the map fits {literal(report.fits)}.</p>",
        _model_table(models, "Before and after"),
        *_overlaid(models),
        _settings(settings),
    ]
    return _page(report.title, parts)


def _overlaid(models: Sequence[tuple[str, Report]]) -> list[str]:
    """The models' calibration curves, PIT histograms and error against uncertainty, each
    figure overlaying them all (none unless each has calibration)."""
    calibrated = [
        (name, model.calibration) for name, model in models if model.calibration is not None
    ]
    if len(calibrated) < len(models):
        return []
    names = " and ".join(name for name, _ in models)
    return ["<h2>Calibration</h2><div class='figures'>", *_compared(calibrated, names), "</div>"]


def _page(title: str, parts: Iterable[str]) -> str:
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{literal(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"{body}\n<footer>gaussnll {literal(version('gaussnll'))}</footer>\n</main>\n"
        "</body>\n</html>\n"
    )


def _recalibrated(report: Report) -> str:
    """The recalibration map applied, on a line of its own (nothing without one)."""
    applied = recalibration_text(report)
    return "" if applied is None else f"<br>variances recalibrated by {literal(applied)}"


def _cards(entries: Iterable[tuple[str, Any]]) -> str:
    cards = "".join(
        f"<div class='card'><div class='value'>"
        f"{value if isinstance(value, str) else number(value)}</div>"
        f"<div class='name'>{literal(name)}</div></div>"
        for name, value in entries
    )
    return f"<div class='cards'>{cards}</div>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def _table(headers: Sequence[str], rows: Iterable[str], *, keys: int = 1) -> str:
    head = "".join(
        f"<th class='key'>{literal(h)}</th>" if i < keys else f"<th>{literal(h)}</th>"
        for i, h in enumerate(headers)
    )
    return f"<div class='wide'><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def _checks(results: CheckResults) -> str:
    if not results:
        return "<h2>Checks</h2><p class='note'>No checks were given (--check).</p>"
    failures = sum(not result.passed for result in results)
    title = "all passed" if not failures else f"{failures} failed"
    rows = (
        f"<tr><td class='key'>{literal(r.check.text)}</td><td>{number(r.value)}</td>"
        f"<td class='{'pass' if r.passed else 'fail'}'>{'passed' if r.passed else 'FAILED'}"
        "</td></tr>"
        for r in results
    )
    return f"<h2>Checks: {title}</h2>" + _table(("check", "value", "result"), rows)


def _compared(calibrated: list[tuple[str, CalibrationSummary]], names: str) -> list[str]:
    """The models' calibration figures overlaid, of the metric families that were computed
    (``names``: the models', for the captions)."""
    curves = [(name, c.calibration_curve) for name, c in calibrated]
    one_sided = [(f"{name}, one-sided", c.quantile_calibration_curve) for name, c in calibrated]
    pits = [(name, c.pit_counts) for name, c in calibrated]
    bins = [(name, c.uncertainty_bins) for name, c in calibrated]
    shown = []
    if all(curve is not None for _, curve in curves):
        shown.append(
            _figure(
                figures.calibration_curves(
                    _present(curves), shade=False, one_sided=_present(one_sided)
                ),
                f"Calibration curves: {literal(names)}. Dotted: one-sided (the frequency at or "
                "below the τ-quantile), which shows a bias the central intervals cannot see.",
            )
        )
    if all(pit is not None for _, pit in pits):
        shown.append(
            _figure(
                figures.pit_histograms(_present(pits)),
                f"PIT histograms: {literal(names)}; grey band: ±2 binomial standard deviations.",
            )
        )
    if all(each is not None for _, each in bins):
        shown.append(
            _figure(
                figures.error_vs_uncertainty(_present(bins)),
                f"RMSE against RMV per bin of predicted σ: {literal(names)}.",
            )
        )
    return shown


Value = TypeVar("Value")


def _present(series: Sequence[tuple[str, Value | None]]) -> list[tuple[str, Value]]:
    """The named values that are not None."""
    return [(name, value) for name, value in series if value is not None]


def _figures(calibration: CalibrationSummary) -> list[str]:
    """The calibration figures of the metric families that were computed."""
    shown = []
    one_sided = _present([("one-sided", calibration.quantile_calibration_curve)])
    if calibration.calibration_curve is not None:
        area = calibration.miscalibration_area
        caption = (
            f"Observed against expected proportion inside the central intervals at 100 "
            f"levels; shaded: the miscalibration area ({number(area)})."
        )
        if one_sided:
            caption += (
                f" Dotted: the observed frequency of the target at or below the τ-quantile "
                f"(one-sided; area {number(calibration.quantile_miscalibration_area)}), which "
                "shows a bias the central intervals cannot see."
            )
        shown.append(
            _figure(
                figures.calibration_curves(
                    [("central", calibration.calibration_curve)], shade=True, one_sided=one_sided
                ),
                caption,
            )
        )
    elif one_sided:
        shown.append(
            _figure(
                figures.calibration_curves([], shade=False, one_sided=one_sided),
                "Observed frequency of the target at or below the τ-quantile at 100 levels "
                f"(one-sided); its miscalibration area is "
                f"{number(calibration.quantile_miscalibration_area)}.",
            )
        )
    if calibration.pit_counts is not None:
        shown.append(
            _figure(
                figures.pit_histograms([("model", calibration.pit_counts)]),
                "PIT histogram: flat is calibrated, a U shape over-confident, a hump "
                "under-confident; grey band: ±2 binomial standard deviations around n/bins.",
            )
        )
    if calibration.uncertainty_bins is not None and calibration.sigma_histogram is not None:
        shown += [
            _figure(
                figures.error_vs_uncertainty([("model", calibration.uncertainty_bins)]),
                f"RMSE against RMV in bins of predicted σ of nearly equal count; "
                f"ENCE = {number(calibration.ence)} (0 is calibrated).",
            ),
            _figure(
                figures.sigma_distribution(
                    calibration.sigma_histogram, calibration.sharpness or math.nan
                ),
                "Distribution of the predicted σ (as given, before the eps floor), in 8 "
                "log-spaced bins per decade.",
            ),
        ]
    return shown


def _quantile_figures(report: Report) -> list[str]:
    """A quantile model's calibration: at each level τ the share of targets at or below its
    quantile, and each symmetric pair's coverage against its central level."""
    section = report.quantiles
    if section is None:
        return []
    shown = [
        _level_figure(
            ("y ≤ q_τ", section.levels, section.quantile_coverage),
            ("Quantile calibration", "level τ"),
            "Share of targets at or below each predicted τ-quantile; on the diagonal when "
            f"calibrated (quantile MACE {number(section.quantile_mace)}).",
        )
    ]
    if section.interval_levels:
        shown.append(
            _level_figure(
                ("l ≤ y ≤ u", section.interval_levels, section.interval_coverage),
                ("Coverage per interval", "central level p of the pair (τ, 1 - τ)"),
                "Share of targets inside each symmetric pair's interval against its level.",
            )
        )
    return shown


def _level_figure(
    series: tuple[str, list[float], list[float]], titles: tuple[str, str], caption: str
) -> str:
    """One series' observed share against its levels (``titles``: the figure's and the x
    axis'), with ``caption``."""
    title, xlabel = titles
    return _figure(figures.level_calibration([series], title=title, xlabel=xlabel), caption)


def _sample_figures(report: Report) -> list[str]:
    """The draws' rank histogram and the coverage of their empirical central intervals."""
    section = report.samples
    if section is None:
        return []
    shown = []
    if section.sample_rank_counts is not None:
        shown.append(
            _figure(
                figures.rank_histogram(section.sample_rank_counts),
                "Rank of the target among the draws (ties split evenly): flat is calibrated, "
                "a U shape over-confident, a hump under-confident; grey band: ±2 binomial "
                "standard deviations.",
            )
        )
    shown.append(
        _level_figure(
            ("draws", section.levels, section.sample_coverage),
            ("Coverage of the draws' intervals", "central level p"),
            "Share of elements between the draws' (1 ∓ p)/2 empirical quantiles.",
        )
    )
    return shown


def _grid(grid: Grid) -> str:
    """A grid of the text renderers (its cells data, escaped) under its title."""
    rows = (
        "<tr>"
        + "".join(
            f"<td class='key'>{literal(text)}</td>"
            if i < grid.keys
            else f"<td>{literal(text)}</td>"
            for i, text in enumerate(row)
        )
        + "</tr>"
        for row in grid.rows
    )
    title = grid.title[:1].upper() + grid.title[1:]
    return f"<h2>{literal(title)}</h2>" + _table(grid.headers, rows, keys=grid.keys)


def _ensemble(report: Report) -> str:
    """The ensemble's mixture section, as the table and Markdown show it."""
    return _grid(Grid(ENSEMBLE_TITLE, ("metric", "value"), ensemble_rows(report, number)))


def _coverage(calibration: CalibrationSummary) -> str:
    rows = (
        f"<tr><td class='key'>{level:g}</td><td>{number(coverage)}</td><td>{number(inside)}</td>"
        f"<td>{number(width)}</td><td>{number(score)}</td></tr>"
        for level, coverage, inside, width, score in zip(
            calibration.levels,
            calibration.coverage or [],
            calibration.inside_counts or [],
            calibration.interval_width or [],
            calibration.interval_score or [],
            strict=True,
        )
    )
    headers = ("level", "observed coverage", "elements inside", "mean width", "interval score")
    return "<h2>Coverage per level</h2>" + _table(headers, rows)


def _groups(report: Report) -> str:
    """The groups (as the report lists them), the worst value of each metric marked, and small
    calibration curves of the worst-calibrated groups."""
    groups = report.groups[:GROUP_ROWS]
    level = None
    if report.calibration is not None:
        level = min(report.calibration.levels, key=lambda p: abs(p - 0.9))
    metrics = [*GROUP_METRICS, *([f"coverage@{level:g}"] if level is not None else [])]
    values = [[group.report.metric(m) for m in metrics] for group in groups]
    worst = [
        _worst_index([row[k] for row in values], metric, level) for k, metric in enumerate(metrics)
    ]
    rows = []
    for index, (group, numbers) in enumerate(zip(groups, values, strict=True)):
        keys = "".join(f"<td class='key'>{literal(cell)}</td>" for cell in group.key_cells())
        cells = "".join(
            f"<td class='worst'>{number(v)}</td>" if worst[k] == index else f"<td>{number(v)}</td>"
            for k, v in enumerate(numbers)
        )
        rows.append(f"<tr>{keys}<td>{group.report.rows:,}</td>{cells}</tr>")
    total = "".join(f"<td>{number(report.metric(m))}</td>" for m in metrics)
    blanks = "<td class='key'></td>" * (len(report.by) - 1)
    rows.append(
        f"<tr class='total'><td class='key'>(all)</td>{blanks}<td>{report.rows:,}</td>{total}</tr>"
    )
    shown = (
        f"{len(groups):,} of {report.groups_total:,}"
        if len(groups) < report.groups_total
        else f"{len(groups):,}"
    )
    parts = [
        f"<h2>By {literal(', '.join(report.by))}: {shown} groups</h2>",
        "<p class='note'>Marked: the worst group in each column (largest NLL, CRPS, MACE, ENCE "
        "and RMSE; variance scale farthest from 1; coverage farthest from its level).</p>",
        _table([*report.by, "rows", *metrics], rows, keys=len(report.by)),
    ]
    curves = [
        (group.label(), calibration.miscalibration_area or math.nan, calibration.calibration_curve)
        for group in groups
        if (calibration := group.report.calibration) is not None
        and calibration.calibration_curve is not None
    ]
    curves.sort(key=lambda entry: -entry[1] if math.isfinite(entry[1]) else math.inf)
    if curves:
        shown_curves = curves[:GROUP_CURVES]
        parts.append(
            f"<div style='max-width:{230 * min(len(shown_curves), 3)}px'>"
            + _figure(
                figures.group_curves([(label, curve) for label, _, curve in shown_curves]),
                f"Calibration curves of the {len(shown_curves)} groups listed with the largest "
                "miscalibration area.",
            )
            + "</div>"
        )
    return "".join(parts)


def _worst_index(values: Sequence[float | None], metric: str, level: float | None) -> int | None:
    """Which of ``values`` is worst for ``metric`` (None when none is a number)."""

    def badness(value: float) -> float:
        if metric == "var_scale":
            return abs(math.log(value)) if value > 0 else math.inf
        if metric.startswith("coverage@") and level is not None:
            return abs(value - level)
        return value

    scored = [(badness(v), i) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    return max(scored)[1] if len(scored) > 1 else None


def _model_table(models: Sequence[tuple[str, Report]], title: str) -> str:
    names = [name for name, _ in models]
    rows = (
        f"<tr><td class='key'>{literal(SCORE_METRICS.metrics[m].spec.label)}</td>"
        + "".join(f"<td>{number(report.metric(m))}</td>" for _, report in models)
        + "</tr>"
        for m in COMPARED
    )
    return f"<h2>{literal(title)}</h2>" + _table(["metric", *names], rows)


def _all_metrics(report: Report) -> str:
    numbers = SCORE_METRICS.numbers(report)
    rows = (
        f"<tr><td class='key'>{literal(name)}</td><td class='key'>"
        f"{literal(_label(name))}</td><td>{number(value)}</td></tr>"
        for name, value in numbers.items()
    )
    return "<h2>Every metric</h2>" + _table(("name", "meaning", "value"), rows, keys=2)


def _label(name: str) -> str:
    metric = SCORE_METRICS.metrics.get(name.partition("@")[0])
    return "" if metric is None else metric.spec.label


def _settings(settings: dict[str, Any]) -> str:
    rows = (
        f"<tr><td class='key'>{literal(name)}</td><td class='key'>{literal(_setting_text(value))}"
        "</td></tr>"
        for name, value in settings.items()
    )
    return "<h2>Settings</h2>" + _table(("setting", "value"), rows, keys=2)


def _setting_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "(none)"
    return "(unset)" if value is None else str(value)
