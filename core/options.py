"""What to score and how: the columns, torch's loss options, the non-finite policy, streaming.

Light on purpose (no torch, no pyarrow), so a front end can read the defaults before it imports
the engine. Invalid values raise :class:`OptionError` naming the Python parameter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from gaussnll.core.errors import OptionError
from gaussnll.core.families import Selection, parse_names, select
from gaussnll.core.recalibration import RecalibrationMap

DEFAULT_CHUNK_ROWS = 6 << 14  # 98,304 rows: speed against peak memory, see bench/README.md
MAX_CHUNK_ROWS = (1 << 31) - 1  # what Arrow's readers take as a batch size
DEFAULT_EPS = 1e-6
DEFAULT_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)
DEFAULT_PIT_BINS = 20
DEFAULT_CONFIDENCE = 0.95  # of the interval of a comparison's paired NLL difference
DEFAULT_REPLICATES = 200  # bootstrap replicates of ``ci`` (see bench/README.md for the cost)
MAX_REPLICATES = 100_000
MAX_PIT_BINS = 1000
DEFAULT_UNCERTAINTY_BINS = 10
MAX_UNCERTAINTY_BINS = 100
MAX_QUANTILE_BINS = 1000
REDUCTIONS = ("mean", "sum", "none")
DTYPE_NAMES = ("float64", "float32")
NAN_POLICIES = ("error", "skip", "propagate")


class Spread(StrEnum):
    """How the file gives the predictive spread; every kind is turned into a variance."""

    VAR = "var"
    STD = "std"
    LOG_VAR = "log_var"


Names = tuple[str, ...]


class QuantileEdges(tuple[float, ...]):
    """Interval edges found as quantiles of the data (``intervals`` given as a number of
    bins): group keys show them rounded, as few digits as keep them distinct."""


@dataclass(frozen=True, init=False)
class ColumnSpec:
    """Column names per role; several names per role make a multi-output ``(N, D)`` prediction.

    A role takes a sequence of names or one string, which is one name (``ColumnSpec(mean="mu")``
    reads column ``mu``, not ``m`` and ``u``).
    """

    mean: Names
    target: Names
    spread: Names
    spread_kind: Spread
    id: str | None
    by: Names
    weight: str | None  # each row's weight (see docs/weights.md)
    quantiles: Names  # a quantile model's columns (``ScoreOptions.quantiles``): no mean, no spread

    def __init__(
        self,
        mean: str | Sequence[str] = ("mean",),
        target: str | Sequence[str] = ("target",),
        spread: str | Sequence[str] = ("var",),
        spread_kind: Spread | str = Spread.VAR,
        id: str | None = None,
        by: str | Sequence[str] = (),
        weight: str | None = None,
        quantiles: str | Sequence[str] = (),
    ) -> None:
        given = {
            "mean": mean,
            "target": target,
            "spread": spread,
            "by": by,
            "quantiles": quantiles,
        }
        for role, value in given.items():
            names = (value,) if isinstance(value, str) else tuple(value)
            if not all(isinstance(name, str) and name for name in names):
                raise OptionError(f"columns.{role}", f"must be column names. Got {value!r}.")
            if role not in ("by", "spread", "quantiles") and not names:
                raise OptionError(f"columns.{role}", "must name at least one column.")
            object.__setattr__(self, role, names)
        for role, name in (("id", id), ("weight", weight)):
            if name is not None and not (isinstance(name, str) and name):
                raise OptionError(f"columns.{role}", f"must be one column name. Got {name!r}.")
            object.__setattr__(self, role, name)
        try:
            object.__setattr__(self, "spread_kind", Spread(spread_kind))
        except ValueError:
            raise OptionError(
                "columns.spread_kind", f"must be var, std or log_var. Got {spread_kind!r}."
            ) from None

    @property
    def numeric(self) -> Names:
        """Every column read as numbers, each once, in role order (the weight last); a quantile
        model's quantiles instead of a mean and a spread."""
        weight = (self.weight,) if self.weight else ()
        predicted = (self.quantiles,) if self.quantiles else (self.mean, self.spread)
        predicted_names = [name for names in predicted for name in names]
        return tuple(dict.fromkeys((*predicted_names, *self.target, *weight)))

    @property
    def needed(self) -> Names:
        """Every column the reader must project."""
        extra = ((self.id,) if self.id else ()) + self.by
        return tuple(dict.fromkeys(self.numeric + extra))

    def output_names(self, width: int) -> list[str]:
        """One name per output: the mean columns, or ``name[i]`` inside a list column (a
        quantile model's: the target's)."""
        names = self.target if self.quantiles else self.mean
        return [column_label(names, j, width) for j in range(width)]


