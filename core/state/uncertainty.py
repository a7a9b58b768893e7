"""Error against predicted uncertainty, as sums over elements (mergeable, chunk-invariant).

σ = √var, with ``var`` the variance as the model gave it (before the ``eps`` floor: the floor
is the loss's, not the model's uncertainty). Bins of σ are bins of ``var``'s float64 bits,
ordered as the values for ``var ≥ 0``: ``key >> s`` keeps the exponent and the top ``52 - s``
bits of the mantissa, a bucket of relative width ``2^(s - 52)`` in var. Such buckets nest:
two of one resolution make one of the next coarser, so sums fold exactly from fine to coarse.

- Coarse bins: two per octave of var (four per octave of σ, about 13 per decade) from σ =
  2^-34 (5.8e-11) to 2^34 (1.7e10), plus one below (σ = 0 included) and one above (∞, and NaN
  to keep the sums well defined): counts, for ``sigma_histogram`` and the observed range.
- Fine buckets: ``BUCKETS`` over the coarse bins from the first to the last occupied one (of
  a group, all outputs together) at the finest power-of-two resolution that fits, so at least
  ``BUCKETS / 2`` span the observed range however narrow or wide it is; plus the coarse bins
  below and above. Each holds the count, Σ var and Σ r² (``r = target - mean``). The
  resolution follows from the occupied coarse bins, so from the data, not its order: when the
  range grows the buckets so far fold into the coarser ones (``Sums.moved``), and states merge
  by folding both into the resolution of their union. Equal σ always share a bucket.

At the end (``summaries``) the buckets are cut into ``K`` bins of nearly equal count, each
cut at the bucket boundary whose cumulative count is nearest ``n·k/K``; per bin the root mean
variance ``RMV = √(Σ var / n)`` and ``RMSE = √(Σ r² / n)``, and the expected normalised
calibration error ``ENCE = mean over bins of |RMV - RMSE| / RMV`` (Levi et al. 2022,
"Evaluating and calibrating uncertainty prediction in regression tasks").
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.sinks import Binned, Placement, Sums, deferrable

BUCKETS = 4096  # a power of two: 98 KB of sums per group and output (see README)
_LEVELS = BUCKETS.bit_length() - 1  # buckets per coarse bin at most: 2^_LEVELS
_EXPONENTS = 68  # var from 2^-68 to 2^68
_KEY_LOW, _KEY_HIGH = (1023 - _EXPONENTS) << 52, (1023 + _EXPONENTS) << 52
_SPAN = _KEY_HIGH - _KEY_LOW
_COARSE_SHIFT = 51  # two coarse bins per octave of var
_INNER = _SPAN >> _COARSE_SHIFT  # coarse bins inside the range
COARSE_BINS = _INNER + 2
SLOTS = BUCKETS + 2  # the fine buckets with the coarse bins below and above
SIGMA_LOW, SIGMA_HIGH = 2.0**-34, 2.0**34
# The coarse bins' bounds of σ: bin j spans [BOUNDS[j], BOUNDS[j + 1]).
_INNER_BOUNDS = (
    (torch.arange(_INNER + 1, dtype=torch.int64) << _COARSE_SHIFT)
    .add_(_KEY_LOW)
    .view(torch.float64)
).sqrt()
BOUNDS = torch.cat([torch.zeros(1, dtype=torch.float64), _INNER_BOUNDS, torch.full((1,), np.inf)])
_TOTALS = (
    "sigma_counts",
    "sigma_range",
    "uncertainty_fine_counts",
    "uncertainty_fine_var",
    "uncertainty_fine_squared_error",
)


def keys(var: Tensor) -> Tensor:
    """Each variance's float64 bits less the range's lower end: ordered as the values, -1
    below the range (zero and negative values included), ``_SPAN`` above it (∞ and NaN)."""
    return var.double().view(torch.int64).clamp(_KEY_LOW - 1, _KEY_HIGH).sub_(_KEY_LOW)


def coarse_bins(key: Tensor) -> Tensor:
    """Each key's coarse bin (0: below the range, ``COARSE_BINS - 1``: above)."""
    return (key >> _COARSE_SHIFT).add_(1)


