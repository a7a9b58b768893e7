"""Error against predicted uncertainty, as sums over elements (mergeable, chunk-invariant).

Each element falls in a fine, fixed bin of its predicted σ = √var, with ``var`` the variance
as the model gave it (before the ``eps`` floor: the floor is the loss's, not the model's
uncertainty): ``BINS_PER_DECADE`` log-spaced bins per decade of σ from ``SIGMA_LOW`` to
``SIGMA_HIGH``, plus one bin below (σ = 0 included) and one above. A bin holds the count, Σ var
and Σ r² (``r = target - mean``) of its elements, so states add bin by bin.

At the end (``summaries``), consecutive fine bins merge into ``K`` bins of nearly equal count;
per bin the root mean variance ``RMV = √(Σ var / n)`` and ``RMSE = √(Σ r² / n)``, and the
expected normalised calibration error ``ENCE = mean over bins of |RMV - RMSE| / RMV`` (Levi et
al. 2022, "Evaluating and calibrating uncertainty prediction in regression tasks").
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.sinks import Binned, Sums

BINS_PER_DECADE = 8  # 162 fine bins: 3.9 KB per group and output (16 per decade took 9.3 KB)
DECADES = 10  # σ from 10^-10 to 10^10
SIGMA_LOW, SIGMA_HIGH = 10.0**-DECADES, 10.0**DECADES
# The inner edges of σ; fine bin j holds σ in (EDGES[j-1], EDGES[j]] (bin 0: σ <= SIGMA_LOW).
SIGMA_EDGES = 10.0 ** (
    torch.arange(-DECADES * BINS_PER_DECADE, DECADES * BINS_PER_DECADE + 1, dtype=torch.float64)
    / BINS_PER_DECADE
)
FINE_BINS = len(SIGMA_EDGES) + 1
# Every fine bin's bounds: bin j spans (BOUNDS[j], BOUNDS[j + 1]].
BOUNDS = torch.cat([torch.zeros(1, dtype=torch.float64), SIGMA_EDGES, torch.full((1,), np.inf)])
_TOTALS = ("sigma_counts", "sigma_var", "sigma_squared_error")


def fine_bins(var: Tensor) -> Tensor:
    """Each variance's fine bin of σ: a guess from ``log10(var)`` (σ's edges per decade are half
    as many per decade of the variance), made exact by comparing with the squared edges on
    either side, so no square root and no search of the edges is needed. A NaN goes to the top bin,
    to keep the accumulation well defined."""
    bounds = _variance_bounds(var.device, var.dtype)
    top = FINE_BINS - 1
    guess = torch.log10(var).mul_(BINS_PER_DECADE / 2).ceil_().add_(DECADES * BINS_PER_DECADE)
    bins = guess.nan_to_num_(top).clamp_(0, top).long()
    bins += (var > bounds.take(bins + 1)).long()  # above the bin's upper bound: one up
    bins -= (var <= bounds.take(bins)).long()  # at or below its lower bound: one down
    return bins


@functools.cache
def _variance_bounds(device: torch.device, dtype: torch.dtype) -> Tensor:
    """The fine bins' bounds of the variance (``BOUNDS`` squared, the lowest -inf so that a
    zero variance stays in bin 0) on ``device``, made once."""
    bounds = BOUNDS * BOUNDS
    bounds[0] = -np.inf
    return bounds.to(device=device, dtype=dtype)


class UncertaintyState:
    """Per-output fine-bin sums of count (int64; weighted, the sum of weights in float64), Σ var
    and Σ r² (float64, of weighted values when weighted), for the whole input or per group too
    (see ``sinks``)."""

    def __init__(
        self, outputs: int, device: torch.device, *, grouped: bool = False, weighted: bool = False
    ) -> None:
        self.outputs = outputs
        self.grouped = grouped
        self.families = frozenset({"uncertainty"})
        self._counts = Sums(
            (outputs, FINE_BINS),
            device,
            integer=True,
            grouped=grouped,
            total=not grouped,
            weighted=weighted,
        )
        self._sums = Sums(
            (outputs, 2 * FINE_BINS),
            device,
            ranges=[FINE_BINS, FINE_BINS],
            grouped=grouped,
            total=not grouped,
            weighted=weighted,
        )

    def update(self, batch: RowBatch) -> None:
        """Add a chunk's rows: their variances as given and squared errors."""
        squared_error = batch.terms.squared_error
        bins = fine_bins(batch.var).expand_as(squared_error)
        self._counts.add_parts((), (Binned(0, bins, None),), batch.at)
        parts = (Binned(0, bins, batch.var), Binned(FINE_BINS, bins, squared_error))
        self._sums.add_parts((), parts, batch.at)

    def reserve(self, groups: int) -> None:
        """Make room for ``groups`` groups (grouped states only)."""
        self._counts.reserve(groups)
        self._sums.reserve(groups)

    @property
    def bytes_per_group(self) -> int:
        """The memory one group's bins take (grouped states only)."""
        return self._sums.bytes_per_group + self._counts.bytes_per_group

    def merge(self, other: UncertaintyState, mapping: Tensor | None = None) -> None:
        """Add another state (grouped: its group ``i`` into this state's group ``mapping[i]``)."""
        self._counts.merge(other._counts, mapping)
        self._sums.merge(other._sums, mapping)

    def totals(self, by_group: bool = False) -> dict[str, Tensor]:
        """The sums on the CPU, each ``(1 or groups, outputs, FINE_BINS)``."""
        counts = self._counts.value(by_group)
        var, squared_error = self._sums.ranges(by_group)
        values = (counts, var, squared_error)
        return {name: value.cpu() for name, value in zip(_TOTALS, values, strict=True)}


