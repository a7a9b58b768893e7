"""``gaussnll recalibrate`` (fit a variance recalibration map on held-out predictions and show
before and after) and ``gaussnll rescale`` (write predictions with the map applied)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Any

from gaussnll.cli.commands import HTML, Outputs, publish, resolve_settings, score_options
from gaussnll.cli.config import Config, load_config
from gaussnll.cli.extras import require_matplotlib
from gaussnll.cli.formats import Shown
from gaussnll.cli.literal import shown
from gaussnll.cli.progress import progress_callback
from gaussnll.cli.render_recalibrate import RecalibrationReport
from gaussnll.cli.settings import RECALIBRATE, RESCALE
from gaussnll.core import (
    PlannedOutputs,
    RecalibrationMap,
    RowWriter,
    UsageError,
    fit_recalibration,
    resolve_source,
    row_file_format,
    score,
    write_recalibrated,
)


def run_recalibrate(path: str, given: dict[str, Any]) -> int:
    """Fit the map on ``path``, write it to ``--output``, show the scores before and after."""
    output = _required_output(given, ".json", "the map")
    config = load_config(given.get("config_file"))
    settings = resolve_settings(given, config, RECALIBRATE)
    outputs = Outputs.of(given)
    options = score_options(settings, [])
    if outputs.html is not None:
        require_matplotlib()
    with _planned(output, path, config, html=outputs.html) as files:
        with progress_callback("fitting", not outputs.quiet) as on_progress:
            before = score(path, options, on_progress=on_progress)
            fitted = fit_recalibration(before)
            after = score(path, replace(options, recalibration=fitted), on_progress=on_progress)
        files.write_text(OUTPUT, json.dumps(fitted.to_dict(), indent=2) + "\n")
        report = RecalibrationReport(path, output, fitted, before, after)
        return publish(report, Shown(RECALIBRATE, settings=settings), outputs.format, files)


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
        print(f"gaussnll: wrote {rows:,} rescaled rows to {shown(output)}", file=sys.stderr)
    return 0


OUTPUT = "--output"


def _planned(
    output: str, path: str, config: Config, *more: str, html: str | None = None
) -> PlannedOutputs:
    """The ``--output`` file (and the ``--html`` page), checked against the input's files, the
    config file and ``more`` files read."""
    inputs = config.with_inputs([*resolve_source(path).files, *more])
    return PlannedOutputs({OUTPUT: output, HTML: html}, inputs, stdout=True)


def _required_output(given: dict[str, Any], suffix: str | None, what: str) -> str:
    output = given.get("output")
    if output is None:
        raise UsageError(f"--output FILE is required: where to write {what}")
    if suffix is not None and not output.endswith(suffix):
        raise UsageError(f"--output must name a {suffix} file. Got {output!r} instead.")
    return str(output)
