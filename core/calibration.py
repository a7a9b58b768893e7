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

import numpy as np
import torch
from torch import Tensor

from gaussnll.core.binning import EdgeBins, uniform_bins
from gaussnll.core.report import AccuracySummary, CalibrationSummary
from gaussnll.core.sinks import Sums

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


class CalibrationState:
    """Per-output sums and counts from which every calibration number is derived, for the
    whole input or per group (see ``sinks``).

    Float sums (float64): ``moments`` (``MOMENTS``), and per bin: ``σ`` and ``|r|`` over the
    user's levels and over the score levels, ``σ`` and ``r`` over the PIT quantile grid.
    Counts (int64): the calibration curve, the user's levels, the PIT histogram.
    """

    def __init__(
        self,
        outputs: int,
        levels: Sequence[float],
        pit_bins: int,
        device: torch.device,
        *,
        grouped: bool = False,
    ) -> None:
        self.outputs = outputs
        self.levels = tuple(levels)
        self.pit_bins = pit_bins
        self._level_edges = sorted(set(levels))
        self._level_bins = EdgeBins(self._level_edges, device)
        bins = len(self._level_edges) + 1
        sums = {
            "moments": len(MOMENTS),
            "level_std": bins,
            "level_abs_error": bins,
            "score_std": SCORE_STEPS,
            "score_abs_error": SCORE_STEPS,
            "check_std": SCORE_STEPS,
            "check_error": SCORE_STEPS,
        }
        counts = {"curve": CURVE_STEPS + 1, "level": bins, "pit": pit_bins}
        self.sinks = {
            **{name: Sums((outputs, size), device, grouped=grouped) for name, size in sums.items()},
            **{
                name: Sums((outputs, size), device, integer=True, grouped=grouped)
                for name, size in counts.items()
            },
        }

    def update(
        self, mean: Tensor, target: Tensor, floored_var: Tensor, group: Tensor | None = None
    ) -> None:
        """Add a chunk: ``(rows, outputs)`` tensors, target and variance possibly of width 1;
        ``group``: each row's group (grouped states only)."""
        error = target - mean
        var = floored_var.expand_as(error)
        std = torch.sqrt(var)
        z = error / std
        z2 = z * z
        e = torch.special.erf(z * _INV_SQRT_2)
        a = e.abs()
        u = e * 0.5 + 0.5
        density = torch.exp(z2 * -0.5).mul_(_SQRT_2_OVER_PI)  # 2φ(z)
        crps = (z * e).add_(density).sub_(_INV_SQRT_PI).mul_(std)
        abs_error = error.abs()
        moments = (z, z2, torch.log(var), var, std, crps, abs_error, error * error, error)
        self.sinks["moments"].add_columns(moments, group)

        level_bin = self._level_bins(a)
        score_bin = uniform_bins(a, SCORE_STEPS, ceil=True, offset=-1, top=SCORE_STEPS - 1)
        check_bin = uniform_bins(u, SCORE_STEPS, ceil=False, offset=0, top=SCORE_STEPS - 1)
        curve_bin = uniform_bins(a, CURVE_STEPS, ceil=True, offset=0, top=CURVE_STEPS)
        pit_bin = uniform_bins(u, self.pit_bins, ceil=False, offset=0, top=self.pit_bins - 1)
        for name, bins, values in (
            ("level_std", level_bin, std),
            ("level_abs_error", level_bin, abs_error),
            ("score_std", score_bin, std),
            ("score_abs_error", score_bin, abs_error),
            ("check_std", check_bin, std),
            ("check_error", check_bin, error),
            ("curve", curve_bin, None),
            ("level", level_bin, None),
            ("pit", pit_bin, None),
        ):
            self.sinks[name].add_binned(bins, values, group)

    def reserve(self, groups: int) -> None:
        """Make room for ``groups`` groups (grouped states only)."""
        for sink in self.sinks.values():
            sink.reserve(groups)

    def merge(self, other: CalibrationState, mapping: Tensor | None = None) -> None:
        """Add another state of the same levels and PIT bins (grouped: its group ``i`` into
        this state's group ``mapping[i]``)."""
        if (other.levels, other.pit_bins) != (self.levels, self.pit_bins):
            raise ValueError("cannot merge calibration states with different levels or PIT bins")
        for name, sink in self.sinks.items():
            sink.merge(other.sinks[name], mapping)

    def totals(self, by_group: bool = False) -> dict[str, Tensor]:
        """Every sum and count on the CPU, ``(1 or groups, outputs, ...)``."""
        return {name: sink.value(by_group).cpu() for name, sink in self.sinks.items()}

    def summaries(
        self, totals: dict[str, Tensor], elements: Tensor, loss_sums: Tensor, full: bool
    ) -> SummaryTable:
        """Calibration and accuracy of each row of a batch of ``totals`` (each ``(batch, ...)``,
        e.g. groups, outputs, or both flattened), with the batch's element counts and loss sums
        (without the constant). Vectorised over the batch: one pass for 10^5 groups."""
        elements = elements.to(torch.float64)
        mean = {name: totals["moments"][:, k].double() / elements for k, name in enumerate(MOMENTS)}
        curve_levels = torch.arange(CURVE_STEPS + 1, dtype=torch.float64) / CURVE_STEPS
        curve = torch.cumsum(totals["curve"], dim=1).double() / elements.unsqueeze(1)
        gaps = curve - curve_levels
        columns = [self._level_edges.index(level) for level in self.levels]
        inside = torch.cumsum(totals["level"], dim=1)[:, columns]
        quantiles = central_quantiles(torch.tensor(self.levels, dtype=torch.float64))
        var_scale = mean["z2"]
        log_scale = torch.where(var_scale > 0, torch.log(var_scale), torch.nan)
        constant = _HALF_LOG_2PI if full else 0.0
        numbers = {
            "coverage": inside.double() / elements.unsqueeze(1),
            "inside_counts": inside,
            "interval_width": 2 * quantiles * mean["std"].unsqueeze(1),
            "interval_score": _interval_scores_at(self.levels, columns, totals)
            / elements.unsqueeze(1),
            "pit_counts": totals["pit"],
            "mace": gaps.abs().mean(dim=1),
            "rmsce": torch.sqrt((gaps * gaps).mean(dim=1)),
            "miscalibration_area": area_between_curve_and_diagonal(curve_levels, curve),
            "crps": mean["crps"],
            "check_score": _check_score_sums(totals) / SCORE_LEVELS / elements,
            "interval_score_avg": _interval_score_sums(totals) / SCORE_LEVELS / elements,
            "nll_full": loss_sums / elements + _HALF_LOG_2PI,
            "sharpness": torch.sqrt(mean["var"]),
            "z_mean": mean["z"],
            "z_std": torch.sqrt(torch.clamp(mean["z2"] - mean["z"] ** 2, min=0.0)),
            "z2_mean": mean["z2"],
            "var_scale": var_scale,
            "nll_at_var_scale": 0.5 * (mean["log_var"] + log_scale + 1) + constant,
            "mae": mean["abs_error"],
            "rmse": torch.sqrt(mean["squared_error"]),
            "bias": mean["error"],
        }
        columns = {name: values.numpy() for name, values in numbers.items()}
        return SummaryTable(self.levels, self.pit_bins, columns)


