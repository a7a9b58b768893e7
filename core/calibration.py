"""Calibration of the predicted variances, as sums over elements (mergeable, chunk-invariant).

With ``v = max(var, eps)``, ``σ = √v``, ``r = target - mean`` and ``z = r/σ``:

- interval coverage at level p counts ``|z| ≤ q_p`` with ``q_p = Φ⁻¹(0.5 + p/2)`` (the central
  interval, bounds inclusive, as uncertainty-toolbox); the calibration curve is the same count at
  ``linspace(0, 1, 100)``; the PIT histogram counts ``Φ(z)`` in equal bins. All are integer counts
  from one ``bucketize`` per element.
- the check score over ``τ ∈ linspace(0.01, 0.99, 99)`` and the interval score over the same
  central levels have closed forms per element through one sorted-grid lookup and prefix sums:
  O(log L) per element, not O(L).
- everything else is a plain float64 sum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gaussnll.core.report import AccuracySummary, CalibrationSummary
from gaussnll.core.summation import CompensatedSum

DEFAULT_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)
DEFAULT_PIT_BINS = 20
CURVE_POINTS = 100
SCORE_LEVELS = 99
_INV_SQRT_PI = 1 / math.sqrt(math.pi)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)

# The float sums kept per output, in this order; interval scores per level follow them.
SUM_FIELDS = (
    "z",
    "z2",
    "log_var",
    "var",
    "std",
    "crps",
    "check",
    "interval",
    "abs_error",
    "squared_error",
    "error",
)


def central_quantiles(levels: Tensor) -> Tensor:
    """``Φ⁻¹(0.5 + p/2)``: the half-width, in standard deviations, of the central p-interval."""
    return torch.special.ndtri(0.5 + levels / 2)


@dataclass(frozen=True)
class CalibrationGrid:
    """The fixed thresholds every element is compared with, built once per run on the device."""

    levels: tuple[float, ...]
    pit_bins: int
    coverage_levels: Tensor  # sorted union of the curve levels and the user's levels (float64)
    coverage_edges: Tensor  # their central quantiles
    level_quantiles: Tensor  # the user's levels' central quantiles, in the user's order
    pit_edges: Tensor  # Φ⁻¹(k / bins), k = 1 .. bins-1
    check_edges: Tensor  # Φ⁻¹(τ) for τ in SCORE_LEVELS levels
    check_edge_prefix: Tensor  # prefix sums of check_edges, leading 0
    check_tau_sum: float
    check_edge_tau_sum: float
    interval_edges: Tensor  # central quantiles of the SCORE_LEVELS levels
    interval_weight_prefix: Tensor  # prefix sums of 2/α
    interval_weighted_edge_prefix: Tensor  # prefix sums of 2q/α
    interval_edge_sum: float

    @classmethod
    def build(
        cls, levels: Sequence[float], pit_bins: int, device: torch.device, dtype: torch.dtype
    ) -> CalibrationGrid:
        f64 = torch.float64
        curve = torch.linspace(0, 1, CURVE_POINTS, dtype=f64)
        user = torch.tensor(list(levels), dtype=f64)
        coverage_levels = torch.unique(torch.cat([curve, user]))
        tau = torch.linspace(0.01, 0.99, SCORE_LEVELS, dtype=f64)
        check_edges = torch.special.ndtri(tau)
        interval_edges = central_quantiles(tau)
        weights = 2 / (1 - tau)

        def on_device(values: Tensor, as_dtype: torch.dtype = dtype) -> Tensor:
            return values.to(device=device, dtype=as_dtype)

        def prefix(values: Tensor) -> Tensor:
            return on_device(torch.cat([torch.zeros(1, dtype=f64), torch.cumsum(values, 0)]))

        return cls(
            levels=tuple(levels),
            pit_bins=pit_bins,
            coverage_levels=coverage_levels,
            coverage_edges=on_device(central_quantiles(coverage_levels)),
            level_quantiles=on_device(central_quantiles(user)),
            pit_edges=on_device(
                torch.special.ndtri(torch.arange(1, pit_bins, dtype=f64) / pit_bins)
            ),
            check_edges=on_device(check_edges),
            check_edge_prefix=prefix(check_edges),
            check_tau_sum=float(tau.sum()),
            check_edge_tau_sum=float((check_edges * tau).sum()),
            interval_edges=on_device(interval_edges),
            interval_weight_prefix=prefix(weights),
            interval_weighted_edge_prefix=prefix(weights * interval_edges),
            interval_edge_sum=float(interval_edges.sum()),
        )

    def level_weights(self) -> Tensor:
        """``2/α`` for the user's levels, α = 1 - p."""
        levels = torch.tensor(self.levels, dtype=self.level_quantiles.dtype)
        return (2 / (1 - levels)).to(self.level_quantiles.device)


