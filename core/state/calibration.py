"""Calibration of the predicted variances, as sums over elements (mergeable, chunk-invariant).

Two variances per element. ``v = max(var, eps)`` is torch's floor for the loss, a training-
stability clamp: the NLL's statistics use it (``z`` moments, ``var_scale`` and
``nll_at_var_scale``). Every scoring rule uses the variance as given, ``s = var`` (after a
standard deviation is squared or a log-variance exponentiated): CRPS, PIT, coverage, the
calibration curve, check and interval scores, interval widths and sharpness. With ``σ = √s``,
``r = target - mean``, ``z = r/σ`` and one ``e = erf(z/√2)`` per element:

- ``u = (1 + e)/2`` is the PIT ``Φ(z)``, and ``a = |e|`` is the central level at whose interval
  boundary the element sits: it is inside the central p-interval (``|z| ≤ Φ⁻¹(0.5 + p/2)``,
  bounds inclusive, as uncertainty-toolbox) exactly when ``a ≤ p``.
- ``s = 0`` is a point mass at the mean, whose CDF is a step there: ``z`` is its limit, ``±∞``
  for ``r ≠ 0`` (PIT 0 below the mean, 1 above) and 0 for ``r = 0`` (PIT ½, the midpoint of the
  step). So a point mass on the target is inside every central interval and one off it outside
  every interval with ``p < 1``; its CRPS is ``|r|``, its interval width 0. The 0/0 is resolved
  explicitly (``_point_mass_limits``), so no NaN reaches the sums.
- ``e`` is looked up once, exactly, among the edges of every grid (``binning.Cells``): the
  calibration curve's levels (k/99), the 99 score levels (j/100), the user's levels, the PIT
  histogram's and the quantile grid's bins of ``u``. Counts are kept per cell (per group: per
  coarser cell, among the edges of the grids that count), and the sums of ``σ`` and ``r`` per
  coarser cell, among the edges of the grids that weigh them (score, user and quantile): half
  as many cells each, which keeps the per-group state small. Each grid's bins are a fixed
  function of the cell, and ``|r|`` is ``r`` times the cell's sign, applied to the per-cell
  sums at the end.
- the check score and the interval score averaged over levels are sums of per-bin sums of
  ``σ`` and ``r`` (or ``|r|``) times per-bin constants (prefix sums over the level grid), formed at
  the end. Both scores are continuous at bin edges, so the binning is exact for them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from gaussnll.core.loss import NllTerms
from gaussnll.core.state.binning import Cells, Grid, LevelGrid, QuantileGrid, folded
from gaussnll.core.state.sinks import Binned, Sums, weighted

CURVE_STEPS = 99  # the curve's levels are k/99, k = 0..99: linspace(0, 1, 100)
SCORE_STEPS = 100  # the score levels are j/100, j = 1..99: linspace(0.01, 0.99, 99)
SCORE_LEVELS = SCORE_STEPS - 1
_INV_SQRT_2 = 1 / math.sqrt(2)
_INV_SQRT_PI = 1 / math.sqrt(math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

# Per-output float sums over elements, in this order: ``z``, ``z2`` and ``log_var`` of the
# floored ``v``, ``var`` as given. The sums of σ and r are those of the per-cell sums over all
# cells. The CRPS,
# ``σ [z (2Φ(z) - 1) + 2φ(z) - 1/√π] = r·e + √(2/π)·σ·exp(-z²/2) - σ/√π``, is formed from
# ``error_erf`` (r·e), ``std_density`` (σ·exp(-z²/2)) and the sum of σ at the end.
MOMENTS = (
    "z",
    "z2",
    "log_var",
    "var",
    "abs_error",
    "error_erf",
    "std_density",
    "squared_error",
)


def central_quantiles(levels: Tensor) -> Tensor:
    """``Φ⁻¹(0.5 + p/2)``: the half-widths, in standard deviations, of central p-intervals."""
    return torch.special.ndtri(0.5 + levels / 2)


class _Slots:
    """Named consecutive ranges of the last axis of one sum (``sizes``: name → length)."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        starts = itertools.accumulate(sizes.values(), initial=0)
        self.offset = dict(zip(sizes, starts, strict=False))  # ``starts`` has one more
        self.total = sum(sizes.values())

    def named(self, sums: Sums, by_group: bool) -> dict[str, Tensor]:
        """Each named range of ``sums`` (made by ``sums()``), on the CPU."""
        ranges = [values.cpu() for values in sums.ranges(by_group)]
        return dict(zip(self.sizes, ranges, strict=True))

    def sums(self, outputs: int, device: torch.device, **kind: bool) -> Sums:
        """A sum of shape ``(outputs, total)``, each range its own table per group."""
        return Sums((outputs, self.total), device, ranges=list(self.sizes.values()), **kind)

    def at(self, name: str, bins: Tensor, values: Tensor | None = None) -> Binned:
        """``values`` (None: counts) to add at the ``bins`` of range ``name``."""
        return Binned(self.offset[name], bins, values)


