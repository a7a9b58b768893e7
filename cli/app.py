"""The ``gaussnll`` command. Its options come from ``settings.SETTINGS``; heavy modules (torch,
pyarrow) are imported inside commands only."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from contextlib import suppress
from importlib.metadata import version
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from gaussnll.cli.exits import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, raise_on_sigterm, user_errors
from gaussnll.cli.literal import shown
from gaussnll.cli.settings import (
    COMPARE,
    MERGE,
    RECALIBRATE,
    RESCALE,
    SCORE,
    Setting,
    settings_of,
)
from gaussnll.cli.streams import closed_stream_code, writing_stdout
from gaussnll.core import OutputError, answer_timeout, keep_freed_memory


class _FlagHelp:
    """``--help`` listed as the flag it is, without a ``<bool>`` value."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class _Command(_FlagHelp, TyperCommand):
    pass


class _Group(_FlagHelp, TyperGroup):
    pass


app = typer.Typer(
    name="gaussnll",
    cls=_Group,
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
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Show the version.",
            metavar="",
        ),
    ] = False,
) -> None:
    """Score probabilistic regression predictions with a torch-exact Gaussian NLL."""


def _option(setting: Setting) -> inspect.Parameter:
    """A typer option for ``setting``: None unless given, so a config file can fill it; its
    help names the built-in default. Help is text, not rich markup: ``gaussnll[dask]`` and
    ``[tool.gaussnll]`` are shown as written."""
    default = setting.default
    shown = setting.shown_default
    if shown is None and default not in (None, False, ()) and setting.config:
        shown = _default_text(default)
    option = typer.Option(
        *setting.flags,
        help=escape(setting.help) + (f" \\[default: {escape(shown)}]" if shown else ""),
        show_default=False,
        metavar="" if setting.kind is bool else setting.metavar,  # a flag takes no value
    )
    kind: Any = list[str] if setting.kind is list and setting.parse is None else setting.kind
    if setting.parse is not None:
        kind = str
    annotation = Annotated[kind | None, option]
    empty = False if setting.kind is bool and not setting.config else None
    return inspect.Parameter(
        setting.name, inspect.Parameter.KEYWORD_ONLY, default=empty, annotation=annotation
    )


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(_default_text(item) for item in value)
    if isinstance(value, float):  # 1e-06 reads as 1e-6
        return re.sub(r"e([+-])0*(\d)", lambda m: f"e{m[1].strip('+')}{m[2]}", f"{value:g}")
    return str(value)


def _command(
    name: str,
    arguments: list[inspect.Parameter],
    run: str,
    doc: str,
    summary: str,
    examples: list[str],
) -> None:
    """Register command ``name``: its ``arguments`` then every setting it takes as options.
    ``run`` names its function as ``module:function`` of ``gaussnll.cli``, imported when the
    command runs (so ``--help`` imports nothing heavy); it is called with the arguments' values
    and the options given on the command line."""
    argument_names = [parameter.name for parameter in arguments]
    parameters = [*arguments, *(_option(setting) for setting in settings_of(name))]

    def command(**values: Any) -> None:
        given = {key: value for key, value in values.items() if key not in argument_names}
        given = {key: value for key, value in given.items() if value is not None}
        with (
            user_errors(bool(given.get("debug")), name, given),
            writing_stdout(),
            answer_timeout(given.get("timeout")),
        ):
            module, function = run.split(":")
            runner = getattr(importlib.import_module(f"gaussnll.cli.{module}"), function)
            code = runner(*(values[key] for key in argument_names), given)
        if code:
            raise typer.Exit(code)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = doc
    command.__name__ = name
    epilog = "Examples:\n\n" + "\n\n".join(f"  $ {example}" for example in examples)
    app.command(name=name, cls=_Command, short_help=summary, epilog=epilog)(command)


def _argument(name: str, metavar: str, help: str) -> inspect.Parameter:
    annotation = Annotated[str, typer.Argument(metavar=metavar, help=help, show_default=False)]
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation)