Summaries = tuple[CalibrationSummary, AccuracySummary]
_ACCURACY = ("mae", "rmse", "bias")


@dataclass(frozen=True)
class SummaryTable:
    """The calibration and accuracy summaries of a batch (e.g. groups), stored by column: a
    row's dataclasses are built only when asked for, so 10^5 groups hold arrays of numbers,
    not 10^5 objects."""

    levels: tuple[float, ...]
    pit_bins: int
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["mae"])

    def row(self, index: int) -> Summaries:
        values = {name: column[index].tolist() for name, column in self.columns.items()}
        accuracy = AccuracySummary(**{name: values.pop(name) for name in _ACCURACY})
        calibration = CalibrationSummary(levels=list(self.levels), pit_bins=self.pit_bins, **values)
        return calibration, accuracy

    @classmethod
    def concatenated(cls, tables: Sequence[SummaryTable]) -> SummaryTable:
        """The rows of ``tables`` (of the same levels and PIT bins), in order."""
        first = tables[0]
        columns = {
            name: np.concatenate([t.columns[name] for t in tables]) for name in first.columns
        }
        return cls(first.levels, first.pit_bins, columns)


def _interval_scores_at(
    levels: Sequence[float], columns: list[int], totals: dict[str, Tensor]
) -> Tensor:
    """Σ over elements of the interval score at each level: ``σ (2q + (2/α)(|z| - q)₊)``,
    ``(batch, levels)``.

    Elements in bins after a level's edge are outside its interval; there ``σ(|z| - q)`` is
    ``|r| - qσ``, so suffix sums of the per-bin ``σ`` and ``|r|`` give every level at once.
    """
    std, abs_error = totals["level_std"], totals["level_abs_error"]
    q = central_quantiles(torch.tensor(levels, dtype=torch.float64))
    weight = 2 / (1 - torch.tensor(levels, dtype=torch.float64))
    outside = [int(column) + 1 for column in columns]
    std_outside = _suffix_sums(std)[:, outside]
    abs_outside = _suffix_sums(abs_error)[:, outside]
    return 2 * q * std.sum(dim=1, keepdim=True) + weight * (abs_outside - q * std_outside)


