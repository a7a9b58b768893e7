"""What each command does once its options are parsed: resolve them against the config file,
run the core, render, apply the checks, and choose the exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from gaussnll.cli.junit import junit_xml
from gaussnll.cli.progress import progress_callback
from gaussnll.cli.render import print_report, report_json, report_markdown
from gaussnll.cli.render_compare import compare_json, compare_markdown, print_compare
from gaussnll.core.checks import (
    SCORE_METRICS,
    Catalog,
    Check,
    CheckResult,
    check_levels,
    evaluate,
    evaluate_per_group,
    metric_levels,
    needs_calibration,
    parse_checks,
    valid_level,
)
from gaussnll.core.columns import ColumnSpec
from gaussnll.core.comparison import COMPARE_METRICS, DEFAULT_CONFIDENCE, compare
from gaussnll.core.config import Config, load_config
from gaussnll.core.defaults import DEFAULT_CHUNK_ROWS, DEFAULT_EPS, DEFAULT_LEVELS, DEFAULT_PIT_BINS
from gaussnll.core.engine import score
from gaussnll.core.errors import UsageError
from gaussnll.core.options import ScoreOptions
from gaussnll.core.sources import FileFormat, resolve_source
from gaussnll.core.writers import (
    RowWriter,
    atomic_row_writer,
    row_file_format,
    write_text_atomically,
)

EXIT_CHECK_FAILED = 1
SHOWN_GROUPS = 100  # groups in a table or Markdown report without --top (JSON has them all)
FORMATS = ("table", "json", "markdown")
BUILT_IN: dict[str, Any] = {
    "mean_col": "mean",
    "target_col": "target",
    "var_col": None,
    "std_col": None,
    "log_var_col": None,
    "id_col": None,
    "full": False,
    "eps": DEFAULT_EPS,
    "reduction": "mean",
    "chunk_size": DEFAULT_CHUNK_ROWS,
    "device": "auto",
    "dtype": "float64",
    "nan_policy": "error",
    "delimiter": ",",
    "calibration": True,
    "levels": list(DEFAULT_LEVELS),
    "pit_bins": DEFAULT_PIT_BINS,
    "workers": 0,
    "checks": [],
    "by": [],
    "top": None,
    "sort_by": None,
    "per_group": False,
    "compare_checks": [],
    "max_regression": None,
    "confidence": DEFAULT_CONFIDENCE,
}
_SPREAD_KEYS = ("var_col", "std_col", "log_var_col")
# Settings of one command only (the rest are shared); each command shows only its own.
_COMMAND_ONLY = {
    "score": ("reduction", "workers", "checks", "by", "top", "sort_by", "per_group"),
    "compare": ("compare_checks", "max_regression", "confidence"),
}


@dataclass(frozen=True)
class Outputs:
    """Where and how ``gaussnll score`` reports (never read from the config file)."""

    format: str | None = None
    per_row: str | None = None
    junit_xml: str | None = None
    config: str | None = None
    quiet: bool = False


def resolve_settings(
    given: dict[str, Any], config: Config, command: str = "score"
) -> dict[str, Any]:
    """Built-in defaults, overridden by the config file, overridden by the command line; only
    the settings ``command`` uses.

    Giving the spread one way on the command line replaces the file's choice entirely.
    """
    others = {key for name, keys in _COMMAND_ONLY.items() if name != command for key in keys}
    settings = {**BUILT_IN, **config.values, **given}
    if any(key in given for key in _SPREAD_KEYS):
        settings.update({key: given.get(key) for key in _SPREAD_KEYS})
    settings["levels"] = parse_levels(settings["levels"])
    return {key: value for key, value in settings.items() if key not in others}


def run_score(path: str, given: dict[str, Any], outputs: Outputs) -> int:
    """Score ``path``, render the report and the checks; return the exit code (0 or 1)."""
    config = load_config(outputs.config)
    settings = resolve_settings(given, config)
    output_format = _output_format(outputs)
    checks = _parsed_checks(settings["checks"], settings, SCORE_METRICS)
    _check_grouping(settings, checks)
    options = _score_options(settings, checks)
    rows_on_stdout = options.reduction == "none" and outputs.per_row is None
    if rows_on_stdout and (outputs.format is not None or checks or outputs.junit_xml):
        raise UsageError(
            "--reduction none streams per-row CSV to stdout; add --per-row FILE to also get "
            "a report, checks or JUnit"
        )
    if options.columns.id and not (outputs.per_row or rows_on_stdout):
        raise UsageError("--id-col only applies to per-row output: add --per-row FILE")
    source = resolve_source(path)
    if outputs.per_row is not None:
        rows_context = atomic_row_writer(
            outputs.per_row, row_file_format(outputs.per_row, source.files)
        )
    elif rows_on_stdout:
        rows_context = nullcontext(RowWriter(sys.stdout.buffer, FileFormat.CSV))
    else:
        rows_context = nullcontext(None)
    with rows_context as rows_to, progress_callback("scoring", not outputs.quiet) as on_progress:
        report = score(path, options, rows_to=rows_to, on_progress=on_progress)
        if rows_on_stdout:
            rows_to.close()
    if rows_on_stdout:
        return 0
    if settings["per_group"]:
        results = evaluate_per_group(checks, report)
    else:
        results = evaluate(checks, report.metric_view())
    top = settings["top"]
    if top is None and output_format != "json":
        top = SHOWN_GROUPS  # a table or a PR comment of 10^5 rows helps nobody
    report = report.with_groups(settings["sort_by"], top)
    _render(SCORE_RENDERERS, output_format, report, results, config, settings)
    return _finish(results, outputs, f"gaussnll score {report.path}", report.seconds)


def run_compare(baseline: str, candidate: str, given: dict[str, Any], outputs: Outputs) -> int:
    """Compare two prediction files, render both reports, their difference and the checks."""
    if "checks" in given:
        given = {**given, "compare_checks": given.pop("checks")}
    config = load_config(outputs.config)
    settings = resolve_settings(given, config, "compare")
    output_format = _output_format(outputs)
    texts = list(settings["compare_checks"])
    if settings["max_regression"] is not None:
        texts.append(f"delta_nll_ci_low <= {float(settings['max_regression']):g}")
    checks = _parsed_checks(texts, settings, COMPARE_METRICS)
    options = _score_options(settings, checks)
    sources = [resolve_source(path) for path in (baseline, candidate)]
    rows_context = nullcontext(None)
    if outputs.per_row is not None:
        files = [f for source in sources for f in source.files]
        rows_context = atomic_row_writer(outputs.per_row, row_file_format(outputs.per_row, files))
    with (
        rows_context as rows_to,
        progress_callback("comparing", not outputs.quiet) as on_progress,
    ):
        report = compare(
            baseline,
            candidate,
            options,
            confidence=float(settings["confidence"]),
            rows_to=rows_to,
            on_progress=on_progress,
        )
    results = evaluate(checks, report.to_dict(), COMPARE_METRICS)
    _render(COMPARE_RENDERERS, output_format, report, results, config, settings)
    return _finish(results, outputs, f"gaussnll compare {report.label}", report.seconds)


@dataclass(frozen=True)
class Renderers:
    """How one command's report is shown in each ``--format``."""

    json: Callable[..., Iterable[str]]
    markdown: Callable[[Any, list[CheckResult]], str]
    table: Callable[[Any, list[CheckResult]], None]