def summaries(totals: dict[str, Tensor], bins: int) -> dict[str, np.ndarray]:
    """ENCE and the ``bins`` merged bins of each row of a batch of ``totals`` (each
    ``(batch, FINE_BINS)``), vectorised over the batch.

    The cut after merged bin ``k`` is the fine-bin boundary whose cumulative count is nearest
    ``n·k/bins`` (ties: the later one); merged bins left empty are dropped when a row is read
    (``row_fields``). Returns ``ence`` ``(batch,)`` and, per merged bin, ``uncertainty_counts``,
    ``uncertainty_rmv``, ``uncertainty_rmse``, ``uncertainty_upper`` (the upper σ bound of its
    last non-empty fine bin), plus ``uncertainty_lower`` (the lower bound of the first non-empty
    fine bin) and the fine counts ``sigma_counts``.
    """
    counts = totals["sigma_counts"]  # int64, or float64 sums of weights
    var, squared_error = totals["sigma_var"].double(), totals["sigma_squared_error"].double()
    batch = counts.shape[0]
    cumulative = torch.cumsum(counts, dim=1)
    n = cumulative[:, -1:].double()
    targets = n * torch.arange(1, bins, dtype=torch.float64) / bins
    after = torch.searchsorted(cumulative.double(), targets).clamp(max=FINE_BINS - 1)
    before = (after - 1).clamp(min=0)
    below = cumulative.double().gather(1, before)
    above = cumulative.double().gather(1, after)
    cuts = torch.where((after > 0) & (targets - below < above - targets), before, after)
    fine = torch.arange(FINE_BINS)
    coarse = (cuts.unsqueeze(1) < fine.view(1, -1, 1)).sum(dim=2)  # (batch, FINE_BINS)

    def merged(values: Tensor) -> Tensor:
        return values.new_zeros((batch, bins)).scatter_add_(1, coarse, values)

    n_bin = merged(counts)
    safe = torch.where(n_bin > 0, n_bin, 1).double()
    rmv, rmse = torch.sqrt(merged(var) / safe), torch.sqrt(merged(squared_error) / safe)
    filled = n_bin > 0
    # A bin of point masses (RMV 0) has no normalised error: ENCE leaves it out.
    weighed = filled & (rmv > 0)
    gaps = torch.where(weighed, (rmv - rmse).abs() / rmv.clamp(min=1e-300), 0.0)
    ence = gaps.sum(dim=1) / weighed.sum(dim=1).clamp(min=1)
    ence = torch.where(weighed.any(dim=1), ence, torch.nan)
    occupied = counts > 0
    upper = torch.where(occupied, BOUNDS[1:], -np.inf)
    upper = torch.full((batch, bins), -np.inf, dtype=torch.float64).scatter_reduce_(
        1, coarse, upper, reduce="amax"
    )
    first = torch.where(occupied.any(dim=1), occupied.to(torch.int8).argmax(dim=1), 0)
    return {
        "ence": ence.numpy(),
        "uncertainty_counts": n_bin.numpy(),
        "uncertainty_rmv": torch.where(filled, rmv, torch.nan).numpy(),
        "uncertainty_rmse": torch.where(filled, rmse, torch.nan).numpy(),
        "uncertainty_upper": upper.numpy(),
        "uncertainty_lower": BOUNDS[first].unsqueeze(1).numpy(),
        "sigma_counts": counts.numpy(),
    }


def row_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Pop one row's ``summaries`` values from ``values`` (lists, as ``tolist`` gives them) and
    return the report's fields: ``uncertainty_bins`` (``edges``, ``counts``, ``rmv``,
    ``rmse`` of the non-empty merged bins) and ``sigma_histogram`` (``edges`` and ``counts``
    of the fine bins from the first to the last non-empty one)."""
    counts = values.pop("uncertainty_counts")
    rmv, rmse = values.pop("uncertainty_rmv"), values.pop("uncertainty_rmse")
    upper, (lower,) = values.pop("uncertainty_upper"), values.pop("uncertainty_lower")
    kept = [k for k, count in enumerate(counts) if count > 0]
    fine = values.pop("sigma_counts")
    occupied = [j for j, count in enumerate(fine) if count > 0]
    start, stop = (occupied[0], occupied[-1] + 1) if occupied else (0, 0)
    return {
        "uncertainty_bins": {
            "edges": [lower, *(upper[k] for k in kept)] if kept else [],
            "counts": [counts[k] for k in kept],
            "rmv": [rmv[k] for k in kept],
            "rmse": [rmse[k] for k in kept],
        },
        "sigma_histogram": {
            "edges": BOUNDS[start : stop + 1].tolist() if occupied else [],
            "counts": fine[start:stop],
        },
    }
