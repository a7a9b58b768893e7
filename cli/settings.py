"""Every option of every command, declared once: its name (the config-file key and the Python
parameter), type, default, help, the commands that take it, and the ScoreOptions parameter it
feeds. The typer options (``app``), the config-file validation (``config``), the resolved
settings in the JSON and the core options (``commands``) are derived from ``SETTINGS``.

Adding an option is one ``Setting`` here (and its row in docs/options.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gaussnll.cli.extras import install_hint
from gaussnll.core import (
    DEFAULT_CONFIDENCE,
    DEFAULT_LEVELS,
    DEFAULT_TIMEOUT_S,
    FAMILIES,
    GROUP_DEFAULT,
    OptionError,
    ScoreOptions,
    UsageError,
    parse_names,
)

DEFAULT_VAR_COL = "var"  # the spread read when none is given (--var-col var)
SCORE, COMPARE, RECALIBRATE, RESCALE, MERGE = "score", "compare", "recalibrate", "rescale", "merge"
BOTH = frozenset({SCORE, COMPARE})  # the commands that score and report
FITTING = BOTH | {RECALIBRATE}  # ... and the one that fits a recalibration map
EVERY = FITTING | {RESCALE}
REPORTING = frozenset({SCORE, MERGE})  # the commands that report one score, from data or states
REPORTED = FITTING | {MERGE}  # the commands that print a report (rescale writes a file only)


def _core_default(parameter: str) -> Any:
    """The default of a ``ScoreOptions`` parameter: defaults live in core."""
    (field,) = [f for f in dataclasses.fields(ScoreOptions) if f.name == parameter]
    return field.default


@dataclass(frozen=True)
class Setting:
    """One option. ``kind`` is the value's type once parsed (``list`` for repeatable or list
    options); ``default`` None means unset. ``core`` names the ScoreOptions parameter it feeds
    (``columns.mean``), so core's messages can be told with the flag. ``config``: whether a
    config file may set it (output options may not)."""

    name: str
    kind: type
    default: Any
    help: str
    commands: frozenset[str] = BOTH
    flag: str | None = None
    short: str | None = None
    core: str | None = None
    config: bool = True
    metavar: str | None = None
    parse: Callable[[Any], Any] | None = None
    shown_default: str | None = None  # the default --help names when ``default`` is None
    adds: bool = False  # a command-line value adds to the config file's instead of replacing it

    @property
    def flags(self) -> tuple[str, ...]:
        """The typer parameter declarations: ``--name`` (``--x/--no-x`` for a boolean)."""
        flag = self.flag or "--" + self.name.replace("_", "-")
        if self.kind is bool and self.config and "/" not in flag:
            flag = f"{flag}/--no-{flag.removeprefix('--')}"
        return (flag, self.short) if self.short else (flag,)

    @property
    def flag_name(self) -> str:
        """The flag a message names (the positive one of a boolean pair)."""
        return self.flags[0].split("/")[0]

    @property
    def config_types(self) -> tuple[type, ...]:
        """What a TOML value of this setting may be."""
        return {float: (int, float), list: (list,)}.get(self.kind, (self.kind,))

    def value(self, given: Any) -> Any:
        """A command-line or config value in its canonical form."""
        return given if self.parse is None or given is None else self.parse(given)


def numbers(flag: str) -> Callable[[str | Iterable[Any]], tuple[float, ...]]:
    """A parser of ``"0.5,0.9"`` (command line) or ``[0.5, 0.9]`` (config) → ``(0.5, 0.9)``
    for ``flag``."""

    def parse(value: str | Iterable[Any]) -> tuple[float, ...]:
        parts = value.split(",") if isinstance(value, str) else list(value)
        try:
            return tuple(float(part) for part in parts)
        except (TypeError, ValueError):
            raise UsageError(
                f"{flag} must be numbers separated by commas. Got {value!r}."
            ) from None

    return parse


def _columns(role: str, help: str, *, default: Any = None, **more: Any) -> Setting:
    return Setting(
        f"{role}_col", str, default, help, EVERY, core=f"columns.{role}", metavar="COL", **more
    )


SIDES = ("baseline", "candidate")  # compare's models
FORM_SETTINGS = ("samples", "quantiles", "quantile_cols")  # what a model's input form is


def _side_form(side: str) -> tuple[Setting, ...]:
    """``compare``'s settings of one model's input form, where it differs from the other's:
    ``--baseline-samples``, ``--candidate-quantiles``..."""
    flag = f"--{side}-quantiles"
    return (
        Setting(
            f"{side}_samples",
            str,
            None,
            f"The {side} holds M draws per row in this column (as --samples, for it alone).",
            frozenset({COMPARE}),
            metavar="COL",
        ),
        Setting(
            f"{side}_quantiles",
            list,
            None,
            f"The {side} is a quantile model of these levels (as --quantiles, for it alone; "
            f"with --{side}-quantile-cols).",
            frozenset({COMPARE}),
            metavar="T1,...,TK",
            parse=numbers(flag),
        ),
        Setting(
            f"{side}_quantile_cols",
            str,
            None,
            f"The {side}'s quantile columns (as --quantile-cols, for it alone).",
            frozenset({COMPARE}),
            metavar="COL",
        ),
    )


SETTINGS: tuple[Setting, ...] = (
    _columns("mean", "Mean column(s); comma-separated for several outputs.", default="mean"),
    _columns("target", "Target column(s).", default="target"),
    Setting(
        "var_col",
        str,
        None,
        "Variance column(s).",
        core="columns.spread",
        metavar="COL",
        shown_default=DEFAULT_VAR_COL,
        commands=EVERY,
    ),
    Setting(
        "std_col",
        str,
        None,
        "Give the spread as standard deviation column(s).",
        core="columns.spread",
        metavar="COL",
        commands=EVERY,
    ),
    Setting(
        "log_var_col",
        str,
        None,
        "Give the spread as log-variance column(s).",
        core="columns.spread",
        metavar="COL",
        commands=EVERY,
    ),
    Setting(
        "id_col",
        str,
        None,
        "Carry this column into the per-row output (compare: pair rows by it).",
        core="columns.id",
        metavar="COL",
    ),
    Setting(
        "weight_col",
        str,
        None,
        "Weigh each row by this column (finite, >= 0; 0 leaves the row out): every mean, "
        "coverage and histogram is weighted; rows are still counted as rows.",
        core="columns.weight",
        metavar="COL",
        commands=FITTING,
    ),
    Setting(
        "full",
        bool,
        _core_default("full"),
        "Add the constant 0.5*log(2*pi) per element.",
        core="full",
    ),
    Setting(
        "eps",
        float,
        _core_default("eps"),
        "Floor for the variance in the NLL, as torch's eps.",
        core="eps",
        metavar="X",
        commands=FITTING,
    ),
    Setting(
        "reduction",
        str,
        _core_default("reduction"),
        "How to reduce the losses: none streams per-row losses.",
        frozenset({SCORE}),
        core="reduction",
        metavar="mean|sum|none",
    ),
    Setting(
        "chunk_size",
        int,
        _core_default("chunk_size"),
        "Rows per chunk held in memory.",
        core="chunk_size",
        metavar="ROWS",
        commands=EVERY,
    ),
    Setting(
        "device",
        str,
        _core_default("device"),
        "Where to compute: auto takes CUDA when there is one.",
        core="device",
        metavar="auto|cpu|cuda|cuda:N",
        commands=FITTING,
    ),
    Setting(
        "dtype",
        str,
        _core_default("dtype"),
        "Precision of the computation (sums are float64 either way).",
        core="dtype",
        metavar="float64|float32",
        commands=FITTING,
    ),
    Setting(
        "nan_policy",
        str,
        _core_default("nan_policy"),
        "What a NaN, inf or missing value does: stop, drop its row, or propagate as torch.",
        core="nan_policy",
        metavar="error|skip|propagate",
        commands=FITTING,
    ),
    Setting(
        "delimiter",
        str,
        _core_default("delimiter"),
        "Field delimiter of CSV input.",
        core="delimiter",
        metavar="CHAR",
        commands=EVERY,
    ),
    Setting(
        "calibration",
        bool,
        _core_default("calibration"),
        "Compute calibration and accuracy summaries.",
        core="calibration",
    ),
    Setting(
        "metrics",
        list,
        None,
        "Metric families to compute for the whole input, comma-separated: "
        + ", ".join(FAMILIES)
        + " or all; a family left out costs nothing and reports null.",
        core="metrics",
        metavar="FAMILY,...",
        parse=parse_names,
        shown_default="all",
    ),
    Setting(
        "group_metrics",
        list,
        None,
        "Metric families to compute for each group of --by, comma-separated (as --metrics; "
        "+F,...: the default and F, ..., e.g. +calibration for each group's MACE); each "
        "group's state holds only their sums.",
        frozenset({SCORE, COMPARE}),
        core="group_metrics",
        metavar="FAMILY,...",
        parse=parse_names,
        shown_default=",".join(GROUP_DEFAULT),
    ),
    Setting(
        "levels",
        list,
        DEFAULT_LEVELS,
        "Central-interval levels, comma-separated.",
        core="levels",
        parse=numbers("--levels"),
        metavar="P,P,...",
    ),
    Setting(
        "pit_bins",
        int,
        _core_default("pit_bins"),
        "Bins of the PIT histogram.",
        core="pit_bins",
        metavar="N",
    ),
    Setting(
        "uncertainty_bins",
        int,
        _core_default("uncertainty_bins"),
        "Bins of predicted sigma, of nearly equal count, for ENCE and the error-vs-uncertainty "
        "figure.",
        core="uncertainty_bins",
    ),
    Setting(
        "ensemble",
        bool,
        _core_default("ensemble"),
        "Each row holds M Gaussians: list columns of M (or the comma-separated mean and spread "
        "columns); scored as their moment-matched Gaussian and as a mixture; recalibrate: "
        "fits the moment-matched variance's scale.",
        core="ensemble",
        commands=FITTING,
    ),
    Setting(
        "samples",
        str,
        None,
        "Each row holds M draws of the prediction: a list column of M (or comma-separated "
        "columns, one per draw), read instead of --mean-col and the spread; scored as the "
        "draws (the samples section) and as their moment-matched Gaussian (compare: both "
        "models', unless a --baseline-/--candidate- form says otherwise).",
        metavar="COL",
    ),
    Setting(
        "quantiles",
        list,
        None,
        "A quantile model: the levels of its quantile columns, strictly increasing in (0, 1), "
        "comma-separated (with --quantile-cols; no mean or spread is read, the NLL is null).",
        core="quantiles",
        metavar="T1,...,TK",
        parse=numbers("--quantiles"),
    ),
    Setting(
        "quantile_cols",
        str,
        None,
        "The quantile columns, one per level of --quantiles (comma-separated) or one list column.",
        core="columns.quantiles",
        metavar="COL",
    ),
    *(setting for side in SIDES for setting in _side_form(side)),
    Setting(
        "member_weights",
        list,
        None,
        "Weights of the ensemble's members, comma-separated (normalised; default uniform).",
        core="member_weights",
        metavar="W1,...,WM",
        parse=numbers("--member-weights"),
        commands=FITTING,
    ),
    Setting(
        "workers",
        int,
        _core_default("workers"),
        "Scoring threads on the CPU; 0: every core but the reader's for calibration of "
        "Parquet or Arrow, else every 2nd core, up to 4; 1 with --by.",
        frozenset({SCORE}),
        core="workers",
        metavar="N",
    ),
    Setting(
        "checks",
        list,
        (),
        "A quality gate, e.g. 'nll <= 1.2' or 'var_scale between 0.8 1.25'; repeatable; "
        "adds to the config file's checks.",
        REPORTING,
        flag="--check",
        core="check",
        metavar="EXPR",
        adds=True,
    ),
    Setting(
        "by",
        list,
        (),
        "Break every metric down by this column; repeatable for composite keys (compare: "
        "read from the baseline, each group's paired difference, the worst first).",
        frozenset({SCORE, RECALIBRATE, COMPARE}),
        core="columns.by",
        metavar="COLUMN",
    ),
    Setting(
        "max_groups",
        int,
        _core_default("max_groups"),
        "Stop with an error when the key columns hold more groups than this (each group's "
        "sums take memory); by default as many as fit a quarter of the machine's memory "
        "(GAUSSNLL_GROUP_MEMORY bytes, if set); merge: by default the largest the states "
        "were scored with.",
        frozenset({SCORE, MERGE, COMPARE}),
        core="max_groups",
        metavar="N",
        shown_default="from memory",
    ),
    Setting(
        "top",
        int,
        None,
        "Show only the first K groups.",
        REPORTING,
        metavar="K",
        shown_default="all (a table shows 100)",
    ),
    Setting(
        "sort_by",
        str,
        None,
        "Order groups by a metric, largest first (METRIC:asc for smallest first).",
        REPORTING,
        metavar="METRIC[:asc]",
        shown_default="the group key",
    ),
    Setting(
        "per_group",
        bool,
        False,
        "Apply the checks to every group instead of the whole input.",
        REPORTING | {COMPARE},
    ),
    Setting(
        "compare_checks",
        list,
        (),
        "A quality gate on the comparison, e.g. 'delta_nll <= 0' or "
        "'candidate.coverage@0.9 >= 0.85'; repeatable; adds to the config file's "
        "compare_checks.",
        frozenset({COMPARE}),
        flag="--check",
        core="check",
        metavar="EXPR",
        adds=True,
    ),
    Setting(
        "max_regression",
        float,
        None,
        "Fail (exit 1) when the candidate's NLL is worse by more than this beyond noise: the "
        "lower end of the confidence interval of delta_nll is above it.",
        frozenset({COMPARE}),
        metavar="X",
    ),
    Setting(
        "confidence",
        float,
        DEFAULT_CONFIDENCE,
        "Level of the confidence interval of delta_nll.",
        frozenset({COMPARE}),
        core="confidence",
        metavar="P",
    ),
    Setting(
        "ci_level",
        float,
        DEFAULT_CONFIDENCE,
        "Level of the bootstrap intervals.",
        BOTH,
        core="ci",
        metavar="P",
    ),
    Setting(
        "ci",
        bool,
        False,
        "Add bootstrap confidence intervals to the whole input's headline metrics: "
        "NAME_ci_low and NAME_ci_high (docs/intervals.md); compare: also to the differences "
        "of MACE and one-sided MACE.",
        BOTH,
    ),
    Setting(
        "ci_replicates",
        int,
        _core_default("ci_replicates"),
        "Bootstrap replicates B of the intervals; the time they take grows with B.",
        BOTH,
        core="ci_replicates",
        metavar="B",
    ),
    Setting(
        "ci_seed",
        int,
        _core_default("ci_seed"),
        "Seed of the intervals' replicate weights.",
        BOTH,
        core="ci_seed",
        metavar="N",
    ),
    Setting(
        "recalibration",
        str,
        None,
        "Multiply every variance by its scale from this map (made by gaussnll recalibrate) "
        "before scoring; compare: the candidate's.",
        BOTH,
        core="recalibration",
        metavar="MAP",
    ),
    Setting(
        "dask",
        str,
        None,
        "Score on a Dask cluster: 'local' starts one on this machine, tcp://HOST:PORT "
        f"connects to a running scheduler (needs Dask: {install_hint('dask')}); merge: load and "
        "merge the states there (the workers must reach the files).",
        frozenset({SCORE, MERGE}),
        core="dask_address",
        metavar="ADDRESS",
    ),
    Setting(
        "dask_workers",
        int,
        None,
        "Worker processes of a local Dask cluster (--dask local), at least 1.",
        frozenset({SCORE, MERGE}),
        core="dask_workers",
        shown_default="one per core",
    ),
    Setting(
        "timeout",
        float,
        None,
        "Seconds to wait for a first answer from a Dask scheduler (and for its first worker) "
        "or an object store (s3://, gs://...) before giving up with exit 2.",
        EVERY | {MERGE},
        config=False,
        metavar="SECONDS",
        shown_default=f"{DEFAULT_TIMEOUT_S:g}",
    ),
    Setting(
        "allow_duplicates",
        bool,
        False,
        "Merge a state given twice (the same shard's, by its identity) as often as it is "
        "given, instead of refusing it: its rows then count twice.",
        frozenset({MERGE}),
        config=False,
    ),
    # Output options: the command line only.
    Setting(
        "output",
        str,
        None,
        "The file to write (recalibrate: the map, .json; rescale: the predictions, .parquet or "
        ".csv).",
        frozenset({RECALIBRATE, RESCALE}),
        short="-o",
        config=False,
        metavar="FILE",
    ),
    Setting(
        "save_state",
        str,
        None,
        "Write the run's state (every sum, count and group, and the options that shape them) "
        "to this file, for gaussnll merge: Arrow IPC for .arrow, .ipc or .feather (compact and "
        "fast for many groups), else JSON.",
        frozenset({SCORE}),
        config=False,
        metavar="FILE",
    ),
    Setting(
        "config_file",
        str,
        None,
        "Options file.",
        flag="--config",
        config=False,
        metavar="FILE",
        shown_default="the [tool.gaussnll] table of the nearest pyproject.toml",
        commands=EVERY | {MERGE},
    ),
    Setting(
        "format",
        str,
        None,
        "What to print on stdout.",
        config=False,
        metavar="table|json|markdown",
        shown_default="table",
        commands=REPORTED,
    ),
    Setting("json", bool, False, "Short for --format json.", config=False, commands=REPORTED),
    Setting(
        "per_row",
        str,
        None,
        "Write per-row losses (compare: each pair's NLL and difference) to a .parquet or "
        ".csv file (with --dask: a new directory of Parquet parts).",
        config=False,
        metavar="FILE",
    ),
    Setting(
        "junit_xml",
        str,
        None,
        "Write the checks as JUnit XML to this file.",
        BOTH | {MERGE},
        config=False,
        metavar="FILE",
    ),
    Setting(
        "html",
        str,
        None,
        "Write a self-contained HTML report with calibration figures to this file "
        f"(needs matplotlib: {install_hint('html')}).",
        REPORTED,
        config=False,
        metavar="FILE",
    ),
    Setting(
        "quiet",
        bool,
        False,
        "No progress bar.",
        short="-q",
        config=False,
        commands=EVERY | {MERGE},
    ),
    Setting(
        "debug",
        bool,
        False,
        "Show tracebacks, for bug reports.",
        config=False,
        commands=EVERY | {MERGE},
    ),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}
SPREAD_SETTINGS = ("var_col", "std_col", "log_var_col")


def settings_of(command: str, *, config: bool | None = None) -> list[Setting]:
    """The settings ``command`` takes (only those a config file may set, with ``config``)."""
    return [s for s in SETTINGS if command in s.commands and (config is None or s.config == config)]


def flag_for(parameter: str, command: str) -> str | None:
    """The flag of ``command`` that feeds a core parameter (``eps`` → ``--eps``)."""
    for setting in settings_of(command):
        if setting.core == parameter or (setting.core is None and setting.name == parameter):
            return setting.flag_name
    return None


def with_flag(error: OptionError, command: str, given: Iterable[str] = ()) -> UsageError:
    """Core's message about a parameter, told with the flag that set it; ``given``: the
    settings given, to name the spread flag actually used."""
    if error.parameter == "columns.spread":
        used = [name for name in SPREAD_SETTINGS if name in given] or ["var_col"]
        return UsageError(f"{BY_NAME[used[0]].flag_name} {error.detail}")
    sided = [f"{side}_{error.parameter}" for side in SIDES]  # one model's form (compare)
    used = [name for name in sided if name in given and name in BY_NAME]
    flag = BY_NAME[used[0]].flag_name if used else flag_for(error.parameter, command)
    return UsageError(f"{flag or error.parameter} {error.detail}")