def layouts(coarse: Tensor) -> tuple[Tensor, Tensor]:
    """Where each group's fine buckets lie, from its coarse counts ``(groups, outputs,
    COARSE_BINS)`` (all outputs together): the first occupied coarse bin inside the range
    (``first``) and ``level``, the most with ``2^level`` buckets per coarse bin over the
    occupied ones fitting ``BUCKETS``. An empty group's layout is any: its sums are zero."""
    occupied = (coarse.sum(dim=1) > 0)[:, 1:-1]
    found = occupied.any(dim=1)
    first = occupied.to(torch.int8).argmax(dim=1)
    last = _INNER - 1 - occupied.flip(1).to(torch.int8).argmax(dim=1)
    width = torch.where(found, last - first + 1, 1)
    level = _LEVELS - torch.log2(width.double()).ceil_().long()
    return torch.where(found, first, 0), level


def fine_slots(key: Tensor, first: Tensor, level: Tensor) -> Tensor:
    """Each key's fine slot for the layout ``(first, level)`` (broadcast with ``key``): 0
    below the range, ``SLOTS - 1`` above it, else 1 + its bucket's place in the layout."""
    inner = (key >> (_COARSE_SHIFT - level)).sub_(first << level).add_(1).clamp_(1, BUCKETS)
    return torch.where(key < 0, 0, torch.where(key >= _SPAN, SLOTS - 1, inner))


def _moves(before: tuple[Tensor, Tensor], after: tuple[Tensor, Tensor]) -> Tensor:
    """``(groups, SLOTS)``: each slot's place in the layout ``after`` (as coarse or finer
    than ``before`` over the occupied range; the slots of an empty group are zero)."""
    (first, level), (new_first, new_level) = before, after
    inner = torch.arange(BUCKETS, device=first.device) + (first << level).unsqueeze(1)
    coarser = (level - new_level).clamp(min=0).unsqueeze(1)
    inner = (inner >> coarser).sub_((new_first << new_level).unsqueeze(1)).add_(1)
    below = torch.zeros_like(first).unsqueeze(1)
    return torch.cat([below, inner.clamp_(1, BUCKETS), below + SLOTS - 1], dim=1)