def _point_mass_limits(quotient: Tensor) -> Tensor:
    """``z`` from ``r/σ``, a new tensor: where ``σ = 0`` a point mass's limit, ``±∞`` for
    ``r ≠ 0`` (as IEEE division gives) and 0 for ``r = 0``, where the division gives NaN."""
    return torch.nan_to_num(quotient, nan=0.0, posinf=math.inf, neginf=-math.inf)


def _gathered(table: Tensor, cells: Tensor) -> Tensor:
    """``table[cells]`` (a coarser cell of each cell), shaped like ``cells``."""
    return table.index_select(0, cells.view(-1)).view_as(cells)


class CalibrationState:
    """Per-output sums and counts from which every calibration number is derived, for the
    whole input or per group (see ``sinks``).

    Float sums (float64): ``moments`` (``MOMENTS``); per sum cell of ``e`` (see the module),
    ``σ`` and ``r``. Counts (int64): per cell (grouped: per count cell). Each kind is one sum
    whose last axis holds the named ranges (``_Slots``), so a chunk is added in one step.
    ``summaries`` folds the cells into each grid's bins (``_per_bin``).
    """

    def __init__(
        self,
        outputs: int,
        levels: Sequence[float],
        pit_bins: int,
        device: torch.device,
        *,
        grouped: bool = False,
        weighted: bool = False,
    ) -> None:
        self.outputs = outputs
        self.levels = tuple(levels)
        self.pit_bins = pit_bins
        self._level_edges = sorted(set(levels))
        grids: dict[str, Grid] = {
            "curve": LevelGrid(tuple(k / CURVE_STEPS for k in range(CURVE_STEPS))),  # 1: never
            "score": LevelGrid(tuple(j / SCORE_STEPS for j in range(1, SCORE_STEPS))),
            "level": LevelGrid(tuple(self._level_edges)),
            "check": QuantileGrid(SCORE_STEPS),
            "pit": QuantileGrid(pit_bins),
        }
        lookup_cells = Cells(grids)
        self._lookup = lookup_cells.lookup(device)
        self._sum_cells = Cells({name: grids[name] for name in ("score", "level", "check")})
        self._sum_cell_of = self._sum_cells.cell_of(lookup_cells).to(device)
        # Grouped, counts are kept per coarser cell of the grids that count (curve, level,
        # PIT): 221 cells, not 397, per group and output, for one more gather per chunk.
        self._count_cells, self._count_cell_of = lookup_cells, None
        if grouped:
            self._count_cells = Cells({name: grids[name] for name in ("curve", "level", "pit")})
            self._count_cell_of = self._count_cells.cell_of(lookup_cells).to(device)
        width = self._sum_cells.cells
        self._float_slots = _Slots({"moments": len(MOMENTS), "std": width, "error": width})
        self._count_slots = _Slots({"cells": self._count_cells.cells})
        self._sums = self._float_slots.sums(outputs, device, grouped=grouped)
        # Weighted, a count is a sum of weights.
        self._counts = self._count_slots.sums(
            outputs, device, integer=not weighted, grouped=grouped
        )

    def update(
        self,
        terms: NllTerms,
        error: Tensor,
        var: Tensor,
        floored_var: Tensor,
        group: Tensor | None = None,
        weight: Tensor | None = None,
    ) -> None:
        """Add a chunk: the NLL's ``terms``, the errors ``target - mean`` (``(rows, outputs)``),
        the variances as given and floored (width 1 or outputs; the same tensor when none was
        floored); ``group``: each row's group (grouped states only); ``weight``: each row's
        (weighted states only, ``(rows, 1)``)."""

        def column(values: Tensor) -> Tensor:  # each moment summed as soon as it is made
            return self._sums.column(weighted(values, weight))

        std = torch.sqrt(var)
        quotient = error / std
        floored = floored_var is not var  # else the NLL's z is this one (the same bits)
        nll_z = column(error / torch.sqrt(floored_var) if floored else quotient)
        z = _point_mass_limits(quotient)
        e = (z * _INV_SQRT_2).erf_()
        moments = (
            nll_z,
            column(terms.z2),
            column(terms.log_var),
            column(var),
            column(error.abs()),
            column(error * e),
            column((z * z).mul_(-0.5).exp_().mul_(std)),
            column(terms.squared_error),
        )
        cell = self._lookup(e)
        sum_cell = _gathered(self._sum_cell_of, cell)
        count_cell = cell if self._count_cell_of is None else _gathered(self._count_cell_of, cell)
        self._counts.add_parts((), (self._count_slots.at("cells", count_cell, weight),), group)
        sums = self._float_slots
        per_cell = (
            sums.at("std", sum_cell, weighted(std, weight)),
            sums.at("error", sum_cell, weighted(error, weight)),
        )
        self._sums.add_parts(moments, per_cell, group)

    def reserve(self, groups: int) -> None:
        """Make room for ``groups`` groups (grouped states only)."""
        self._sums.reserve(groups)
        self._counts.reserve(groups)

    @property
    def bytes_per_group(self) -> int:
        """The memory one group's sums and counts take (grouped states only)."""
        return self._sums.bytes_per_group + self._counts.bytes_per_group

    def merge(self, other: CalibrationState, mapping: Tensor | None = None) -> None:
        """Add another state of the same levels and PIT bins (grouped: its group ``i`` into
        this state's group ``mapping[i]``)."""
        if (other.levels, other.pit_bins) != (self.levels, self.pit_bins):
            raise ValueError("cannot merge calibration states with different levels or PIT bins")
        if other._count_cells.cells != self._count_cells.cells:
            raise ValueError("cannot merge a grouped calibration state with an ungrouped one")
        self._sums.merge(other._sums, mapping)
        self._counts.merge(other._counts, mapping)

    def totals(self, by_group: bool = False) -> dict[str, Tensor]:
        """Every sum and count on the CPU, ``(1 or groups, outputs, ...)``, as kept: per cell
        where ``summaries`` wants per bin (``_per_bin`` folds them; no copy here, as there may
        be 10^5 groups)."""
        return {
            **self._float_slots.named(self._sums, by_group),
            **self._count_slots.named(self._counts, by_group),
        }

    def _per_bin(self, totals: dict[str, Tensor]) -> dict[str, Tensor]:
        """``totals`` (or a batch of them) with the cells folded into each grid's bins.

        ``|r|`` is ``r`` times the cell's sign, except in the cell of ``e = 0``, whose ``r`` of
        either sign is left out: it is in the level grids' bin 0 (inside every interval), which
        no interval score weighs (the mean ``|r|`` is a moment).
        """
        std, error, cells = totals["std"], totals["error"], totals["cells"]
        abs_error = error * self._sum_cells.sign_of_cell.to(error.dtype)
        sum_bins, count_bins = self._sum_cells.bin_of_cell, self._count_cells.bin_of_cell
        return {
            "moments": totals["moments"],
            "level_std": folded(std, sum_bins["level"]),
            "level_abs_error": folded(abs_error, sum_bins["level"]),
            "score_std": folded(std, sum_bins["score"]),
            "score_abs_error": folded(abs_error, sum_bins["score"]),
            "check_std": folded(std, sum_bins["check"]),
            "check_error": folded(error, sum_bins["check"]),
            "curve": folded(cells, count_bins["curve"]),
            "level": folded(cells, count_bins["level"]),
            "pit": folded(cells, count_bins["pit"]),
        }

    def summaries(
        self, totals: dict[str, Tensor], elements: Tensor, loss_sums: Tensor, full: bool
    ) -> dict[str, np.ndarray]:
        """Calibration and accuracy of each row of a batch of ``totals`` (each ``(batch, ...)``,
        e.g. groups, outputs, or both flattened), with the batch's element counts and loss sums
        (without the constant). Vectorised over the batch: one pass for 10^5 groups."""
        totals = self._per_bin(totals)
        elements = elements.to(torch.float64)
        mean = {name: totals["moments"][:, k].double() / elements for k, name in enumerate(MOMENTS)}
        mean["std"] = totals["check_std"].sum(dim=1) / elements
        mean["error"] = totals["check_error"].sum(dim=1) / elements
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
            "calibration_curve": curve,
            "crps": mean["error_erf"]
            + _SQRT_2_OVER_PI * mean["std_density"]
            - _INV_SQRT_PI * mean["std"],
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
        return {name: values.numpy() for name, values in numbers.items()}


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
