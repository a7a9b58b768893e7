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
  explicitly (``RowBatch.z``), so no NaN reaches the sums.
- ``e`` is looked up once per chunk, exactly, among the edges of every grid the chosen
  families use (``binning.Cells``, shared through ``Lookup`` by the states of one run): the
  calibration curve's levels (k/99) for ``calibration``, the one-sided levels (u ≤ k/99,
  inclusive) for ``quantile``, the user's levels for ``coverage``, the PIT histogram's bins
  for ``pit``, the 99 score levels (j/100) and the quantile grid's bins of ``u`` for
  ``scores``. Counts are kept per cell among the edges of the grids that count (curve,
  one-sided, level, PIT), and the sums of ``σ`` and ``r`` per cell among the edges of the
  grids that weigh them (level, score, quantile); a family not chosen adds no edge, so a
  group's state holds only what its families need. Each grid's bins are a fixed function of
  the cell, and ``|r|`` is ``r`` times the cell's sign, applied to the per-cell sums at the end.
- the check score and the interval score averaged over levels are sums of per-bin sums of
  ``σ`` and ``r`` (or ``|r|``) times per-bin constants (prefix sums over the level grid), formed at
  the end. Both scores are continuous at bin edges, so the binning is exact for them.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.binning import (
    Cells,
    EdgeBins,
    Grid,
    LevelGrid,
    OneSidedGrid,
    QuantileGrid,
    folded,
)
from gaussnll.core.state.sinks import Binned, Sums