def _suffix_sums(values: Tensor) -> Tensor:
    """``out[:, k] = values[:, k:].sum(1)``, with a last column of zeros (``k`` = bins)."""
    suffix = torch.flip(torch.cumsum(torch.flip(values, [1]), dim=1), [1])
    return torch.cat([suffix, torch.zeros_like(suffix[:, :1])], dim=1)


def _interval_score_sums(totals: dict[str, Tensor]) -> Tensor:
    """Σ over elements and the 99 score levels of the interval score, from per-bin sums.

    Bin ``b`` holds elements with ``b`` levels ``p_j = j/100`` strictly below their ``a``: they
    are outside those ``b`` intervals and pay ``(2/α_j)(|r| - q_j σ)`` for each.
    """
    std, abs_error = totals["score_std"], totals["score_abs_error"]
    levels = torch.arange(1, SCORE_STEPS, dtype=torch.float64) / SCORE_STEPS
    q = central_quantiles(levels)
    weight = 2 / (1 - levels)
    zero = torch.zeros(1, dtype=torch.float64)
    weight_prefix = torch.cat([zero, torch.cumsum(weight, 0)])[:SCORE_STEPS]
    weighted_q_prefix = torch.cat([zero, torch.cumsum(weight * q, 0)])[:SCORE_STEPS]
    widths = 2 * q.sum() * std.sum(dim=1)
    return widths + (weight_prefix * abs_error - weighted_q_prefix * std).sum(dim=1)


def _check_score_sums(totals: dict[str, Tensor]) -> Tensor:
    """Σ over elements and τ_k = k/100 of the pinball loss of the quantile ``mean + σ Φ⁻¹(τ_k)``.

    Per element: ``r Στ - σ Σζτ - r·n_above + σ·Σζ_above`` with ``ζ = Φ⁻¹(τ)``, where the
    ``n_above`` levels with ``τ > u`` (and their ``ζ`` sum) depend only on the element's bin.
    """
    std, error = totals["check_std"], totals["check_error"]
    tau = torch.arange(1, SCORE_STEPS, dtype=torch.float64) / SCORE_STEPS
    zeta = torch.special.ndtri(tau)
    above = SCORE_LEVELS - torch.arange(SCORE_STEPS)
    zeta_above = torch.flip(torch.cumsum(torch.flip(zeta, [0]), 0), [0])
    zeta_above = torch.cat([zeta_above, torch.zeros(1, dtype=torch.float64)])
    per_bin = -error * above + std * zeta_above
    return error.sum(dim=1) * tau.sum() - std.sum(dim=1) * (zeta * tau).sum() + per_bin.sum(dim=1)


def area_between_curve_and_diagonal(expected: Tensor, observed: Tensor) -> Tensor:
    """Area between each piecewise-linear curve (expected, observed[b]) and the diagonal:
    ``expected`` is ``(points,)``, ``observed`` is ``(batch, points)``; returns ``(batch,)``.

    Segments that cross the diagonal contribute their two triangles, so this equals the polygon
    area uncertainty-toolbox's ``miscalibration_area`` traces.
    """
    gaps = observed - expected
    d0, d1 = gaps[:, :-1], gaps[:, 1:]
    width = expected[1:] - expected[:-1]
    spread = d0.abs() + d1.abs()
    same_side = width * spread / 2
    crossing = width * (d0 * d0 + d1 * d1) / (2 * torch.where(spread > 0, spread, 1.0))
    return torch.where(d0 * d1 >= 0, same_side, crossing).sum(dim=1)
