"""The result of scoring: a plain record that renderers and the JSON output read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

SCORE_SCHEMA = "gaussnll.score/1"


@dataclass(frozen=True)
class CalibrationSummary:
    """How well the predicted variances match the errors (definitions in the README)."""

    levels: list[float]
    coverage: list[float]
    inside_counts: list[int]
    interval_width: list[float]
    interval_score: list[float]
    pit_bins: int
    pit_counts: list[int]
    mace: float
    rmsce: float
    miscalibration_area: float
    crps: float
    check_score: float
    interval_score_avg: float
    nll_full: float
    sharpness: float
    z_mean: float
    z_std: float
    z2_mean: float
    var_scale: float
    nll_at_var_scale: float


@dataclass(frozen=True)
class AccuracySummary:
    """How close the predicted means are: errors are ``target - mean``."""

    mae: float
    rmse: float
    bias: float


@dataclass(frozen=True)
class OutputScore:
    """The scores of one output column (one of the ``D`` in a multi-output prediction)."""

    column: str
    elements: int
    nll_mean: float
    nll_sum: float
    calibration: CalibrationSummary | None = None
    accuracy: AccuracySummary | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "elements": self.elements,
            "nll_mean": self.nll_mean,
            "nll_sum": self.nll_sum,
            "calibration": _fields(self.calibration),
            "accuracy": _fields(self.accuracy),
        }


@dataclass(frozen=True)
class Report:
    """Everything ``gaussnll score`` reports; ``nll`` is the value under ``reduction``."""

    path: str
    format: str
    rows: int
    elements: int
    reduction: str
    full: bool
    eps: float
    nll_mean: float
    nll_sum: float
    outputs: tuple[OutputScore, ...]
    device: str
    dtype: str
    chunk_size: int
    seconds: float
    columns: dict[str, Any] = field(default_factory=dict)
    calibration: CalibrationSummary | None = None
    accuracy: AccuracySummary | None = None
    nan_policy: str = "error"
    skipped_rows: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    eps_floored: int = 0
    by: tuple[str, ...] = ()
    groups: tuple[GroupScore, ...] = ()
    groups_total: int = 0

    @property
    def nll(self) -> float | None:
        """The reduced loss torch would return; None for ``reduction='none'``."""
        return {"mean": self.nll_mean, "sum": self.nll_sum}.get(self.reduction)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def metric(self, name: str) -> float | None:
        """The value of a check's metric (``nll``, ``mace``, ``coverage@0.9``...), or None."""
        from gaussnll.core.checks import SCORE_METRICS

        return SCORE_METRICS.value(self.metric_view(), name)

    def metric_view(self) -> Any:
        """The report as the metric lookup reads its JSON dict, without building the dict (nor
        its groups')."""
        return _MetricView(self)

    def with_groups(self, sort_by: str | None = None, top: int | None = None) -> Report:
        """The report with its groups sorted by a metric (largest first; ``NAME:asc`` for
        smallest first; groups without the value last) instead of by key, and only the first
        ``top`` of them kept (``groups_total`` still counts them all)."""
        groups = list(self.groups)
        if sort_by is not None:
            metric, _, direction = sort_by.partition(":")
            sign = 1.0 if direction == "asc" else -1.0

            def order(group: GroupScore) -> tuple[bool, float]:
                value = group.report.metric(metric)
                missing = value is None or math.isnan(value)
                return missing, 0.0 if missing else sign * value

            groups.sort(key=order)
        return replace(self, groups=tuple(groups[:top] if top is not None else groups))

    def to_frame(self) -> Any:
        """A pandas DataFrame of every scalar of the report, calibration and accuracy included
        (per-level values as ``coverage@0.9`` columns): one row, or one row per group (its key
        columns first) when grouped."""
        import pandas as pd

        if not self.by:
            return pd.DataFrame([self._scalars()])
        return pd.DataFrame(
            [
                {**dict(zip(self.by, group.key, strict=True)), **group.report._scalars()}
                for group in self.groups
            ]
        )

    def _scalars(self) -> dict[str, Any]:
        row = {
            k: v for k, v in self.to_dict(groups=False).items() if isinstance(v, (int, float, str))
        }
        for section in (self.calibration, self.accuracy):
            if section is None:
                continue
            for key, value in _fields(section).items():
                if isinstance(value, (int, float)):
                    row[key] = value
        if self.calibration is not None:
            cal = self.calibration
            for name in ("coverage", "interval_width", "interval_score"):
                for level, value in zip(cal.levels, getattr(cal, name), strict=True):
                    row[f"{name}@{level:g}"] = value
        return row

    def to_dict(self, *, groups: bool = True) -> dict[str, Any]:
        """The JSON object of ``gaussnll score --json`` (schema ``gaussnll.score/1``);
        ``groups=False`` leaves the group entries out (to stream them one by one)."""
        scores = self.scores_dict()
        return {
            "schema": SCORE_SCHEMA,
            "path": self.path,
            "format": self.format,
            **{name: scores.pop(name) for name in ("rows", "elements")},
            "reduction": self.reduction,
            "full": self.full,
            "eps": self.eps,
            **scores,
            "outputs": [output.to_dict() for output in self.outputs],
            "columns": self.columns,
            "nan_policy": self.nan_policy,
            "device": self.device,
            "dtype": self.dtype,
            "chunk_size": self.chunk_size,
            "seconds": self.seconds,
            "rows_per_second": self.rows_per_second,
            **self._groups_dict(groups),
        }

    def scores_dict(self) -> dict[str, Any]:
        """The scores a whole report and a group's JSON entry share."""
        return {
            "rows": self.rows,
            "elements": self.elements,
            "nll": self.nll,
            "nll_mean": self.nll_mean,
            "nll_sum": self.nll_sum,
            "calibration": _fields(self.calibration),
            "accuracy": _fields(self.accuracy),
            "skipped_rows": self.skipped_rows,
            "skipped_reasons": self.skipped_reasons,
            "eps_floored": self.eps_floored,
        }

    def _groups_dict(self, entries: bool) -> dict[str, Any]:
        if not self.by:
            return {}
        listed = [group.to_dict(self.by) for group in self.groups] if entries else []
        return {"by": list(self.by), "groups_total": self.groups_total, "groups": listed}