def column_label(names: Sequence[str], index: int, width: int) -> str:
    """The name of output ``index``: its own column, or ``name[index]`` inside a list column."""
    if len(names) == width:
        return names[index]
    return f"{names[0]}[{index}]" if width > 1 else names[0]


@dataclass(frozen=True)
class ScoreOptions:
    """How to score: the columns, torch's loss options, and how to stream."""

    columns: ColumnSpec = field(default_factory=ColumnSpec)
    full: bool = False
    eps: float = DEFAULT_EPS
    reduction: str = "mean"
    chunk_size: int = DEFAULT_CHUNK_ROWS
    device: str = "auto"
    dtype: str = "float64"
    nan_policy: str = "error"
    delimiter: str = ","
    calibration: bool = True
    levels: tuple[float, ...] = DEFAULT_LEVELS
    pit_bins: int = DEFAULT_PIT_BINS
    uncertainty_bins: int = DEFAULT_UNCERTAINTY_BINS  # ENCE: bins of nearly equal count
    workers: int = 0  # scoring threads; 0: automatic (see ``run.workers.auto_workers``)
    # ``columns.by`` columns broken down by intervals: their edges, or a number of quantile bins
    intervals: Mapping[str, Sequence[float] | int] = field(default_factory=dict)
    recalibration: RecalibrationMap | None = None  # variance scales to apply before the floor
    # with ``columns.by``: more groups stop the run (None: as many as fit the memory budget)
    max_groups: int | None = None
    # M Gaussians per row (see ``state.mixture``): the mean and spread columns hold the members
    ensemble: bool = False
    member_weights: tuple[float, ...] | None = None  # one per member; None: uniform
    # M draws per row (see ``state.samples``): the mean columns hold the draws, no spread is read
    samples: bool = False
    # The metric families computed (``families``): for the whole input (None: all) and for
    # each group of ``columns.by`` (None: the cheap defaults among those)
    metrics: tuple[str, ...] | None = None
    group_metrics: tuple[str, ...] | None = None
    # A quantile model (``state.quantiles``): the levels τ of its ``columns.quantiles``
    quantiles: tuple[float, ...] | None = None
    # Bootstrap intervals of the headline metrics (``state.bootstrap``): their level (None:
    # none), the replicates B and the seed of their weights
    ci: float | None = None
    ci_replicates: int = DEFAULT_REPLICATES
    ci_seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.columns, ColumnSpec):
            raise OptionError("columns", f"must be a ColumnSpec. Got {self.columns!r}.")
        object.__setattr__(self, "levels", tuple(self.levels))
        _require(
            isinstance(self.eps, int | float) and math.isfinite(self.eps) and self.eps >= 0,
            "eps",
            "must be a finite number >= 0",
            self.eps,
        )
        _one_of("reduction", self.reduction, REDUCTIONS)
        _one_of("dtype", self.dtype, DTYPE_NAMES)
        _one_of("nan_policy", self.nan_policy, NAN_POLICIES)
        _require(
            _whole(self.chunk_size) and 1 <= self.chunk_size <= MAX_CHUNK_ROWS,
            "chunk_size",
            f"must be between 1 and {MAX_CHUNK_ROWS}",
            self.chunk_size,
        )
        _require(
            isinstance(self.delimiter, str)
            and len(self.delimiter) == 1
            and self.delimiter not in '\r\n"',
            "delimiter",
            "must be one character",
            self.delimiter,
        )
        _require(
            bool(self.levels)
            and all(isinstance(p, int | float) and 0 < p < 1 for p in self.levels),
            "levels",
            "must be numbers in (0, 1)",
            list(self.levels),
        )
        _require(
            _whole(self.workers) and self.workers >= 0,
            "workers",
            "must be 0 (automatic) or more",
            self.workers,
        )
        _check_member_weights(self.member_weights, self.ensemble)
        if self.samples:
            if self.ensemble:
                raise OptionError(
                    "samples", "cannot be combined with ensemble: draws are members already."
                )
            if self.quantiles is not None:
                raise OptionError(
                    "samples", "cannot be combined with quantiles: a row holds draws or quantiles."
                )
            # Each draw is a point mass: its spread is a zero variance, read from no column.
            spec = replace(self.columns, spread=(), spread_kind=Spread.VAR)
            object.__setattr__(self, "columns", spec)
        else:
            _require(bool(self.columns.spread), "columns.spread", "must name a column", ())
        if self.member_weights is not None:
            object.__setattr__(self, "member_weights", tuple(self.member_weights))
        object.__setattr__(self, "intervals", dict(self.intervals))
        if self.recalibration is not None:
            _check_recalibration(self.recalibration, self.eps)
        for name, edges in self.intervals.items():
            _check_intervals(name, edges, self.columns.by)
        _require(
            self.max_groups is None or (_whole(self.max_groups) and self.max_groups >= 1),
            "max_groups",
            "must be at least 1",
            self.max_groups,
        )
        _require(
            _whole(self.pit_bins) and 1 <= self.pit_bins <= MAX_PIT_BINS,
            "pit_bins",
            f"must be between 1 and {MAX_PIT_BINS}",
            self.pit_bins,
        )
        _require(
            _whole(self.uncertainty_bins) and 1 <= self.uncertainty_bins <= MAX_UNCERTAINTY_BINS,
            "uncertainty_bins",
            f"must be between 1 and {MAX_UNCERTAINTY_BINS}",
            self.uncertainty_bins,
        )
        _check_quantiles(self.quantiles, self.columns, self.ensemble)
        if self.quantiles is not None:
            object.__setattr__(self, "quantiles", tuple(self.quantiles))
        _check_ci(self)
        for name in ("metrics", "group_metrics"):
            object.__setattr__(self, name, parse_names(getattr(self, name)))
        self.selection  # noqa: B018 (validates the families' names)

    @property
    def selection(self) -> Selection:
        """The metric families computed for the whole input and for each group."""
        return select(
            self.metrics,
            self.group_metrics,
            calibration=self.calibration,
            ensemble=self.ensemble,
            samples=self.samples,
            quantiles=self.quantiles is not None,
            ci=self.ci is not None,
        )

    @property
    def per_row_members(self) -> bool:
        """Whether the mean columns hold several predictions per row (members or draws)."""
        return self.ensemble or self.samples

    @property
    def needed(self) -> Names:
        """Every column the reader must project: the columns', and a recalibration map's keys."""
        keys = self.recalibration.by if self.recalibration is not None else ()
        return tuple(dict.fromkeys(self.columns.needed + keys))

    def edges(self) -> dict[str, tuple[float, ...]]:
        """The interval edges of each interval column (quantile bins must be resolved first)."""
        return {
            name: e if isinstance(e, QuantileEdges) else tuple(e)
            for name, e in self.intervals.items()
            if not isinstance(e, int)
        }


