"""What each command does once its options are parsed: resolve them against the config file,
run the core, render, apply the checks, and choose the exit code."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from gaussnll.cli.junit import junit_xml
from gaussnll.cli.progress import progress_callback
from gaussnll.cli.render import print_report, report_json, report_markdown
from gaussnll.core.checks import (
    check_levels,
    evaluate,
    needs_calibration,
    parse_checks,
)
from gaussnll.core.columns import ColumnSpec
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
    "checks": [],
}
_SPREAD_KEYS = ("var_col", "std_col", "log_var_col")


@dataclass(frozen=True)
class Outputs:
    """Where and how ``gaussnll score`` reports (never read from the config file)."""

    format: str | None = None
    per_row: str | None = None
    junit_xml: str | None = None
    config: str | None = None
    quiet: bool = False


def resolve_settings(given: dict[str, Any], config: Config) -> dict[str, Any]:
    """Built-in defaults, overridden by the config file, overridden by the command line.

    Giving the spread one way on the command line replaces the file's choice entirely.
    """
    settings = {**BUILT_IN, **config.values, **given}
    if any(key in given for key in _SPREAD_KEYS):
        settings.update({key: given.get(key) for key in _SPREAD_KEYS})
    settings["levels"] = parse_levels(settings["levels"])
    return settings


def run_score(path: str, given: dict[str, Any], outputs: Outputs) -> int:
    """Score ``path``, render the report and the checks; return the exit code (0 or 1)."""
    config = load_config(outputs.config)
    settings = resolve_settings(given, config)
    output_format = outputs.format or "table"
    if output_format not in FORMATS:
        raise UsageError(f"--format must be table, json or markdown. Got {output_format!r}.")
    checks = parse_checks(settings["checks"])
    if needs_calibration(checks) and not settings["calibration"]:
        raise UsageError("a --check uses a calibration metric: drop --no-calibration")
    options = ScoreOptions(
        columns=ColumnSpec.from_options(
            mean=settings["mean_col"],
            target=settings["target_col"],
            var=settings["var_col"],
            std=settings["std_col"],
            log_var=settings["log_var_col"],
            id=settings["id_col"],
        ),
        full=settings["full"],
        eps=float(settings["eps"]),
        reduction=settings["reduction"],
        chunk_size=settings["chunk_size"],
        device=settings["device"],
        dtype=settings["dtype"],
        nan_policy=settings["nan_policy"],
        delimiter=settings["delimiter"],
        calibration=settings["calibration"],
        levels=tuple(dict.fromkeys([*settings["levels"], *check_levels(checks)])),
        pit_bins=settings["pit_bins"],
    )
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
        rows_context = atomic_row_writer(outputs.per_row, row_file_format(outputs.per_row, source))
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
    results = evaluate(checks, report.to_dict())
    if output_format == "json":
        print(report_json(report, results, config_file=config.path, settings=settings))
    elif output_format == "markdown":
        print(report_markdown(report, results))
    else:
        print_report(report, results)
    if outputs.junit_xml is not None:
        write_text_atomically(outputs.junit_xml, junit_xml(results, report))
    return EXIT_CHECK_FAILED if any(not r.passed for r in results) else 0


def parse_levels(value: str | list[float] | tuple[float, ...]) -> tuple[float, ...]:
    """``"0.5,0.9"`` (command line) or ``[0.5, 0.9]`` (config) → ``(0.5, 0.9)``."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        raise UsageError(f"--levels must be numbers separated by commas. Got {value!r}.") from None