class CalibrationState:
    """Per-output float64 sums (``SUM_FIELDS`` then one interval score per level) and counts."""

    def __init__(self, outputs: int, grid: CalibrationGrid, device: torch.device) -> None:
        self.grid = grid
        self.outputs = outputs
        self.sums = CompensatedSum((outputs, len(SUM_FIELDS) + len(grid.levels)), device)
        self.coverage_counts = torch.zeros(
            (outputs, len(grid.coverage_edges) + 1), dtype=torch.int64, device=device
        )
        self.pit_counts = torch.zeros((outputs, grid.pit_bins), dtype=torch.int64, device=device)
        self._level_weights = grid.level_weights()

    def update(self, mean: Tensor, target: Tensor, floored_var: Tensor) -> None:
        """Add a chunk: ``(rows, outputs)`` tensors, target and variance possibly of width 1."""
        grid = self.grid
        error = target - mean
        var = floored_var.expand_as(error)
        std = torch.sqrt(var)
        z = error / std
        abs_z = z.abs()
        crps = std * (
            z * (2 * torch.special.ndtr(z) - 1)
            + 2 * _INV_SQRT_2PI * torch.exp(-0.5 * z * z)
            - _INV_SQRT_PI
        )
        check = std * _check_sum(z, grid) / SCORE_LEVELS
        interval = std * _interval_sum(abs_z, grid) / SCORE_LEVELS
        per_level = std.unsqueeze(-1) * (
            2 * grid.level_quantiles
            + self._level_weights * (abs_z.unsqueeze(-1) - grid.level_quantiles).clamp(min=0)
        )
        fields = (
            z,
            z * z,
            torch.log(var),
            var,
            std,
            crps,
            check,
            interval,
            error.abs(),
            error * error,
            error,
        )
        chunk = torch.stack([f.sum(dim=0, dtype=torch.float64) for f in fields], dim=1)
        levels = per_level.sum(dim=0, dtype=torch.float64)
        self.sums.add(torch.cat([chunk, levels], dim=1))
        self.coverage_counts += _counts(
            torch.bucketize(abs_z, grid.coverage_edges), self.coverage_counts.shape[1]
        )
        self.pit_counts += _counts(torch.bucketize(z, grid.pit_edges, right=True), grid.pit_bins)

    def merge(self, other: CalibrationState) -> None:
        """Add another state built on the same grid."""
        if other.grid.levels != self.grid.levels or other.grid.pit_bins != self.grid.pit_bins:
            raise ValueError("cannot merge calibration states with different levels or PIT bins")
        self.sums.merge(other.sums)
        self.coverage_counts += other.coverage_counts.to(self.coverage_counts.device)
        self.pit_counts += other.pit_counts.to(self.pit_counts.device)


def _check_sum(z: Tensor, grid: CalibrationGrid) -> Tensor:
    """Σ over τ of the pinball loss of z against Φ⁻¹(τ), in units of σ (closed form)."""
    at_or_below = torch.bucketize(z, grid.check_edges, right=True)
    above = SCORE_LEVELS - at_or_below
    edges_above = grid.check_edge_prefix[-1] - grid.check_edge_prefix[at_or_below]
    return z * grid.check_tau_sum - grid.check_edge_tau_sum - z * above + edges_above