# The command line's and config file's names of the column settings, as keyword arguments of the
# Python API (``score(frame, mean_col="mu", std_col="sd")``): the ColumnSpec role each sets.
COLUMN_SETTINGS = {
    "mean_col": "mean",
    "target_col": "target",
    "id_col": "id",
    "weight_col": "weight",
    "by": "by",
    "quantile_cols": "quantiles",
}
SPREAD_SETTINGS = {f"{kind.value}_col": kind for kind in Spread}  # var_col, std_col, log_var_col


def with_settings(options: ScoreOptions | None, settings: Mapping[str, Any]) -> ScoreOptions:
    """``options`` (default: the defaults) with keyword ``settings``: ScoreOptions' own
    parameters, or the column settings by their command-line names (``mean_col``, ``var_col``,
    ``std_col``, ``log_var_col``, ``target_col``, ``id_col``, ``weight_col``, ``by``,
    ``quantile_cols``), each one column name or a sequence of them, which override the
    ``columns`` given; ``samples`` may name the draws' column(s) (the mean columns, read as
    draws)."""
    base = options or ScoreOptions()
    columns: dict[str, Any] = {}
    spreads = {name: settings[name] for name in SPREAD_SETTINGS if name in settings}
    if len(spreads) > 1:
        raise OptionError(" and ".join(spreads), "contradict each other: give the spread one way.")
    for name, value in spreads.items():
        columns.update(spread=value, spread_kind=SPREAD_SETTINGS[name])
    columns.update(
        {role: settings[name] for name, role in COLUMN_SETTINGS.items() if name in settings}
    )
    rest = {
        key: value
        for key, value in settings.items()
        if key not in COLUMN_SETTINGS and key not in SPREAD_SETTINGS
    }
    if isinstance(rest.get("samples"), str | list | tuple):  # the draws' column names
        columns["mean"], rest["samples"] = rest["samples"], True
    spec = rest.pop("columns", base.columns)
    if columns:
        if not isinstance(spec, ColumnSpec):
            raise OptionError("columns", f"must be a ColumnSpec. Got {spec!r}.")
        spec = replace(spec, **columns)
    return replace(base, columns=spec, **rest)