class UncertaintyState:
    """Per-output coarse counts and fine-bucket sums of count (int64; weighted, the sum of
    weights in float64), Σ var and Σ r² (float64, of weighted values when weighted), for the
    whole input or per group (see ``sinks``); the layout of each group's buckets follows from
    its coarse counts (``layouts``)."""

    def __init__(
        self, outputs: int, device: torch.device, *, grouped: bool = False, weighted: bool = False
    ) -> None:
        self.outputs = outputs
        self.grouped = grouped
        self.families = frozenset({"uncertainty"})

        def sums(width: int, *, integer: bool = False, ranges: list[int] | None = None) -> Sums:
            return Sums(
                (outputs, width),
                device,
                integer=integer,
                ranges=ranges,
                grouped=grouped,
                total=not grouped,
                weighted=weighted,
            )

        self._coarse = sums(COARSE_BINS, integer=True)
        self._counts = sums(SLOTS, integer=True)
        self._sums = sums(2 * SLOTS, ranges=[SLOTS, SLOTS])

    def update(self, batch: RowBatch) -> None:
        """Add a chunk's rows: their variances as given and squared errors."""
        key = batch.shared("sigma_keys", lambda: keys(batch.var))
        self._add(key, batch.var, batch.terms.squared_error, batch.at)

    @deferrable
    def _add(self, key: Tensor, var: Tensor, squared_error: Tensor, at: Placement) -> None:
        """The coarse counts, the layouts they give (folding the buckets so far where one
        grew coarser), then the buckets: one change, as each step reads the sums before it."""
        before = self._layouts()
        coarse = coarse_bins(key).expand_as(squared_error)
        self._coarse.add_parts((), (Binned(0, coarse, None),), at)
        first, level = self._follow(before, self._layouts())
        if self.grouped:
            first, level = first[at.group].unsqueeze(1), level[at.group].unsqueeze(1)
        slots = fine_slots(key, first, level).expand_as(squared_error)
        self._counts.add_parts((), (Binned(0, slots, None),), at)
        self._sums.add_parts((), (Binned(0, slots, var), Binned(SLOTS, slots, squared_error)), at)

    def _layouts(self) -> tuple[Tensor, Tensor]:
        return layouts(self._coarse.value(self.grouped))

    def _follow(
        self, before: tuple[Tensor, Tensor], after: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Fold the buckets from the layouts ``before`` into ``after`` (returned). The whole
        input's when its layout changed, on the CPU; on a GPU always (a few thousand sums: no
        read from the device; folding by an unchanged layout adds each sum to zero, the same
        bits); groups only those whose layout changed (one read)."""
        groups = None
        if not self.grouped:
            on_cpu = before[0].device.type == "cpu"  # a GPU's layout is not read back
            if on_cpu and torch.equal(before[0], after[0]) and torch.equal(before[1], after[1]):
                return after
        else:
            changed = (before[0] != after[0]) | (before[1] != after[1])
            groups = changed.nonzero().squeeze(1)
            if not len(groups):
                return after
            before = (before[0][groups], before[1][groups])
        target = after if groups is None else (after[0][groups], after[1][groups])
        _move(self._counts, self._sums, _moves(before, target), groups)
        return after

    def reserve(self, groups: int) -> None:
        """Make room for ``groups`` groups (grouped states only)."""
        for sums in (self._coarse, self._counts, self._sums):
            sums.reserve(groups)

    @property
    def bytes_per_group(self) -> int:
        """The memory one group's sums take (grouped states only)."""
        return sum(sums.bytes_per_group for sums in (self._coarse, self._counts, self._sums))

    @deferrable
    def merge(self, other: UncertaintyState, mapping: Tensor | None = None) -> None:
        """Add another state (grouped: its group ``i`` into this state's group ``mapping[i]``):
        both folded into the layouts of the merged coarse counts (``other`` left as it was)."""
        before, theirs = self._layouts(), other._layouts()
        self._coarse.merge(other._coarse, mapping)
        after = self._follow(before, self._layouts())
        counts, sums = copy.deepcopy(other._counts), copy.deepcopy(other._sums)
        groups = None
        if self.grouped:
            if mapping is None:
                raise ValueError("merging grouped sums needs the mapping of their groups")
            after = (after[0][mapping], after[1][mapping])
            groups = torch.arange(len(mapping), device=mapping.device)
        _move(counts, sums, _moves(theirs, after), groups)
        self._counts.merge(counts, mapping)
        self._sums.merge(sums, mapping)

    def totals(self, by_group: bool = False) -> dict[str, Tensor]:
        """The sums on the CPU, each ``(1 or groups, outputs, bins)``; ``sigma_range`` is the
        coarse counts of all outputs together, for each output (the buckets' layout)."""
        coarse = self._coarse.value(by_group)
        union = coarse.sum(dim=1, keepdim=True).expand_as(coarse)
        var, squared_error = self._sums.ranges(by_group)
        values = (coarse, union, self._counts.value(by_group), var, squared_error)
        return {name: value.cpu() for name, value in zip(_TOTALS, values, strict=True)}


def _move(counts: Sums, sums: Sums, moves: Tensor, groups: Tensor | None) -> None:
    """Fold the fine counts and sums of ``groups`` (None: the whole input) by ``moves``."""
    counts.moved(moves, groups)
    sums.moved(torch.cat([moves, moves + SLOTS], dim=1), groups)


