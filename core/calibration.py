"""Calibration of the predicted variances, as sums over elements (mergeable, chunk-invariant).

With ``v = max(var, eps)``, ``σ = √v``, ``r = target - mean``, ``z = r/σ`` and one
``e = erf(z/√2)`` per element:

- ``u = (1 + e)/2`` is the PIT ``Φ(z)``, and ``a = |e|`` is the central level at whose interval
  boundary the element sits: it is inside the central p-interval (``|z| ≤ Φ⁻¹(0.5 + p/2)``,
  bounds inclusive, as uncertainty-toolbox) exactly when ``a ≤ p``.
- the calibration curve (levels k/99), the 99 score levels (j/100) and the PIT bins are uniform
  grids, so an element's bin is one ``ceil``/``floor``: O(1). The user's few levels use a
  ``bucketize`` over a handful of edges.
- the check score and the interval score averaged over levels are sums of per-bin sums of
  ``σ`` and ``r`` (or ``|r|``) times per-bin constants (prefix sums over the level grid), formed at
  the end. Both scores are continuous at bin edges, so the binning is exact for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gaussnll.core.report import AccuracySummary, CalibrationSummary
from gaussnll.core.summation import CompensatedSum

CURVE_STEPS = 99  # the curve's levels are k/99, k = 0..99: linspace(0, 1, 100)
SCORE_STEPS = 100  # the score levels are j/100, j = 1..99: linspace(0.01, 0.99, 99)
SCORE_LEVELS = SCORE_STEPS - 1
_INV_SQRT_2 = 1 / math.sqrt(2)
_INV_SQRT_PI = 1 / math.sqrt(math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

# Per-output float sums, in this order.
MOMENTS = ("z", "z2", "log_var", "var", "std", "crps", "abs_error", "squared_error", "error")


def central_quantiles(levels: Tensor) -> Tensor:
    """``Φ⁻¹(0.5 + p/2)``: the half-widths, in standard deviations, of central p-intervals."""
    return torch.special.ndtri(0.5 + levels / 2)


def central_quantile(level: float) -> float:
    """:func:`central_quantiles` of one level."""
    return float(central_quantiles(torch.tensor(level, dtype=torch.float64)))


class CalibrationState:
    """Per-output sums and counts from which every calibration number is derived.

    Float sums (float64, compensated): ``moments`` (``MOMENTS``), and per bin: ``σ`` and ``|r|``
    over the user's levels and over the score levels, ``σ`` and ``r`` over the PIT quantile grid.
    Counts (int64): the calibration curve, the user's levels, the PIT histogram.
    """

    def __init__(
        self, outputs: int, levels: Sequence[float], pit_bins: int, device: torch.device
    ) -> None:
        self.outputs = outputs
        self.levels = tuple(levels)
        self.pit_bins = pit_bins
        self._level_edges = torch.tensor(sorted(set(levels)), dtype=torch.float64, device=device)
        bins = len(self._level_edges) + 1
        self.moments = CompensatedSum((outputs, len(MOMENTS)), device)
        self.level_sums = CompensatedSum((outputs, 2, bins), device)
        self.score_sums = CompensatedSum((outputs, 2, SCORE_STEPS), device)
        self.check_sums = CompensatedSum((outputs, 2, SCORE_STEPS), device)
        counts = {"curve": CURVE_STEPS + 1, "level": bins, "pit": pit_bins}
        self.counts = {
            name: torch.zeros((outputs, size), dtype=torch.int64, device=device)
            for name, size in counts.items()
        }

    def update(self, mean: Tensor, target: Tensor, floored_var: Tensor) -> None:
        """Add a chunk: ``(rows, outputs)`` tensors, target and variance possibly of width 1."""
        error = target - mean
        var = floored_var.expand_as(error)
        std = torch.sqrt(var)
        z = error / std
        e = torch.special.erf(z * _INV_SQRT_2)
        a = e.abs()
        u = 0.5 + 0.5 * e
        density = _SQRT_2_OVER_PI * torch.exp(-0.5 * z * z)  # 2φ(z)
        crps = std * (z * e + density - _INV_SQRT_PI)
        abs_error = error.abs()
        moments = (z, z * z, torch.log(var), var, std, crps, abs_error, error * error, error)
        self.moments.add(torch.stack([_column_sums(m) for m in moments], dim=1))

        level_bin = torch.bucketize(a.to(torch.float64), self._level_edges)
        score_bin = _uniform_bin(a, SCORE_STEPS, ceil=True, offset=-1, top=SCORE_STEPS - 1)
        check_bin = _uniform_bin(u, SCORE_STEPS, ceil=False, offset=0, top=SCORE_STEPS - 1)
        sizes = self.level_sums.total.shape[-1]
        self.level_sums.add(_binned_sums(level_bin, sizes, std, abs_error))
        self.score_sums.add(_binned_sums(score_bin, SCORE_STEPS, std, abs_error))
        self.check_sums.add(_binned_sums(check_bin, SCORE_STEPS, std, error))
        curve_bin = _uniform_bin(a, CURVE_STEPS, ceil=True, offset=0, top=CURVE_STEPS)
        pit_bin = _uniform_bin(u, self.pit_bins, ceil=False, offset=0, top=self.pit_bins - 1)
        self.counts["curve"] += _binned(curve_bin, CURVE_STEPS + 1)
        self.counts["level"] += _binned(level_bin, sizes)
        self.counts["pit"] += _binned(pit_bin, self.pit_bins)

    def merge(self, other: CalibrationState) -> None:
        """Add another state of the same levels and PIT bins."""
        if (other.levels, other.pit_bins) != (self.levels, self.pit_bins):
            raise ValueError("cannot merge calibration states with different levels or PIT bins")
        for mine, theirs in (
            (self.moments, other.moments),
            (self.level_sums, other.level_sums),
            (self.score_sums, other.score_sums),
            (self.check_sums, other.check_sums),
        ):
            mine.merge(theirs)
        for name, counts in self.counts.items():
            counts += other.counts[name].to(counts.device)

    def summaries(
        self, rows: int, loss_sums: Sequence[float], full: bool
    ) -> tuple[Summaries, list[Summaries]]:
        """Calibration and accuracy over all outputs together, and for each output."""
        totals = _Totals(
            moments=self.moments.value().cpu(),
            level_sums=self.level_sums.value().cpu(),
            score_sums=self.score_sums.value().cpu(),
            check_sums=self.check_sums.value().cpu(),
            counts={name: counts.cpu() for name, counts in self.counts.items()},
        )
        per_output = [
            self._summarise(totals.select(d), rows, loss_sums[d], full) for d in range(self.outputs)
        ]
        overall = self._summarise(
            totals.select(slice(None)), rows * self.outputs, sum(loss_sums), full
        )
        return overall, per_output

    def _summarise(self, totals: _Totals, elements: int, loss_sum: float, full: bool) -> Summaries:
        mean = dict(zip(MOMENTS, (float(s) / elements for s in totals.moments), strict=True))
        curve_levels = [k / CURVE_STEPS for k in range(CURVE_STEPS + 1)]
        curve = (torch.cumsum(totals.counts["curve"], 0).double() / elements).tolist()
        gaps = [obs - exp for exp, obs in zip(curve_levels, curve, strict=True)]
        edges = self._level_edges.tolist()
        inside_by_edge = torch.cumsum(totals.counts["level"], 0).tolist()
        inside = [inside_by_edge[edges.index(level)] for level in self.levels]
        constant = _HALF_LOG_2PI if full else 0.0
        var_scale = mean["z2"]
        calibration = CalibrationSummary(
            levels=list(self.levels),
            coverage=[count / elements for count in inside],
            inside_counts=inside,
            interval_width=[2 * central_quantile(p) * mean["std"] for p in self.levels],
            interval_score=[
                _interval_score_at(p, edges.index(p), totals.level_sums) / elements
                for p in self.levels
            ],
            pit_bins=self.pit_bins,
            pit_counts=totals.counts["pit"].tolist(),
            mace=sum(abs(g) for g in gaps) / len(gaps),
            rmsce=math.sqrt(sum(g * g for g in gaps) / len(gaps)),
            miscalibration_area=area_between_curve_and_diagonal(curve_levels, curve),
            crps=mean["crps"],
            check_score=_check_score_sum(totals.check_sums) / SCORE_LEVELS / elements,
            interval_score_avg=_interval_score_sum(totals.score_sums) / SCORE_LEVELS / elements,
            nll_full=loss_sum / elements + _HALF_LOG_2PI,
            sharpness=math.sqrt(mean["var"]),
            z_mean=mean["z"],
            z_std=math.sqrt(max(mean["z2"] - mean["z"] * mean["z"], 0.0)),
            z2_mean=mean["z2"],
            var_scale=var_scale,
            nll_at_var_scale=(
                0.5 * (mean["log_var"] + math.log(var_scale) + 1) + constant
                if var_scale > 0
                else float("nan")
            ),
        )
        accuracy = AccuracySummary(
            mae=mean["abs_error"], rmse=math.sqrt(mean["squared_error"]), bias=mean["error"]
        )
        return calibration, accuracy


Summaries = tuple[CalibrationSummary, AccuracySummary]


@dataclass(frozen=True)
class _Totals:
    """A state's sums and counts read back to the CPU, for one output or added over outputs."""

    moments: Tensor
    level_sums: Tensor
    score_sums: Tensor
    check_sums: Tensor
    counts: dict[str, Tensor]

    def select(self, outputs: int | slice) -> _Totals:
        def pick(values: Tensor) -> Tensor:
            return values[outputs] if isinstance(outputs, int) else values[outputs].sum(dim=0)

        return _Totals(
            moments=pick(self.moments),
            level_sums=pick(self.level_sums),
            score_sums=pick(self.score_sums),
            check_sums=pick(self.check_sums),
            counts={name: pick(counts) for name, counts in self.counts.items()},
        )


