"""``gaussnll recalibrate`` (fit a variance recalibration map on held-out predictions and show
before and after) and ``gaussnll rescale`` (write predictions with the map applied)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gaussnll.cli.commands import Outputs, resolve_settings, score_options
from gaussnll.cli.config import Config, load_config
from gaussnll.cli.literal import markdown
from gaussnll.cli.progress import progress_callback
from gaussnll.cli.render import finite, markdown_table, number
from gaussnll.cli.settings import RECALIBRATE, RESCALE
from gaussnll.core import (
    PlannedOutputs,
    RecalibrationMap,
    Report,
    RowWriter,
    UsageError,
    fit_recalibration,
    resolve_source,
    row_file_format,
    score,
    write_recalibrated,
)

RECALIBRATE_SCHEMA = "gaussnll.recalibrate/1"
# What the map's scale multiplies (the JSON's ``fits``, the table's caption).
PLAIN_FIT = "the scale of each variance"
ENSEMBLE_FIT = (
    "the scale of the moment-matched variance (sum w*v + sum w*(mu - mu*)^2); score --ensemble "
    "applies it to each member's variance, which scales the aleatoric part (sum w*v) only"
)


def run_recalibrate(path: str, given: dict[str, Any]) -> int:
    """Fit the map on ``path``, write it to ``--output``, show the scores before and after."""
    output = _required_output(given, ".json", "the map")
    config = load_config(given.get("config_file"))
    settings = resolve_settings(given, config, RECALIBRATE)
    outputs = Outputs.of(given)
    options = score_options(settings, [])
    with _planned(output, path, config) as files:
        with progress_callback("fitting", not outputs.quiet) as on_progress:
            before = score(path, options, on_progress=on_progress)
            fitted = fit_recalibration(before)
            after = score(path, replace(options, recalibration=fitted), on_progress=on_progress)
        files.write_text(OUTPUT, json.dumps(fitted.to_dict(), indent=2) + "\n")
        _show(outputs.format, path, output, fitted, before, after)
        sys.stdout.flush()
        files.commit()
    return 0


def _show(
    output_format: str,
    path: str,
    output: str,
    fitted: RecalibrationMap,
    before: Report,
    after: Report,
) -> None:
    """The map's scales and the scores before and after, as a table or JSON on stdout."""
    fits = ENSEMBLE_FIT if before.ensemble is not None else PLAIN_FIT
    if output_format == "json":
        payload = {
            **fitted.to_dict(),
            "schema": RECALIBRATE_SCHEMA,  # the map's own schema is the file's
            "map": output,
            "fits": fits,
            "before": _summary(before),
            "after": _summary(after),
        }
        print(json.dumps(finite(payload), indent=2))
    elif output_format == "markdown":
        print(_before_after_markdown(path, output, fitted, before, after, fits))
    else:
        Console().print(_before_after_table(path, output, fitted, before, after, fits))


def run_rescale(map_path: str, path: str, given: dict[str, Any]) -> int:
    """Write ``path``'s rows to ``--output`` with their spread rescaled by the map."""
    output = _required_output(given, None, "the recalibrated predictions")
    settings = resolve_settings(given, load_config(given.get("config_file")), RESCALE)
    options = score_options(settings, [])
    fitted = RecalibrationMap.load(map_path)
    output_format = row_file_format(output)
    with _planned(output, path, load_config(None), map_path) as files:
        with RowWriter(files.sink(OUTPUT), output_format, name=output) as rows_to:
            rows = write_recalibrated(path, fitted, options, rows_to)
        files.commit()
    if not given.get("quiet"):
        print(f"gaussnll: wrote {rows:,} rescaled rows to {output}", file=sys.stderr)
    return 0


OUTPUT = "--output"


def _planned(output: str, path: str, config: Config, *more: str) -> PlannedOutputs:
    """The ``--output`` file, checked against the input's files, the config file and ``more``
    files read."""
    inputs = config.with_inputs([*resolve_source(path).files, *more])
    return PlannedOutputs({OUTPUT: output}, inputs, stdout=True)


def _required_output(given: dict[str, Any], suffix: str | None, what: str) -> str:
    output = given.get("output")
    if output is None:
        raise UsageError(f"--output FILE is required: where to write {what}")
    if suffix is not None and not output.endswith(suffix):
        raise UsageError(f"--output must name a {suffix} file. Got {output!r} instead.")
    return str(output)


def _summary(report: Report) -> dict[str, Any]:
    """The numbers recalibration changes: the NLL, calibration error and coverage."""
    calibration = report.calibration
    assert calibration is not None  # recalibrate always computes it
    return {
        "nll": report.nll_mean,
        "var_scale": calibration.var_scale,
        "mace": calibration.mace,
        "coverage": dict(zip(map(str, calibration.levels), calibration.coverage, strict=True)),
    }


def _before_after_table(
    path: str, output: str, fitted: RecalibrationMap, before: Report, after: Report, fits: str
) -> Table:
    table = Table(
        title=escape(_title(path, output, fitted)),
        title_justify="left",
        caption=f"fits {fits}",
        caption_justify="left",
    )
    for header in BEFORE_AFTER:
        table.add_column(header, justify="left" if header == "metric" else "right")
    for row in _before_after_rows(before, after):
        table.add_row(*row)
    return table


def _before_after_markdown(
    path: str, output: str, fitted: RecalibrationMap, before: Report, after: Report, fits: str
) -> str:
    """The same, as Markdown: the title, the table, and what the map fits."""
    lines = [f"### {markdown(_title(path, output, fitted))}", ""]
    lines += markdown_table(BEFORE_AFTER, _before_after_rows(before, after), keys=1, code=0)
    return "\n".join([*lines, "", f"The map fits {markdown(fits)}."])


BEFORE_AFTER = ("metric", "before", "after")


def _title(path: str, output: str, fitted: RecalibrationMap) -> str:
    scales = ", ".join(number(s) for s in fitted.scale)
    groups = f"; {len(fitted.groups):,} groups by {', '.join(fitted.by)}" if fitted.by else ""
    return f"gaussnll recalibrate: {path} → {output} (scale {scales}{groups})"


def _before_after_rows(before: Report, after: Report) -> list[tuple[str, str, str]]:
    """Each number recalibration changes (by the name a check uses), before and after."""
    first, second = _summary(before), _summary(after)
    rows = [
        (name, number(first[name]), number(second[name])) for name in ("nll", "var_scale", "mace")
    ]
    for level in first["coverage"]:
        rows.append(
            (
                f"coverage@{level}",
                number(first["coverage"][level]),
                number(second["coverage"][level]),
            )
        )
    return rows
