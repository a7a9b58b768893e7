"""Quantile predictions: K quantiles per row at levels ``τ_1 < … < τ_K``, scored by sums of
their own (mergeable, chunk-invariant); there is no density, so no NLL.

Per element, with the target ``y`` and the quantiles ``q_k``:

- the pinball (quantile) loss ``rho_τ(y - q) = (1{y < q} - τ)(q - y)`` of each level;
- whether ``y ≤ q_k`` (the one-sided coverage of level ``τ_k``);
- for each symmetric pair ``(τ, 1 - τ)`` (central level ``1 - 2τ``), whether ``l ≤ y ≤ u``;
- whether the row's quantiles cross (``q_{k+1} < q_k`` somewhere): they are scored as given.

The interval score ``IS_α(l, u) = (u - l) + (2/α)(l - y)⁺ + (2/α)(y - u)⁺`` with ``α = 2τ``
equals ``(2/α)(rho_τ(y - l) + rho_{1-τ}(y - u))``, and the weighted interval score of Bracher et
al. (2021), ``(½|y - m| + Σ_k α_k/2 · IS_αk) / (K + ½)`` over the K pairs and the median
``m``, equals ``2/(2K + 1)`` times the sum of the pinball losses of its ``2K + 1`` levels: both
are linear in the pinball sums, so only those are kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.sinks import Placement, Sums

QUANTILES = "quantiles"  # the metric family (``core.families``)
MEDIAN = 0.5


@dataclass(frozen=True)
class QuantileLevels:
    """The levels ``τ`` (strictly increasing in (0, 1)) and what they make: the symmetric
    pairs (indices of ``τ`` and ``1 - τ``, narrowest interval first) and the median's index
    (None: no level 0.5, so no WIS)."""

    levels: tuple[float, ...]

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        found = []
        for low, tau in enumerate(self.levels):
            if tau >= MEDIAN:
                break
            high = self._index(1 - tau)
            if high is not None:
                found.append((low, high))
        return tuple(reversed(found))

    @property
    def median(self) -> int | None:
        return self._index(MEDIAN)

    @property
    def central(self) -> tuple[float, ...]:
        """Each pair's central level ``1 - 2τ``."""
        return tuple(1 - 2 * self.levels[low] for low, _ in self.pairs)

    @property
    def wis_weights(self) -> Tensor | None:
        """The factors on the levels' mean pinball losses whose sum is the WIS: ``2/(2K+1)``
        on the median and each pair's levels, 0 elsewhere (None: no median)."""
        median = self.median
        if median is None:
            return None
        used = [median, *(k for pair in self.pairs for k in pair)]
        weights = torch.zeros(len(self.levels), dtype=torch.float64)
        weights[used] = 2 / len(used)
        return weights

    def _index(self, tau: float) -> int | None:
        matches = [k for k, known in enumerate(self.levels) if math.isclose(known, tau)]
        return matches[0] if matches else None


def pinball(quantiles: Tensor, target: Tensor, levels: Tensor) -> Tensor:
    """``rho_τ(y - q)`` of each element, ``(rows, K)``; ``target`` is ``(rows, 1)``."""
    below = (target < quantiles).to(quantiles.dtype)
    return (below - levels) * (quantiles - target)


def row_wis(quantiles: Tensor, target: Tensor, spec: QuantileLevels) -> Tensor:
    """Each row's weighted interval score, ``(rows, 1)`` (NaN without a median level)."""
    levels = torch.tensor(spec.levels, dtype=quantiles.dtype, device=quantiles.device)
    return wis_of(pinball(quantiles, target, levels), spec)


def wis_of(losses: Tensor, spec: QuantileLevels) -> Tensor:
    """Each row's weighted interval score from its pinball losses at ``spec``'s levels
    ``(rows, K)``: ``(rows, 1)`` (NaN without a median level)."""
    weights = spec.wis_weights
    if weights is None:
        return torch.full_like(losses[:, :1], math.nan)
    return losses @ weights.to(losses.dtype).to(losses.device).unsqueeze(1)


class QuantileState:
    """Sums over rows of each level's pinball loss and one-sided hits, each pair's hits, and a
    count of rows whose quantiles cross (unweighted), for the whole input or per group."""

    def __init__(
        self,
        levels: Sequence[float],
        device: torch.device,
        *,
        grouped: bool = False,
        weighted: bool = False,
    ) -> None:
        self.spec = QuantileLevels(tuple(levels))
        self.grouped = grouped
        self.families = frozenset({QUANTILES})
        k, pairs = len(self.spec.levels), len(self.spec.pairs)
        self._sums = Sums(
            (2 * k + pairs,), device, weighted=weighted, grouped=grouped, total=not grouped
        )
        self._crossing = Sums((), device, integer=True, grouped=grouped, total=not grouped)

    def update(self, batch: RowBatch) -> Tensor:
        """Add a chunk's rows (a quantile model's: ``batch.quantiles`` and its target); return
        each row's WIS ``(rows, 1)``, for per-row output, from the same pinball losses."""
        quantiles, target = batch.quantiles, batch.target
        if quantiles is None or target is None:
            raise ValueError("a quantile state needs each row's quantiles and target")
        rows = batch.shared(QUANTILES, lambda: self._per_row(quantiles, target))
        self._sums.add(rows, batch.at)
        crossing = (quantiles[:, 1:] < quantiles[:, :-1]).any(dim=1, keepdim=True)
        self._crossing.count_flags(crossing, Placement(batch.at.group))
        return wis_of(rows[:, : len(self.spec.levels)], self.spec)

    def _per_row(self, quantiles: Tensor, target: Tensor) -> Tensor:
        """``(rows, 2K + pairs)``: pinball losses, ``y ≤ q`` hits, then each pair's hits."""
        levels = torch.tensor(self.spec.levels, dtype=quantiles.dtype, device=quantiles.device)
        below = target <= quantiles
        inside = [
            below[:, high] & (quantiles[:, low] <= target[:, 0]) for low, high in self.spec.pairs
        ]
        parts = [pinball(quantiles, target, levels), below.to(quantiles.dtype)]
        if inside:
            parts.append(torch.stack(inside, dim=1).to(quantiles.dtype))
        return torch.cat(parts, dim=1)

    def reserve(self, groups: int) -> None:
        self._sums.reserve(groups)
        self._crossing.reserve(groups)

    @property
    def bytes_per_group(self) -> int:
        return self._sums.bytes_per_group + self._crossing.bytes_per_group

    def merge(self, other: QuantileState, mapping: Tensor | None = None) -> None:
        """Add another state of the same levels."""
        if other.spec != self.spec:
            raise ValueError("cannot merge quantile states of different levels")
        self._sums.merge(other._sums, mapping)
        self._crossing.merge(other._crossing, mapping)

    def totals(self, by_group: bool = False) -> dict[str, Tensor]:
        """On the CPU, ``(1 or groups, ...)``: ``pinball`` and ``below`` ``(B, K)``,
        ``inside`` ``(B, pairs)``, ``crossing`` ``(B,)``."""
        sums = self._sums.value(by_group).cpu()
        k = len(self.spec.levels)
        return {
            "pinball": sums[:, :k],
            "below": sums[:, k : 2 * k],
            "inside": sums[:, 2 * k :],
            "crossing": self._crossing.value(by_group).cpu(),
        }