def _interval_score_at(level: float, edge: int, level_sums: Tensor) -> float:
    """Σ over elements of the interval score at ``level``: ``σ (2q + (2/α)(|z| - q)₊)``.

    Elements in bins after ``edge`` are outside the interval; there ``σ(|z| - q) = |r| - qσ``.
    """
    std, abs_error = level_sums[0], level_sums[1]
    q, weight = central_quantile(level), 2 / (1 - level)
    outside = slice(edge + 1, None)
    return float(2 * q * std.sum() + weight * (abs_error[outside].sum() - q * std[outside].sum()))


def _interval_score_sum(score_sums: Tensor) -> float:
    """Σ over elements and the 99 score levels of the interval score, from per-bin sums.

    Bin ``b`` holds elements with ``b`` levels ``p_j = j/100`` strictly below their ``a``: they
    are outside those ``b`` intervals and pay ``(2/α_j)(|r| - q_j σ)`` for each.
    """
    std, abs_error = score_sums[0], score_sums[1]
    levels = torch.arange(1, SCORE_STEPS, dtype=torch.float64) / SCORE_STEPS
    q = central_quantiles(levels)
    weight = 2 / (1 - levels)
    zero = torch.zeros(1, dtype=torch.float64)
    weight_prefix = torch.cat([zero, torch.cumsum(weight, 0)])[:SCORE_STEPS]
    weighted_q_prefix = torch.cat([zero, torch.cumsum(weight * q, 0)])[:SCORE_STEPS]
    widths = 2 * q.sum() * std.sum()
    return float(widths + (weight_prefix * abs_error - weighted_q_prefix * std).sum())


