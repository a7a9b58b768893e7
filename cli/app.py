"""The ``gaussnll`` command. Heavy modules (torch, pyarrow) are imported inside commands only."""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from typing import Annotated, Any

import typer

from gaussnll.cli.exits import EXIT_BROKEN_PIPE, raise_on_sigterm, user_errors
from gaussnll.core.allocator import keep_freed_memory
from gaussnll.core.defaults import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_EPS,
    DEFAULT_LEVELS,
    DEFAULT_PIT_BINS,
)

app = typer.Typer(
    name="gaussnll",
    help="Score probabilistic regression predictions with a torch-exact Gaussian NLL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gaussnll {version('gaussnll')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Score probabilistic regression predictions with a torch-exact Gaussian NLL."""


def _option(help: str, default: object = None, *flags: str) -> Any:
    """An option that is None unless given, so that a config file can fill it; its help shows
    the built-in default."""
    return typer.Option(*flags, help=help, show_default=False if default is None else str(default))


# Options shared by the commands, declared once.
MeanCol = Annotated[
    str | None, _option("Mean column(s); comma-separated for several outputs.", "mean")
]
TargetCol = Annotated[str | None, _option("Target column(s).", "target")]
VarCol = Annotated[str | None, _option("Variance column(s).", "var")]
StdCol = Annotated[str | None, _option("Give the spread as standard deviation column(s).")]
LogVarCol = Annotated[str | None, _option("Give the spread as log-variance column(s).")]
Full = Annotated[
    bool | None, _option("Add the constant 0.5*log(2*pi) per element.", None, "--full/--no-full")
]
Eps = Annotated[float | None, _option("Floor for the variance, as torch's eps.", DEFAULT_EPS)]
ChunkSize = Annotated[int | None, _option("Rows per chunk held in memory.", DEFAULT_CHUNK_ROWS)]
Device = Annotated[str | None, _option("auto, cpu, cuda or cuda:N.", "auto")]
Dtype = Annotated[str | None, _option("float64 or float32 for the computation.", "float64")]
NanPolicy = Annotated[
    str | None, _option("NaN/inf/missing: error, skip (drop rows) or propagate.", "error")
]
Delimiter = Annotated[str | None, _option("Field delimiter of CSV input.", ",")]
Calibration = Annotated[
    bool | None,
    _option("Compute calibration and accuracy summaries.", True, "--calibration/--no-calibration"),
]
Levels = Annotated[
    str | None,
    _option("Central-interval levels, comma-separated.", ",".join(map(str, DEFAULT_LEVELS))),
]
PitBins = Annotated[int | None, _option("Bins of the PIT histogram.", DEFAULT_PIT_BINS)]
ConfigFile = Annotated[
    str | None, _option("Options file (default: the \\[tool.gaussnll] table of pyproject.toml).")
]
OutputFormat = Annotated[str | None, _option("table, json or markdown.", "table", "--format")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Short for --format json.")]
JunitXml = Annotated[str | None, _option("Write the checks as JUnit XML to this file.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Debug = Annotated[bool, typer.Option(help="Show tracebacks, for bug reports.")]
_OUTPUT_PARAMETERS = ("output_format", "json_output", "per_row", "junit_xml", "config", "quiet")


@app.command()
def score(
    path: Annotated[
        str,
        typer.Argument(
            metavar="PATH",
            help="Parquet/CSV/Arrow file, a directory or glob of them, or - for CSV on stdin.",
        ),
    ],
    mean_col: MeanCol = None,
    target_col: TargetCol = None,
    var_col: VarCol = None,
    std_col: StdCol = None,
    log_var_col: LogVarCol = None,
    id_col: Annotated[str | None, _option("Carry this column into the per-row output.")] = None,
    full: Full = None,
    eps: Eps = None,
    reduction: Annotated[
        str | None, _option("mean, sum, or none (per-row losses).", "mean")
    ] = None,
    chunk_size: ChunkSize = None,
    device: Device = None,
    dtype: Dtype = None,
    nan_policy: NanPolicy = None,
    delimiter: Delimiter = None,
    calibration: Calibration = None,
    levels: Levels = None,
    pit_bins: PitBins = None,
    workers: Annotated[
        int | None,
        _option(
            "Scoring threads on the CPU; 0: every core but the reader's for calibration of "
            "Parquet or Arrow, else every 2nd core, up to 4; 1 with --by.",
            0,
        ),
    ] = None,
    check: Annotated[
        list[str] | None,
        _option("A quality gate, e.g. 'nll <= 1.2' or 'var_scale between 0.8 1.25'; repeatable."),
    ] = None,
    by: Annotated[
        list[str] | None,
        _option("Break every metric down by this column; repeatable for composite keys."),
    ] = None,
    top: Annotated[int | None, _option("Show only the first K groups (all by default).")] = None,
    sort_by: Annotated[
        str | None,
        _option("Order groups by a metric, largest first (METRIC:asc for smallest first).", "key"),
    ] = None,
    per_group: Annotated[
        bool | None,
        _option("Apply the checks to every group instead of the whole input.", None, "--per-group"),
    ] = None,
    config: ConfigFile = None,
    output_format: OutputFormat = None,
    json_output: JsonOutput = False,
    per_row: Annotated[
        str | None, _option("Write per-row losses to this .parquet or .csv file.")
    ] = None,
    junit_xml: JunitXml = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Stream a prediction file through the Gaussian NLL, report it, and apply quality gates.

    Exit code 0 when every check passes, 1 when one fails, 2 on bad usage or input.
    """
    given, outputs = _split_parameters(locals())
    with user_errors(debug):
        from gaussnll.cli import commands

        code = commands.run_score(path, given, commands.Outputs(**outputs))
    if code:
        raise typer.Exit(code)


@app.command()
def compare(
    baseline: Annotated[
        str, typer.Argument(metavar="BASELINE", help="The reference model's predictions.")
    ],
    candidate: Annotated[
        str,
        typer.Argument(metavar="CANDIDATE", help="The new model's predictions of the same rows."),
    ],
    id_col: Annotated[
        str | None, _option("Pair rows by this id column instead of by order.")
    ] = None,
    max_regression: Annotated[
        float | None,
        _option(
            "Fail (exit 1) when the candidate's NLL is worse by more than this beyond noise: "
            "the lower end of the confidence interval of delta_nll is above it."
        ),
    ] = None,
    confidence: Annotated[
        float | None, _option("Level of the confidence interval of delta_nll.", 0.95)
    ] = None,
    mean_col: MeanCol = None,
    target_col: TargetCol = None,
    var_col: VarCol = None,
    std_col: StdCol = None,
    log_var_col: LogVarCol = None,
    full: Full = None,
    eps: Eps = None,
    chunk_size: ChunkSize = None,
    device: Device = None,
    dtype: Dtype = None,
    nan_policy: NanPolicy = None,
    delimiter: Delimiter = None,
    calibration: Calibration = None,
    levels: Levels = None,
    pit_bins: PitBins = None,
    check: Annotated[
        list[str] | None,
        _option(
            "A quality gate on the comparison, e.g. 'delta_nll <= 0' or "
            "'candidate.coverage@0.9 >= 0.85'; repeatable."
        ),
    ] = None,
    config: ConfigFile = None,
    output_format: OutputFormat = None,
    json_output: JsonOutput = False,
    per_row: Annotated[
        str | None,
        _option("Write each pair's NLL and difference to this .parquet or .csv file."),
    ] = None,
    junit_xml: JunitXml = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Compare two models' predictions of the same targets: both scored side by side, and the
    paired difference of their per-row NLL with a confidence interval.

    Exit code 0 when every check passes, 1 when one fails, 2 on bad usage or input.
    """
    given, outputs = _split_parameters(locals())
    with user_errors(debug):
        from gaussnll.cli import commands

        code = commands.run_compare(baseline, candidate, given, commands.Outputs(**outputs))
    if code:
        raise typer.Exit(code)


def _split_parameters(parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A command's parameters as (settings given on the command line, output options).

    Settings left out (None) are for the config file or the defaults to fill; ``check`` is
    the ``checks`` setting.
    """
    outputs = {name: parameters[name] for name in _OUTPUT_PARAMETERS}
    output_format, json_output = outputs.pop("output_format"), outputs.pop("json_output")
    outputs["format"] = "json" if json_output else output_format
    skip = {*_OUTPUT_PARAMETERS, "path", "baseline", "candidate", "debug"}
    given = {
        ("checks" if name == "check" else name): value
        for name, value in parameters.items()
        if name not in skip and value is not None
    }
    return given, outputs


def main() -> None:
    """Console-script entry point: run the command, then leave without interpreter teardown.

    Tearing down torch's modules costs about 0.35 s per run and there is nothing to clean up:
    every output file is closed before a command returns. stdout and stderr are flushed first;
    a reader that closed the pipe early (``| head``) ends the run quietly.
    """
    keep_freed_memory()
    raise_on_sigterm()
    try:
        app(prog_name="gaussnll")
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or EXIT_BROKEN_PIPE
    os._exit(code)