SCORE_RENDERERS = Renderers(report_json, report_markdown, print_report)
COMPARE_RENDERERS = Renderers(compare_json, compare_markdown, print_compare)


def _render(
    renderers: Renderers,
    output_format: str,
    report: Any,
    results: list[CheckResult],
    config: Config,
    settings: dict[str, Any],
) -> None:
    """Print ``report`` and the check ``results`` on stdout in ``output_format``."""
    if output_format == "json":
        pieces = renderers.json(report, results, config_file=config.path, settings=settings)
        sys.stdout.writelines(pieces)
        sys.stdout.write("\n")
    elif output_format == "markdown":
        print(renderers.markdown(report, results))
    else:
        renderers.table(report, results)


def _check_grouping(settings: dict[str, Any], checks: list[Check]) -> None:
    """``--top``, ``--sort-by`` and ``--per-group`` need ``--by``; the sort metric must exist."""
    if not settings["by"]:
        for key, flag in (("top", "--top"), ("sort_by", "--sort-by"), ("per_group", "--per-group")):
            if settings[key]:
                raise UsageError(f"{flag} applies to the groups of --by COLUMN: add --by")
        return
    if settings["per_group"] and not checks:
        raise UsageError("--per-group applies the checks to each group: add --check")
    if settings["top"] is not None and settings["top"] < 1:
        raise UsageError(f"--top must be at least 1. Got {settings['top']} instead.")
    if settings["sort_by"] is not None:
        metric, _, direction = settings["sort_by"].partition(":")
        known = SCORE_METRICS.knows(metric) and valid_level(metric)
        if direction not in ("", "asc", "desc") or not known:
            raise UsageError(
                f"--sort-by must be METRIC or METRIC:asc with a metric of "
                f"{', '.join(SCORE_METRICS.names())}. Got {settings['sort_by']!r} instead."
            )