def _check_score_sum(check_sums: Tensor) -> float:
    """Σ over elements and τ_k = k/100 of the pinball loss of the quantile ``mean + σ Φ⁻¹(τ_k)``.

    Per element: ``r Στ - σ Σζτ - r·n_above + σ·Σζ_above`` with ``ζ = Φ⁻¹(τ)``, where the
    ``n_above`` levels with ``τ > u`` (and their ``ζ`` sum) depend only on the element's bin.
    """
    std, error = check_sums[0], check_sums[1]
    tau = torch.arange(1, SCORE_STEPS, dtype=torch.float64) / SCORE_STEPS
    zeta = torch.special.ndtri(tau)
    bins = torch.arange(SCORE_STEPS)
    above = SCORE_LEVELS - bins
    zeta_above = torch.flip(torch.cumsum(torch.flip(zeta, [0]), 0), [0])
    zeta_above = torch.cat([zeta_above, torch.zeros(1, dtype=torch.float64)])
    per_bin = -error * above + std * zeta_above
    return float(error.sum() * tau.sum() - std.sum() * (zeta * tau).sum() + per_bin.sum())


def _uniform_bin(values: Tensor, steps: int, *, ceil: bool, offset: int, top: int) -> Tensor:
    """The bin of each value in [0, 1] on a grid of ``steps`` equal parts, clamped to [0, top].

    Clamped after the integer conversion, so even a NaN (from invalid input that is reported
    after the chunk) lands in a valid bin instead of breaking the accumulation.
    """
    scaled = values * steps
    scaled = torch.ceil(scaled) if ceil else torch.floor(scaled)
    if offset:
        scaled += offset
    return scaled.long().clamp_(0, top)


def _column_sums(values: Tensor) -> Tensor:
    return values.sum(dim=0, dtype=torch.float64)


def _flat_bins(bins: Tensor, size: int) -> Tensor:
    """Bin indices made distinct per output column, flattened for one ``bincount``."""
    outputs = bins.shape[1]
    if outputs == 1:
        return bins.reshape(-1)
    return (bins + torch.arange(outputs, device=bins.device) * size).reshape(-1)


def _scatter_sum(flat_bins: Tensor, values: Tensor, length: int) -> Tensor:
    """float64 sums of ``values`` per bin. ``scatter_add_`` into a fixed-size buffer: unlike
    ``bincount`` it never reads the data's maximum back, so CUDA does not synchronise."""
    sums = torch.zeros(length, dtype=torch.float64, device=flat_bins.device)
    return sums.scatter_add_(0, flat_bins, values.reshape(-1).to(torch.float64))


def _binned(bins: Tensor, size: int) -> Tensor:
    """Per output column, how many elements fell in each of ``size`` bins (int64)."""
    outputs = bins.shape[1]
    ones = torch.ones((), dtype=torch.float64, device=bins.device).expand(bins.numel())
    counts = _scatter_sum(_flat_bins(bins, size), ones, outputs * size)
    return counts.to(torch.int64).reshape(outputs, size)


def _binned_sums(bins: Tensor, size: int, first: Tensor, second: Tensor) -> Tensor:
    """Per output column and bin, the float64 sums of ``first`` and ``second``: (D, 2, size)."""
    outputs = bins.shape[1]
    flat = _flat_bins(bins, size)
    sums = [_scatter_sum(flat, values, outputs * size) for values in (first, second)]
    return torch.stack(sums, dim=0).reshape(2, outputs, size).transpose(0, 1)


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