def _interval_sum(abs_z: Tensor, grid: CalibrationGrid) -> Tensor:
    """Σ over levels of the interval score of z, in units of σ (closed form)."""
    inside_of = torch.bucketize(abs_z, grid.interval_edges)
    return (
        2 * grid.interval_edge_sum
        + abs_z * grid.interval_weight_prefix[inside_of]
        - grid.interval_weighted_edge_prefix[inside_of]
    )


def _counts(bins: Tensor, size: int) -> Tensor:
    """Per output column, how many elements fell in each of ``size`` bins."""
    outputs = bins.shape[1]
    offsets = torch.arange(outputs, device=bins.device) * size
    flat = torch.bincount((bins + offsets).reshape(-1), minlength=outputs * size)
    return flat.reshape(outputs, size)


def summarise(
    sums: Sequence[float],
    coverage_counts: Sequence[int],
    pit_counts: Sequence[int],
    elements: int,
    loss_sum: float,
    full: bool,
    grid: CalibrationGrid,
) -> tuple[CalibrationSummary, AccuracySummary]:
    """Derive every reported number from one output's (or all outputs' added) sums and counts."""
    mean = dict(zip(SUM_FIELDS, (s / elements for s in sums), strict=False))
    per_level = [s / elements for s in sums[len(SUM_FIELDS) :]]
    inside = torch.cumsum(torch.tensor(coverage_counts, dtype=torch.int64), 0)[:-1].tolist()
    inside_at = dict(zip(grid.coverage_levels.tolist(), inside, strict=True))
    fraction_at = {level: count / elements for level, count in inside_at.items()}
    curve_levels = torch.linspace(0, 1, CURVE_POINTS, dtype=torch.float64).tolist()
    curve = [fraction_at[level] for level in curve_levels]
    gaps = [obs - exp for exp, obs in zip(curve_levels, curve, strict=True)]
    constant = 0.5 * math.log(2 * math.pi)
    var_scale = mean["z2"]
    z_var = max(mean["z2"] - mean["z"] ** 2, 0.0)
    nll = loss_sum / elements
    calibration = CalibrationSummary(
        levels=list(grid.levels),
        coverage=[fraction_at[level] for level in grid.levels],
        inside_counts=[inside_at[level] for level in grid.levels],
        interval_width=[2 * q * mean["std"] for q in grid.level_quantiles.tolist()],
        interval_score=per_level,
        pit_bins=grid.pit_bins,
        pit_counts=list(pit_counts),
        mace=sum(abs(g) for g in gaps) / len(gaps),
        rmsce=math.sqrt(sum(g * g for g in gaps) / len(gaps)),
        miscalibration_area=area_between_curve_and_diagonal(curve_levels, curve),
        crps=mean["crps"],
        check_score=mean["check"],
        interval_score_avg=mean["interval"],
        nll_full=nll + constant,
        sharpness=math.sqrt(mean["var"]),
        z_mean=mean["z"],
        z_std=math.sqrt(z_var),
        z2_mean=mean["z2"],
        var_scale=var_scale,
        nll_at_var_scale=0.5 * (mean["log_var"] + math.log(var_scale) + 1)
        + (constant if full else 0.0)
        if var_scale > 0
        else float("nan"),
    )
    accuracy = AccuracySummary(
        mae=mean["abs_error"], rmse=math.sqrt(mean["squared_error"]), bias=mean["error"]
    )
    return calibration, accuracy


def area_between_curve_and_diagonal(expected: Sequence[float], observed: Sequence[float]) -> float:
    """Area between the piecewise-linear curve (expected, observed) and the diagonal.

    Segments that cross the diagonal contribute their two triangles, so this equals the polygon
    area uncertainty-toolbox's ``miscalibration_area`` traces.
    """
    area = 0.0
    for x0, x1, y0, y1 in zip(expected, expected[1:], observed, observed[1:], strict=False):
        d0, d1, width = y0 - x0, y1 - x1, x1 - x0
        if d0 * d1 >= 0:
            area += width * (abs(d0) + abs(d1)) / 2
        else:
            area += width * (d0 * d0 + d1 * d1) / (2 * (abs(d0) + abs(d1)))
    return area