CURVE_STEPS = 99  # the curve's levels are k/99, k = 0..99: linspace(0, 1, 100)
SCORE_STEPS = 100  # the score levels are j/100, j = 1..99: linspace(0.01, 0.99, 99)
SCORE_LEVELS = SCORE_STEPS - 1
_INV_SQRT_2 = 1 / math.sqrt(2)
_INV_SQRT_PI = 1 / math.sqrt(math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

CALIBRATION_FAMILIES = frozenset(
    {"accuracy", "var_scale", "crps", "coverage", "calibration", "one_sided", "pit", "scores"}
)


class Moment(NamedTuple):
    """A per-output float sum over elements: the families that read it, and its value for
    each element of a chunk's rows."""

    families: tuple[str, ...]
    of: Callable[[RowBatch], Tensor]


# The moments, each kept when one of its families is chosen: ``z``, ``z2`` and ``log_var`` of
# the floored ``v``; ``var``, ``std`` (σ) as given; the errors. The CRPS,
# ``σ [z (2Φ(z) - 1) + 2φ(z) - 1/√π] = r·e + √(2/π)·σ·exp(-z²/2) - σ/√π``, is formed from
# ``error_erf`` (r·e), ``std_density`` (σ·exp(-z²/2)) and ``std`` at the end.
MOMENTS: dict[str, Moment] = {
    # z of the floored variance, as the NLL's (the same bits as r/σ when none was floored)
    "z": Moment(
        ("var_scale",), lambda b: b.error / torch.sqrt(b.floored_var) if b.floored else b.quotient
    ),
    "z2": Moment(("var_scale",), lambda b: b.terms.z2),
    "log_var": Moment(("var_scale",), lambda b: b.terms.log_var),
    "var": Moment(("var_scale",), lambda b: b.var),
    "abs_error": Moment(("accuracy",), lambda b: b.error.abs()),
    "squared_error": Moment(("accuracy",), lambda b: b.terms.squared_error),
    "error": Moment(("accuracy",), lambda b: b.error),
    "error_erf": Moment(("crps",), lambda b: b.error * b.erf),
    "std_density": Moment(("crps",), lambda b: (b.z * b.z).mul_(-0.5).exp_().mul_(b.std)),
    "std": Moment(("crps", "coverage"), lambda b: b.std),
}
# The grids of ``e`` whose bins count elements, and those whose bins sum σ and r, by family.
_COUNT_GRIDS = {
    "calibration": ("curve",),
    "one_sided": ("one_sided",),
    "coverage": ("level",),
    "pit": ("pit",),
}
_SUM_GRIDS = {"coverage": ("level",), "scores": ("score", "check")}


def central_quantiles(levels: Tensor) -> Tensor:
    """``Φ⁻¹(0.5 + p/2)``: the half-widths, in standard deviations, of central p-intervals."""
    return torch.special.ndtri(0.5 + levels / 2)


def grids_of(families: Iterable[str], levels: Sequence[float], pit_bins: int) -> dict[str, Grid]:
    """The grids of ``e`` that ``families`` count or sum in, by name."""
    wanted = {
        grid
        for family in families
        for grid in (*_COUNT_GRIDS.get(family, ()), *_SUM_GRIDS.get(family, ()))
    }
    every: dict[str, Grid] = {
        "curve": LevelGrid(tuple(k / CURVE_STEPS for k in range(CURVE_STEPS))),  # 1: never
        "one_sided": OneSidedGrid(CURVE_STEPS),  # τ = k/99; 1: never
        "score": LevelGrid(tuple(j / SCORE_STEPS for j in range(1, SCORE_STEPS))),
        "level": LevelGrid(tuple(sorted(set(levels)))),
        "check": QuantileGrid(SCORE_STEPS),
        "pit": QuantileGrid(pit_bins),
    }
    return {name: grid for name, grid in every.items() if name in wanted}


class Lookup(NamedTuple):
    """The exact lookup of ``e``'s cell among the edges of ``cells``' grids, shared by the
    calibration states of one score state (one lookup per chunk, whichever they are)."""

    cells: Cells
    bins: EdgeBins

    @classmethod
    def of(cls, grids: dict[str, Grid], device: torch.device) -> Lookup:
        cells = Cells(grids)
        return cls(cells, cells.lookup(device))


class _Slots:
    """Named consecutive ranges of the last axis of one sum (``sizes``: name → length)."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = {name: size for name, size in sizes.items() if size}
        starts = itertools.accumulate(self.sizes.values(), initial=0)
        self.offset = dict(zip(self.sizes, starts, strict=False))  # ``starts`` has one more
        self.total = sum(self.sizes.values())

    def named(self, sums: Sums | None, by_group: bool) -> dict[str, Tensor]:
        """Each named range of ``sums`` (made by ``sums()``), on the CPU."""
        if sums is None:
            return {}
        ranges = [values.cpu() for values in sums.ranges(by_group)]
        return dict(zip(self.sizes, ranges, strict=True))

    def sums(self, outputs: int, device: torch.device, **kind: bool) -> Sums | None:
        """A sum of shape ``(outputs, total)``, each range its own table per group (None:
        no range)."""
        if not self.total:
            return None
        return Sums((outputs, self.total), device, ranges=list(self.sizes.values()), **kind)

    def at(self, name: str, bins: Tensor, values: Tensor | None = None) -> Binned:
        """``values`` (None: counts) to add at the ``bins`` of range ``name``."""
        return Binned(self.offset[name], bins, values)


class _Cells:
    """The cells one kind of sum is kept per, and how the shared lookup's cells map to them.

    Cells that every grid of the kind puts in the same bin (and, for ``signed`` sums, whose
    ``e`` has the same sign) are one cell here: the sums only ever reach the grids' bins. So
    counts over level grids alone (the curve's, the coverage's) keep a cell per ``|e|``
    interval, half of ``e``'s, while a PIT grid tells every cell apart.
    """

    def __init__(
        self, grids: dict[str, Grid], lookup: Lookup, device: torch.device, *, signed: bool
    ) -> None:
        own = Cells(grids)
        parts = [*own.bin_of_cell.values(), *([own.sign_of_cell] if signed else [])]
        keys = list(zip(*(part.tolist() for part in parts), strict=True))  # of each own cell
        distinct = {key: k for k, key in enumerate(dict.fromkeys(keys))}
        self.cells = len(distinct)
        columns = list(zip(*distinct, strict=True))  # each part's value per cell kept
        bins = zip(own.bin_of_cell, columns, strict=False)  # the sign's column is last
        self.bin_of_cell = {name: torch.tensor(column) for name, column in bins}
        self._sign = torch.tensor(columns[-1], dtype=torch.float64) if signed else None
        kept = torch.tensor([distinct[key] for key in keys])
        of = kept.index_select(0, own.cell_of(lookup.cells))
        same = torch.equal(of, torch.arange(lookup.cells.cells))
        self._of = None if same else of.to(device)

    def of(self, cell: Tensor) -> Tensor:
        """Each element's cell here, from its cell in the lookup."""
        if self._of is None:
            return cell
        return self._of.index_select(0, cell.view(-1)).view_as(cell)

    @property
    def sign_of_cell(self) -> Tensor:
        """The sign of every ``e`` in each cell (0: ``e = ±0``), for ``signed`` sums."""
        if self._sign is None:
            raise ValueError("these cells do not keep the sign of e apart")
        return self._sign


class CalibrationState:
    """Per-output sums and counts from which the calibration and accuracy numbers of
    ``families`` are derived, for the whole input or per group too (see ``sinks``).

    Float sums (float64): the families' ``MOMENTS``; per sum cell of ``e`` (see the module),
    ``σ`` and ``r``, for the grids that weigh them. Counts (int64, a group's int32 while they
    fit; weighted, sums of weights): per count cell, for the grids that count. Each kind is
    one sum whose last axis holds the named ranges (``_Slots``), so a chunk is added in one
    step. A family not chosen keeps nothing. ``summaries`` folds the cells into each grid's
    bins (``_per_bin``).
    """

    def __init__(
        self,
        outputs: int,
        families: Iterable[str],
        levels: Sequence[float],
        pit_bins: int,
        device: torch.device,
        *,
        lookup: Lookup | None = None,
        grouped: bool = False,
        weighted: bool = False,
    ) -> None:
        """``lookup``: the lookup of ``e`` shared with other states, whose grids include
        these families' (default: one of their own)."""
        self.outputs = outputs
        self.families = frozenset(families) & CALIBRATION_FAMILIES
        self.levels = tuple(levels)
        self.pit_bins = pit_bins
        self.grouped = grouped
        self._level_edges = sorted(set(levels))
        self._moments = [
            name for name, moment in MOMENTS.items() if self.families.intersection(moment.families)
        ]
        counted = grids_of(self.families & set(_COUNT_GRIDS), levels, pit_bins)
        summed = grids_of(self.families & set(_SUM_GRIDS), levels, pit_bins)
        self._lookup = lookup or Lookup.of({**counted, **summed}, device)
        self._count_cells = _Cells(counted, self._lookup, device, signed=False) if counted else None
        self._sum_cells = _Cells(summed, self._lookup, device, signed=True) if summed else None
        width = 0 if self._sum_cells is None else self._sum_cells.cells
        self._float_slots = _Slots({"moments": len(self._moments), "std": width, "error": width})
        counts = 0 if self._count_cells is None else self._count_cells.cells
        self._count_slots = _Slots({"cells": counts})
        self._sums = self._float_slots.sums(
            outputs, device, grouped=grouped, total=not grouped, weighted=weighted
        )
        self._counts = self._count_slots.sums(
            outputs,
            device,
            integer=True,
            grouped=grouped,
            total=not grouped,
            weighted=weighted,
            compact=True,
        )

    def update(self, batch: RowBatch) -> None:
        """Add a chunk's rows."""
        at = batch.at
        if self._counts is not None and self._count_cells is not None:
            cell = self._count_cells.of(batch.cells(self._lookup.bins))
            self._counts.add_parts((), (self._count_slots.at("cells", cell),), at)
        if self._sums is None:
            return
        sums = self._sums
        # Each moment is summed as soon as it is made.
        moments = [
            sums.column(
                batch.shared(("moment", name), functools.partial(MOMENTS[name].of, batch)), at
            )
            for name in self._moments
        ]
        per_cell: tuple[Binned, ...] = ()
        if self._sum_cells is not None:
            cell = self._sum_cells.of(batch.cells(self._lookup.bins))
            slots = self._float_slots
            per_cell = (slots.at("std", cell, batch.std), slots.at("error", cell, batch.error))
        sums.add_parts(moments, per_cell, at)

    def reserve(self, groups: int) -> None:
        """Make room for ``groups`` groups (grouped states only)."""
        for sums in self._all_sums():
            sums.reserve(groups)

    @property
    def bytes_per_group(self) -> int:
        """The memory one group's sums and counts take (grouped states only)."""
        return sum(sums.bytes_per_group for sums in self._all_sums())

    def merge(self, other: CalibrationState, mapping: Tensor | None = None) -> None:
        """Add another state of the same families, levels and PIT bins (grouped: its group
        ``i`` into this state's group ``mapping[i]``)."""
        if (other.families, other.levels, other.pit_bins) != (
            self.families,
            self.levels,
            self.pit_bins,
        ):
            raise ValueError(
                "cannot merge calibration states with different metrics, levels or PIT bins"
            )
        if other.grouped != self.grouped:
            raise ValueError("cannot merge a grouped calibration state with an ungrouped one")
        for mine, theirs in zip(self._all_sums(), other._all_sums(), strict=True):
            mine.merge(theirs, mapping)

    def _all_sums(self) -> list[Sums]:
        return [sums for sums in (self._sums, self._counts) if sums is not None]

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
        binned: dict[str, Tensor] = {}
        if self._sum_cells is not None:
            cells = self._sum_cells
            std, error = totals["std"], totals["error"]
            abs_error = error * cells.sign_of_cell.to(error.dtype)
            for grid, bins in cells.bin_of_cell.items():
                binned[f"{grid}_std"] = folded(std, bins)
                binned[f"{grid}_error"] = folded(error, bins)
                binned[f"{grid}_abs_error"] = folded(abs_error, bins)
        if self._count_cells is not None:
            counts = totals["cells"]  # a group's may be int32 (compact): in int64 from here
            counts = counts.long() if counts.dtype == torch.int32 else counts
            for grid, bins in self._count_cells.bin_of_cell.items():
                binned[grid] = folded(counts, bins)
        return binned

    def summaries(
        self, totals: dict[str, Tensor], elements: Tensor, loss_sums: Tensor, full: bool
    ) -> dict[str, np.ndarray]:
        """The calibration and accuracy numbers of this state's families for each row of a
        batch of ``totals`` (each ``(batch, ...)``, e.g. groups, outputs, or both flattened),
        with the batch's element counts (weighted: sums of weights) and loss sums (without the
        constant). Vectorised over the batch: one pass for 10^5 groups."""
        binned = self._per_bin(totals)
        elements = elements.to(torch.float64)
        per_element = elements.unsqueeze(1)
        mean = {
            name: totals["moments"][:, k].double() / elements
            for k, name in enumerate(self._moments)
        }
        numbers: dict[str, Tensor] = {}
        families = self.families
        if "coverage" in families:
            columns = [self._level_edges.index(level) for level in self.levels]
            inside = torch.cumsum(binned["level"], dim=1)[:, columns]
            quantiles = central_quantiles(torch.tensor(self.levels, dtype=torch.float64))
            numbers["coverage"] = inside.double() / per_element
            numbers["inside_counts"] = inside
            numbers["interval_width"] = 2 * quantiles * mean["std"].unsqueeze(1)
            numbers["interval_score"] = (
                _interval_scores_at(self.levels, columns, binned) / per_element
            )
        if "pit" in families:
            numbers["pit_counts"] = binned["pit"]
        if "calibration" in families:
            numbers.update(curve_numbers("", binned["curve"], per_element))
        if "one_sided" in families:
            numbers.update(curve_numbers("quantile_", binned["one_sided"], per_element))
        if "crps" in families:
            numbers["crps"] = crps_of(mean["error_erf"], mean["std_density"], mean["std"])
        if "scores" in families:
            numbers["check_score"] = _check_score_sums(binned) / SCORE_LEVELS / elements
            numbers["interval_score_avg"] = _interval_score_sums(binned) / SCORE_LEVELS / elements
        if "var_scale" in families:
            var_scale = mean["z2"]
            log_scale = torch.where(var_scale > 0, torch.log(var_scale), torch.nan)
            constant = _HALF_LOG_2PI if full else 0.0
            numbers["nll_full"] = loss_sums / elements + _HALF_LOG_2PI
            numbers["sharpness"] = torch.sqrt(mean["var"])
            numbers["z_mean"] = mean["z"]
            numbers["z_std"] = torch.sqrt(torch.clamp(mean["z2"] - mean["z"] ** 2, min=0.0))
            numbers["z2_mean"] = var_scale
            numbers["var_scale"] = var_scale
            numbers["nll_at_var_scale"] = 0.5 * (mean["log_var"] + log_scale + 1) + constant
        if "accuracy" in families:
            numbers["mae"] = mean["abs_error"]
            numbers["rmse"] = torch.sqrt(mean["squared_error"])
            numbers["bias"] = mean["error"]
        return {name: values.numpy() for name, values in numbers.items()}


def crps_of(error_erf: Tensor, std_density: Tensor, std: Tensor) -> Tensor:
    """The mean CRPS from the means of its terms (``MOMENTS``): ``r·e``, ``σ·exp(-z²/2)``
    and ``σ``."""
    return error_erf + _SQRT_2_OVER_PI * std_density - _INV_SQRT_PI * std


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


def curve_numbers(prefix: str, counts: Tensor, elements: Tensor) -> dict[str, Tensor]:
    """A calibration curve at the levels ``linspace(0, 1, 100)`` and its MACE, RMSCE and
    miscalibration area (each named with ``prefix``), from counts per bin ``(batch, 100)``
    whose cumulative sums are the elements at or below each level, and the element counts
    ``(batch, 1)``."""
    levels = torch.arange(CURVE_STEPS + 1, dtype=torch.float64) / CURVE_STEPS
    curve = torch.cumsum(counts, dim=1).double() / elements
    gaps = curve - levels
    return {
        f"{prefix}mace": gaps.abs().mean(dim=1),
        f"{prefix}rmsce": torch.sqrt((gaps * gaps).mean(dim=1)),
        f"{prefix}miscalibration_area": area_between_curve_and_diagonal(levels, curve),
        f"{prefix}calibration_curve": curve,
    }


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
