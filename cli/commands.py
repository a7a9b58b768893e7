"""What each command does once its options are parsed: build core options, run, render."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import dataclass

from gaussnll.cli.progress import progress_callback
from gaussnll.cli.render import print_report, report_json
from gaussnll.core.columns import ColumnSpec
from gaussnll.core.engine import ScoreOptions, score
from gaussnll.core.errors import UsageError
from gaussnll.core.sources import FileFormat, resolve_source
from gaussnll.core.writers import RowWriter, atomic_row_writer, row_file_format


@dataclass(frozen=True)
class ScoreRequest:
    """The options of ``gaussnll score`` as typed on the command line."""

    mean_col: str
    target_col: str
    var_col: str | None
    std_col: str | None
    log_var_col: str | None
    full: bool
    eps: float
    reduction: str
    chunk_size: int
    device: str
    dtype: str
    json_output: bool
    per_row: str | None
    id_col: str | None
    quiet: bool
    calibration: bool
    levels: str
    pit_bins: int
    nan_policy: str
    delimiter: str


def run_score(path: str, request: ScoreRequest) -> None:
    """Score ``path``; print the table or JSON, or stream per-row CSV for ``--reduction none``."""
    columns = ColumnSpec.from_options(
        mean=request.mean_col,
        target=request.target_col,
        var=request.var_col,
        std=request.std_col,
        log_var=request.log_var_col,
        id=request.id_col,
    )
    options = ScoreOptions(
        columns=columns,
        full=request.full,
        eps=request.eps,
        reduction=request.reduction,
        chunk_size=request.chunk_size,
        device=request.device,
        dtype=request.dtype,
        calibration=request.calibration,
        levels=parse_levels(request.levels),
        pit_bins=request.pit_bins,
        nan_policy=request.nan_policy,
        delimiter=request.delimiter,
    )
    rows_on_stdout = request.reduction == "none" and request.per_row is None
    if rows_on_stdout and request.json_output:
        raise UsageError(
            "--reduction none streams per-row CSV to stdout; add --per-row FILE to use --json"
        )
    if request.id_col and not (request.per_row or rows_on_stdout):
        raise UsageError("--id-col only applies to per-row output: add --per-row FILE")
    source = resolve_source(path)
    if request.per_row is not None:
        file_format = row_file_format(request.per_row, source)
        rows_context = atomic_row_writer(request.per_row, file_format)
    elif rows_on_stdout:
        rows_context = nullcontext(RowWriter(sys.stdout.buffer, FileFormat.CSV))
    else:
        rows_context = nullcontext(None)
    with rows_context as rows_to, progress_callback("scoring", not request.quiet) as on_progress:
        report = score(path, options, rows_to=rows_to, on_progress=on_progress)
        if rows_on_stdout:
            rows_to.close()
    if rows_on_stdout:
        return
    if request.json_output:
        print(report_json(report))
    else:
        print_report(report)


def parse_levels(text: str) -> tuple[float, ...]:
    """``"0.5,0.9"`` → ``(0.5, 0.9)``; anything else is a usage error."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--levels must be numbers separated by commas. Got {text!r}.") from None