def _output_format(outputs: Outputs) -> str:
    output_format = outputs.format or "table"
    if output_format not in FORMATS:
        raise UsageError(f"--format must be table, json or markdown. Got {output_format!r}.")
    return output_format


def _parsed_checks(texts: list[str], settings: dict[str, Any], catalog: Catalog) -> list[Check]:
    checks = parse_checks(texts, catalog)
    if needs_calibration(checks, catalog) and not settings["calibration"]:
        raise UsageError("a --check uses a calibration metric: drop --no-calibration")
    return checks


def _finish(results: list[CheckResult], outputs: Outputs, suite: str, seconds: float) -> int:
    """Write the JUnit file if asked; the exit code: 1 when a check failed, else 0."""
    if outputs.junit_xml is not None:
        write_text_atomically(outputs.junit_xml, junit_xml(results, suite, seconds))
    return EXIT_CHECK_FAILED if any(not r.passed for r in results) else 0


def _score_options(settings: dict[str, Any], checks: list[Check]) -> ScoreOptions:
    """The core's options from resolved settings; levels named in checks or ``--sort-by`` are
    computed too."""
    sort_levels = metric_levels([(settings.get("sort_by") or "").partition(":")[0]])
    return ScoreOptions(
        columns=ColumnSpec.from_options(
            mean=settings["mean_col"],
            target=settings["target_col"],
            var=settings["var_col"],
            std=settings["std_col"],
            log_var=settings["log_var_col"],
            id=settings["id_col"],
            by=tuple(name.strip() for entry in settings.get("by", ()) for name in entry.split(",")),
        ),
        full=settings["full"],
        eps=float(settings["eps"]),
        reduction=settings.get("reduction", "mean"),
        chunk_size=settings["chunk_size"],
        device=settings["device"],
        dtype=settings["dtype"],
        nan_policy=settings["nan_policy"],
        delimiter=settings["delimiter"],
        calibration=settings["calibration"],
        levels=tuple(dict.fromkeys([*settings["levels"], *check_levels(checks), *sort_levels])),
        pit_bins=settings["pit_bins"],
        workers=settings.get("workers", 1),
    )


def parse_levels(value: str | list[float] | tuple[float, ...]) -> tuple[float, ...]:
    """``"0.5,0.9"`` (command line) or ``[0.5, 0.9]`` (config) → ``(0.5, 0.9)``."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        raise UsageError(f"--levels must be numbers separated by commas. Got {value!r}.") from None