def bounds(first: Tensor, level: Tensor) -> tuple[Tensor, Tensor]:
    """The lower and upper σ bounds of each fine slot for the layouts ``(first, level)``
    (each ``(batch,)``), each ``(batch, SLOTS)``: slot ``i`` spans ``[lower, upper)``."""
    bucket = torch.arange(BUCKETS + 1) + (first << level).unsqueeze(1)
    key = (bucket << (_COARSE_SHIFT - level).unsqueeze(1)).clamp_(max=_SPAN).add_(_KEY_LOW)
    sigma = key.view(torch.float64).sqrt()
    batch = len(first)

    def column(value: float) -> Tensor:
        return torch.full((batch, 1), value, dtype=torch.float64)

    lower = torch.cat([column(0.0), sigma[:, :-1], column(SIGMA_HIGH)], dim=1)
    upper = torch.cat([column(SIGMA_LOW), sigma[:, 1:], column(np.inf)], dim=1)
    return lower, upper


def summaries(totals: dict[str, Tensor], bins: int) -> dict[str, np.ndarray]:
    """ENCE and the ``bins`` merged bins of each row of a batch of ``totals`` (each
    ``(batch, ...)``), vectorised over the batch.

    The cut after merged bin ``k`` is the fine-slot boundary whose cumulative count is nearest
    ``n·k/bins`` (ties: the later one); merged bins left empty are dropped when a row is read
    (``row_fields``). Returns ``ence`` ``(batch,)`` and, per merged bin,
    ``uncertainty_counts``, ``uncertainty_rmv``, ``uncertainty_rmse``, ``uncertainty_upper``
    (the upper σ bound of its last non-empty slot), plus ``uncertainty_lower`` (the lower bound
    of the first non-empty slot) and the coarse counts ``sigma_counts``.
    """
    counts = totals["uncertainty_fine_counts"]  # int64, or float64 sums of weights
    var = totals["uncertainty_fine_var"].double()
    squared_error = totals["uncertainty_fine_squared_error"].double()
    batch = counts.shape[0]
    cumulative = torch.cumsum(counts, dim=1).double()
    n = cumulative[:, -1:]
    targets = n * torch.arange(1, bins, dtype=torch.float64) / bins
    after = torch.searchsorted(cumulative, targets).clamp(max=SLOTS - 1)
    before = (after - 1).clamp(min=0)
    below, above = cumulative.gather(1, before), cumulative.gather(1, after)
    cuts = torch.where((after > 0) & (targets - below < above - targets), before, after)
    # Each slot's merged bin: how many cuts lie strictly before it.
    coarse = torch.searchsorted(cuts, torch.arange(SLOTS).expand(batch, SLOTS).contiguous())

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
    lower, upper = bounds(*layouts(totals["sigma_range"].unsqueeze(1)))
    occupied = counts > 0
    upper = torch.full((batch, bins), -np.inf, dtype=torch.float64).scatter_reduce_(
        1, coarse, torch.where(occupied, upper, -np.inf), reduce="amax"
    )
    first = torch.where(occupied.any(dim=1), occupied.to(torch.int8).argmax(dim=1), 0)
    return {
        "ence": ence.numpy(),
        "uncertainty_counts": n_bin.numpy(),
        "uncertainty_rmv": torch.where(filled, rmv, torch.nan).numpy(),
        "uncertainty_rmse": torch.where(filled, rmse, torch.nan).numpy(),
        "uncertainty_upper": upper.numpy(),
        "uncertainty_lower": lower.gather(1, first.unsqueeze(1)).numpy(),
        "sigma_counts": totals["sigma_counts"].numpy(),
    }


def row_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Pop one row's ``summaries`` values from ``values`` (lists, as ``tolist`` gives them) and
    return the report's fields: ``uncertainty_bins`` (``edges``, ``counts``, ``rmv``,
    ``rmse`` of the non-empty merged bins) and ``sigma_histogram`` (``edges`` and ``counts``
    of the coarse bins from the first to the last non-empty one)."""
    counts = values.pop("uncertainty_counts")
    rmv, rmse = values.pop("uncertainty_rmv"), values.pop("uncertainty_rmse")
    upper, (lower,) = values.pop("uncertainty_upper"), values.pop("uncertainty_lower")
    kept = [k for k, count in enumerate(counts) if count > 0]
    coarse = values.pop("sigma_counts")
    occupied = [j for j, count in enumerate(coarse) if count > 0]
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
            "counts": coarse[start:stop],
        },
    }
