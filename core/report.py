"""The result of scoring: a plain record that renderers and the JSON output read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
        return asdict(self)


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

    @property
    def nll(self) -> float | None:
        """The reduced loss torch would return; None for ``reduction='none'``."""
        return {"mean": self.nll_mean, "sum": self.nll_sum}.get(self.reduction)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def to_frame(self) -> Any:
        """A one-row pandas DataFrame: every scalar of the report, calibration and accuracy
        included (per-level values as ``coverage@0.9`` columns)."""
        import pandas as pd

        row = {k: v for k, v in self.to_dict().items() if isinstance(v, (int, float, str))}
        for section in (self.calibration, self.accuracy):
            if section is None:
                continue
            for key, value in asdict(section).items():
                if isinstance(value, (int, float)):
                    row[key] = value
        if self.calibration is not None:
            cal = self.calibration
            for name in ("coverage", "interval_width", "interval_score"):
                for level, value in zip(cal.levels, getattr(cal, name), strict=True):
                    row[f"{name}@{level:g}"] = value
        return pd.DataFrame([row])

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``gaussnll score --json`` (schema ``gaussnll.score/1``)."""
        return {
            "schema": SCORE_SCHEMA,
            "path": self.path,
            "format": self.format,
            "rows": self.rows,
            "elements": self.elements,
            "reduction": self.reduction,
            "full": self.full,
            "eps": self.eps,
            "nll": self.nll,
            "nll_mean": self.nll_mean,
            "nll_sum": self.nll_sum,
            "calibration": asdict(self.calibration) if self.calibration else None,
            "accuracy": asdict(self.accuracy) if self.accuracy else None,
            "outputs": [output.to_dict() for output in self.outputs],
            "columns": self.columns,
            "nan_policy": self.nan_policy,
            "skipped_rows": self.skipped_rows,
            "skipped_reasons": self.skipped_reasons,
            "eps_floored": self.eps_floored,
            "device": self.device,
            "dtype": self.dtype,
            "chunk_size": self.chunk_size,
            "seconds": self.seconds,
            "rows_per_second": self.rows_per_second,
        }