def _fields(section: Any) -> dict[str, Any] | None:
    """A summary dataclass as a dict (shallow: its fields are numbers and lists of them)."""
    return None if section is None else dict(vars(section))


@dataclass(frozen=True)
class GroupScore:
    """One group of a ``--by`` breakdown: its key values and its report, built on demand from
    ``reports[index]`` (so many groups hold no Report objects)."""

    key: tuple[Any, ...]
    reports: Sequence[Report] = field(repr=False)
    index: int = 0

    @property
    def report(self) -> Report:
        return self.reports[self.index]

    def to_dict(self, by: tuple[str, ...]) -> dict[str, Any]:
        """The group's JSON entry: its key and scores; per output only with several."""
        report = self.report  # built on each access: once here
        key = {name: _plain(value) for name, value in zip(by, self.key, strict=True)}
        entry = {"key": key, **report.scores_dict()}
        if len(report.outputs) > 1:
            entry["outputs"] = [output.to_dict() for output in report.outputs]
        return entry

    def key_cells(self) -> list[str]:
        """The key values as text, ``null`` for a missing one."""
        return ["null" if value is None else str(value) for value in self.key]

    def label(self) -> str:
        return ", ".join(self.key_cells())


def _plain(value: Any) -> Any:
    """A key value as JSON can hold it (dates and other values as text)."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


class _MetricView:
    """A report seen as its JSON dict by the metric lookup, without building the dict."""

    def __init__(self, report: Report) -> None:
        self._report = report

    def get(self, name: str) -> Any:
        if name in ("calibration", "accuracy"):
            section = getattr(self._report, name)
            return None if section is None else vars(section)
        return getattr(self._report, name, None)