def _check_recalibration(recalibration: RecalibrationMap, eps: float) -> None:
    """A map fitted with another ``eps`` would not minimise this NLL: refuse it."""
    if not isinstance(recalibration, RecalibrationMap):
        raise OptionError("recalibration", f"must be a RecalibrationMap. Got {recalibration!r}.")
    if recalibration.eps != eps:
        raise OptionError(
            "recalibration",
            f"was fitted with eps {recalibration.eps:g}, not {eps:g}: refit it, or score with "
            f"eps {recalibration.eps:g}.",
        )


def _check_ci(options: ScoreOptions) -> None:
    """A level in (0, 1), at least 2 replicates, a seed in [0, 2^63), and a density to
    bootstrap (a quantile model's metrics have no intervals)."""
    if options.ci is None:
        return
    level = options.ci
    _require(
        isinstance(level, int | float) and not isinstance(level, bool) and 0 < level < 1,
        "ci",
        "must be a level in (0, 1)",
        level,
    )
    _require(
        _whole(options.ci_replicates) and 2 <= options.ci_replicates <= MAX_REPLICATES,
        "ci_replicates",
        f"must be between 2 and {MAX_REPLICATES}",
        options.ci_replicates,
    )
    _require(
        _whole(options.ci_seed) and 0 <= options.ci_seed < 1 << 63,
        "ci_seed",
        "must be a whole number in [0, 2^63)",
        options.ci_seed,
    )
    if options.quantiles is not None:
        raise OptionError(
            "quantiles",
            "cannot be combined with --ci: a quantile model's metrics have no bootstrap "
            "intervals yet.",
        )


def _check_member_weights(weights: Sequence[float] | None, ensemble: bool) -> None:
    if weights is None:
        return
    values = list(weights)
    _require(ensemble, "member_weights", "are for ensembles (ensemble=True)", values)
    _require(
        bool(values)
        and all(
            isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
            for w in values
        ),
        "member_weights",
        "must be finite numbers >= 0",
        values,
    )
    _require(any(w > 0 for w in values), "member_weights", "must not all be zero", values)


def _check_quantiles(levels: Sequence[float] | None, columns: ColumnSpec, ensemble: bool) -> None:
    """Levels strictly increasing in (0, 1), with quantile columns: one list column, or one
    column per level."""
    if levels is None:
        _require(
            not columns.quantiles,
            "columns.quantiles",
            "are read only with quantiles (their levels)",
            list(columns.quantiles),
        )
        return
    values = list(levels)
    _require(
        bool(values)
        and all(isinstance(t, int | float) and not isinstance(t, bool) for t in values)
        and all(0 < t < 1 for t in values)
        and all(a < b for a, b in itertools.pairwise(values)),
        "quantiles",
        "must be levels strictly increasing in (0, 1)",
        values,
    )
    _require(not ensemble, "quantiles", "are for a quantile model, not an ensemble", values)
    names = columns.quantiles
    _require(bool(names), "columns.quantiles", "must name the quantile columns", names)
    _require(
        len(names) in (1, len(values)),
        "columns.quantiles",
        f"must be one list column or {len(values)} columns, one per level",
        list(names),
    )


def _check_intervals(name: str, edges: Sequence[float] | int, by: Names) -> None:
    parameter = f"intervals[{name!r}]"
    if name not in by:
        raise OptionError(parameter, f"names a column that is not in columns.by {list(by)}.")
    if isinstance(edges, int):
        _require(
            2 <= edges <= MAX_QUANTILE_BINS,
            parameter,
            f"must be 2 to {MAX_QUANTILE_BINS} quantile bins",
            edges,
        )
        return
    numbers = list(edges)
    _require(
        bool(numbers)
        and all(isinstance(e, int | float) and math.isfinite(e) for e in numbers)
        and all(a < b for a, b in itertools.pairwise(numbers)),
        parameter,
        "must be finite edges in increasing order",
        numbers,
    )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, parameter: str, expected: str, value: object) -> None:
    if not ok:
        raise OptionError(parameter, f"{expected}. Got {value!r} instead.")


def _one_of(parameter: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        choices = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"
        raise OptionError(parameter, f"must be {choices}. Got {value!r} instead.")