_command(
    SCORE,
    [
        _argument(
            "path",
            "PATH",
            "Parquet/CSV/Arrow file, a directory or glob of them, or - for CSV on stdin.",
        )
    ],
    "commands:run_score",
    """Stream a prediction file through the Gaussian NLL, report it, and apply quality gates.

    Exit code 0 when every check passes, 1 when one fails, 2 on bad usage or input, 3 on an
    internal error.
    """,
    "Score a prediction file: NLL, calibration, quality gates.",
    [
        "gaussnll score sample_data/preds.parquet",
        "gaussnll score sample_data/preds.csv --check 'nll <= 0' --check 'coverage@0.9 >= 0.8'",
        "gaussnll score sample_data/preds_2d.parquet --levels 0.5,0.9 --format markdown",
    ],
)
_command(
    COMPARE,
    [
        _argument("baseline", "BASELINE", "The reference model's predictions."),
        _argument("candidate", "CANDIDATE", "The new model's predictions of the same rows."),
    ],
    "commands:run_compare",
    """Compare two models' predictions of the same targets: both scored side by side, and the
    paired differences of the per-row scores both have (NLL, CRPS, DSS; WIS and the quantile
    scores against a quantile model) with confidence intervals. Either model may be of any
    input form (--baseline-quantiles, --candidate-samples...).

    Exit code 0 when every check passes, 1 when one fails, 2 on bad usage or input, 3 on an
    internal error.
    """,
    "Compare two models' predictions of the same targets, row by row.",
    [
        "gaussnll compare sample_data/preds.parquet sample_data/preds_candidate.parquet "
        "--id-col id",
        "gaussnll compare sample_data/preds.parquet sample_data/preds_candidate.parquet "
        "--id-col id --max-regression 0 --format markdown",
    ],
)


_command(
    RECALIBRATE,
    [_argument("path", "CAL", "Held-out predictions to fit the variance scales on.")],
    "recalibration:run_recalibrate",
    """Fit the variance scale that minimises the NLL (overall, per output, and per group with
    --by) on held-out predictions, write it as a map (-o MAP.json), and show the scores before
    and after. Apply the map with score --recalibration MAP, or write rescaled predictions with
    rescale.
    """,
    "Fit variance scales on held-out predictions, and show before and after.",
    [
        "gaussnll recalibrate sample_data/preds.parquet -o map.json",
        "gaussnll recalibrate sample_data/preds.parquet --by region -o map.json --json",
    ],
)
_command(
    RESCALE,
    [
        _argument("map_path", "MAP", "A map written by gaussnll recalibrate."),
        _argument("path", "PATH", "Predictions to rescale (Parquet, CSV or Arrow)."),
    ],
    "recalibration:run_rescale",
    """Write PATH's rows to -o FILE with every variance (or standard deviation, or
    log-variance, in the input's own form) rescaled by the map; every other column as it is.
    """,
    "Write predictions with their variances rescaled by a recalibration map.",
    [
        "gaussnll rescale map.json sample_data/preds.csv -o recalibrated.csv",
        "gaussnll rescale map.json sample_data/preds.parquet -o recalibrated.parquet",
    ],
)


_command(
    MERGE,
    [
        inspect.Parameter(
            "paths",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[
                list[str],
                typer.Argument(
                    metavar="STATE...",
                    help="State files written by score --save-state.",
                    show_default=False,
                ),
            ],
        )
    ],
    "commands:run_merge",
    """Merge the states of shards scored anywhere (score --save-state) into the report of the
    whole input, with every output format, --check and --junit-xml; --by groups merge by key.
    States scored with different options, or a state given twice (--allow-duplicates merges it
    again), refuse to merge. State files are JSON or Arrow IPC
    (told apart by content); --max-groups defaults to the largest the states were scored with;
    --dask loads and merges them on a cluster.

    Exit code 0 when every check passes, 1 when one fails, 2 on bad usage or input, 3 on an
    internal error.
    """,
    "Merge the saved states of shards into the report of the whole input.",
    [
        "gaussnll merge sample_data/preds_part1.state.json sample_data/preds_part2.state.json",
        "gaussnll merge sample_data/preds_part1.state.json sample_data/preds_part2.state.json "
        "--check 'nll <= 0' --format markdown",
    ],
)


def main() -> None:
    """Console-script entry point: run the command, then leave without interpreter teardown.

    Tearing down torch's modules is slow and there is nothing to clean up: every output file is
    closed before a command returns. stdout and stderr are flushed first: a reader that closed
    the pipe early (``| head``) ends the run quietly with 141, a failed write (a full disk)
    with 2 and one line.
    """
    code = closed_stream_code()
    if code is not None:
        os._exit(code)
    keep_freed_memory()
    raise_on_sigterm()
    try:
        app(prog_name="gaussnll")
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    try:
        with writing_stdout():
            sys.stdout.flush()
    except BrokenPipeError:
        code = code or EXIT_BROKEN_PIPE
    except OutputError as error:
        if not code:  # else the command has said what went wrong already
            print(f"gaussnll: error: {shown(str(error))}", file=sys.stderr)
            code = EXIT_BAD_INPUT
    with suppress(OSError):
        sys.stderr.flush()
    os._exit(code)
