"""What each command does once its options are parsed: resolve them against the config file,
run the core, render, apply the checks, and choose the exit code."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from gaussnll.cli.config import Config, load_config
from gaussnll.cli.exits import EXIT_CHECK_FAILED
from gaussnll.cli.junit import junit_xml
from gaussnll.cli.progress import progress_callback
from gaussnll.cli.render import print_report, report_json, report_markdown
from gaussnll.cli.render_compare import compare_json, compare_markdown, print_compare
from gaussnll.cli.settings import (
    BY_NAME,
    COMPARE,
    SCORE,
    SPREAD_SETTINGS,
    settings_of,
)
from gaussnll.core import (
    COMPARE_METRICS,
    SCORE_METRICS,
    Catalog,
    Check,
    CheckResult,
    ColumnSpec,
    FileFormat,
    RowWriter,
    ScoreOptions,
    Spread,
    UsageError,
    atomic_row_writer,
    compare,
    evaluate,
    evaluate_per_group,
    metric_levels,
    parse_checks,
    resolve_source,
    row_file_format,
    score,
    write_text_atomically,
)

SHOWN_GROUPS = 100  # groups in a table or Markdown report without --top (JSON has them all)
FORMATS = ("table", "json", "markdown")


@dataclass(frozen=True)
class Outputs:
    """Where and how a command reports (never read from the config file)."""

    format: str
    per_row: str | None
    junit_xml: str | None
    quiet: bool

    @classmethod
    def of(cls, given: dict[str, Any]) -> Outputs:
        output_format = "json" if given.get("json") else given.get("format") or "table"
        if output_format not in FORMATS:
            raise UsageError(f"--format must be table, json or markdown. Got {output_format!r}.")
        return cls(
            output_format, given.get("per_row"), given.get("junit_xml"), bool(given.get("quiet"))
        )


def resolve_settings(given: dict[str, Any], config: Config, command: str) -> dict[str, Any]:
    """Built-in defaults, overridden by the config file, overridden by the command line; only
    the settings ``command`` takes that a config file may hold.

    Giving the spread one way on the command line replaces the file's choice entirely.
    """
    settings = {}
    for setting in settings_of(command, config=True):
        if setting.name in given:
            settings[setting.name] = setting.value(given[setting.name])
        elif setting.name in config.values:
            settings[setting.name] = config.values[setting.name]
        else:
            settings[setting.name] = setting.default
    if any(key in given for key in SPREAD_SETTINGS):
        settings.update({key: given.get(key) for key in SPREAD_SETTINGS})
    return settings


def run_score(path: str, given: dict[str, Any]) -> int:
    """Score ``path``, render the report and the checks; return the exit code (0 or 1)."""
    config = load_config(given.get("config_file"))
    settings = resolve_settings(given, config, SCORE)
    outputs = Outputs.of(given)
    output_format = outputs.format
    checks = _parsed_checks(settings["checks"], settings, SCORE_METRICS)
    _check_grouping(settings, checks)
    options = _score_options(settings, checks)
    rows_on_stdout = options.reduction == "none" and outputs.per_row is None
    format_given = given.get("format") is not None or bool(given.get("json"))
    if rows_on_stdout and (format_given or checks or outputs.junit_xml):
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
    _warn_of_many_groups(report.groups_total, settings["by"])
    if settings["per_group"]:
        results = evaluate_per_group(checks, report)
    else:
        results = evaluate(checks, report)
    top = settings["top"]
    if top is None and output_format != "json":
        top = SHOWN_GROUPS  # a table or a PR comment of 10^5 rows helps nobody
    report = report.with_groups(settings["sort_by"], top)
    _render(SCORE_RENDERERS, output_format, report, results, config, settings)
    return _finish(results, outputs, f"gaussnll score {report.path}", report.seconds)


def run_compare(baseline: str, candidate: str, given: dict[str, Any]) -> int:
    """Compare two prediction files, render both reports, their difference and the checks."""
    config = load_config(given.get("config_file"))
    settings = resolve_settings(given, config, COMPARE)
    outputs = Outputs.of(given)
    output_format = outputs.format
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
    results = evaluate(checks, report, COMPARE_METRICS)
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


MANY_GROUPS = 10_000


def _warn_of_many_groups(groups: int, by: list[str]) -> None:
    """One line on stderr when ``--by`` made more groups than a breakdown usually wants."""
    if groups > MANY_GROUPS:
        print(
            f"gaussnll: warning: --by {' --by '.join(by)} made {groups:,} groups (more than "
            f"{MANY_GROUPS:,}); for a numeric column, break it down by intervals instead: "
            "--by COLUMN:q10 (quantile bins) or --by COLUMN:EDGE,EDGE,...",
            file=sys.stderr,
        )


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
        known = SCORE_METRICS.knows(metric)
        if direction not in ("", "asc", "desc") or not known:
            raise UsageError(
                f"--sort-by must be METRIC or METRIC:asc with a metric of "
                f"{', '.join(SCORE_METRICS.names())}. Got {settings['sort_by']!r} instead."
            )


def _parsed_checks(texts: list[str], settings: dict[str, Any], catalog: Catalog) -> list[Check]:
    checks = parse_checks(texts, catalog)
    if any(catalog.uses_calibration(c.metric) for c in checks) and not settings["calibration"]:
        raise UsageError("a --check uses a calibration metric: drop --no-calibration")
    if any(catalog.uses_ensemble(c.metric) for c in checks) and not settings["ensemble"]:
        raise UsageError("a --check uses an ensemble metric: add --ensemble")
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
    spreads = {
        kind: settings[f"{kind.value}_col"]
        for kind in Spread
        if settings[f"{kind.value}_col"] is not None
    }
    if len(spreads) > 1:
        flags = " and ".join(f"--{kind.value.replace('_', '-')}-col" for kind in spreads)
        raise UsageError(f"{flags} contradict each other: give the spread one way")
    kind, spread = next(iter(spreads.items()), (Spread.VAR, "var"))
    by, intervals = parse_by(settings.get("by", ()))
    columns = ColumnSpec(
        mean=_names(settings["mean_col"], "--mean-col"),
        target=_names(settings["target_col"], "--target-col"),
        spread=_names(spread, f"--{kind.value.replace('_', '-')}-col"),
        spread_kind=kind,
        id=settings["id_col"],
        by=tuple(by),
    )
    core = {
        BY_NAME[name].core: value for name, value in settings.items() if BY_NAME[name].core in _CORE
    }
    core["levels"] = tuple(
        dict.fromkeys([*settings["levels"], *metric_levels(c.metric for c in checks), *sort_levels])
    )
    return ScoreOptions(columns=columns, intervals=intervals, **core)


_CORE = {field.name for field in dataclasses.fields(ScoreOptions)} - {"columns", "levels"}


def parse_by(entries: Iterable[str]) -> tuple[list[str], dict[str, tuple[float, ...] | int]]:
    """``--by`` values as key columns and their intervals: ``region,x`` is a composite key,
    ``x:0,0.5,1`` breaks ``x`` down at those edges, ``x:q10`` into 10 quantile bins."""
    names: list[str] = []
    intervals: dict[str, tuple[float, ...] | int] = {}
    for entry in entries:
        current: str | None = None
        for token in _names(entry, "--by"):
            if current is not None and _is_number(token) and isinstance(intervals[current], tuple):
                intervals[current] = (*intervals[current], float(token))  # type: ignore[misc]
                continue
            name, colon, spec = token.partition(":")
            names.append(name.strip())
            current = None
            if not colon:
                continue
            current = name.strip()
            spec = spec.strip()
            if spec[:1] in ("q", "Q") and spec[1:].isdigit():
                intervals[current] = int(spec[1:])
            elif _is_number(spec):
                intervals[current] = (float(spec),)
            else:
                raise UsageError(
                    f"--by {entry!r}: after {name}: give edges (x:0,0.5,1) or quantile bins "
                    f"(x:q10). Got {spec!r} instead."
                )
    return names, intervals


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _names(value: str, flag: str) -> tuple[str, ...]:
    """``"a, b"`` → ``("a", "b")``; an empty name is a usage error."""
    names = tuple(name.strip() for name in value.split(","))
    if not all(names):
        raise UsageError(f"{flag} must be column names separated by commas. Got {value!r}.")
    return names
