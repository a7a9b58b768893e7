"""The calibration's bins of ``e = erf(z/√2)`` in [-1, 1]: one exact lookup per element finds
its cell among the edges of every grid at once, and per-cell sums fold into each grid's bins at
the end.

Two kinds of grid, both step functions of ``e``:

- ``LevelGrid``: central levels ``p``; an element's bin is how many of the central
  p-intervals it is outside of (``|e| > p``; bounds are inside, as uncertainty-toolbox).
- ``QuantileGrid``: ``u = (1 + e)/2`` in ``steps`` equal bins; a value on a boundary goes to
  the bin nearer ``u = 1/2`` (the side of a central interval's bound), and ``u = 1/2`` to the
  upper one. The boundaries are then the level grids' own edges: no extra cells.
- ``OneSidedGrid``: one-sided levels ``τ = k/steps``; an element's bin is how many of them are
  strictly below ``u``, so the count of bins ``≤ k`` is that of ``u ≤ τ_k`` (inclusive, as
  ``y ≤ F⁻¹(τ)``). Its negative edges are the exact boundaries, one float above the level
  grids' (whose bounds are inside the central interval): a cell each.

A cell holds the values between two consecutive edges, so every grid's bin is a fixed function
of the cell (``Cells.bin_of_cell``), and so is the sign of ``e`` (0 has a cell of its
own). The lookup never reads anything back from the device and puts a NaN (from invalid input,
reported after the chunk) in a valid cell, so the accumulation stays well defined.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

_MIN_CELLS, _MAX_CELLS = 1 << 10, 1 << 17  # powers of two: ``value * cells/2`` is exact
_BELOW_ZERO = math.nextafter(-0.0, -1.0)  # the largest negative float


class Grid(Protocol):
    """A step function of ``e``: ``bin(e)`` is the number of ``edges`` strictly below ``e``
    (for the steps it counts; some edges may not change it)."""

    def edges(self) -> list[float]: ...

    def bin(self, e: float) -> int: ...


@dataclass(frozen=True)
class LevelGrid:
    """Central levels: ``bin(e)`` is how many of ``levels`` are strictly below ``|e|``."""

    levels: tuple[float, ...]

    def edges(self) -> list[float]:
        # e > p on the positive side; e < -p, i.e. not above the float below -p, on the other.
        return [edge for p in self.levels for edge in (p, math.nextafter(-p, -1.0))]

    @functools.cached_property
    def _sorted(self) -> list[float]:
        return sorted(self.levels)

    def bin(self, e: float) -> int:
        return bisect.bisect_left(self._sorted, abs(e))


@dataclass(frozen=True)
class QuantileGrid:
    """``u = (1 + e)/2`` in ``steps`` equal bins: the boundary ``u = i/steps`` sits at
    ``ε = (2i - steps)/steps`` (correctly rounded, so it equals the level ``|ε|`` of a
    ``LevelGrid`` to the bit); ``e`` is above it when ``e > ε`` for ``ε > 0`` and ``e ≥ ε``
    for ``ε ≤ 0``."""

    steps: int

    @functools.cached_property
    def _boundaries(self) -> list[float]:
        """The ``ε`` of each boundary, ascending."""
        return [
            math.copysign(abs(2 * i - self.steps) / self.steps, 2 * i - self.steps)
            for i in range(1, self.steps)
        ]

    def edges(self) -> list[float]:
        return [eps if eps > 0 else math.nextafter(eps, -1.0) for eps in self._boundaries]

    def bin(self, e: float) -> int:
        if e > 0:  # above every ε ≤ 0, and above the positive ones strictly below e
            return bisect.bisect_left(self._boundaries, e)
        return bisect.bisect_right(self._boundaries, e)  # the ε ≤ e (all ≤ 0)

    def u_bins(self, u: Tensor) -> Tensor:
        """The bin of each PIT ``u`` given as such (a mixture's), by the same rule: a value on
        a boundary ``i/steps`` in the bin nearer ½, ½ in the upper one (NaN: ``steps``, no
        bin)."""
        boundaries = torch.arange(1, self.steps, dtype=u.dtype, device=u.device) / self.steps
        lower, upper = boundaries[boundaries <= 0.5], boundaries[boundaries > 0.5]
        u = u.contiguous()
        bins = torch.searchsorted(lower, u, right=True) + torch.searchsorted(upper, u)
        return torch.where(torch.isnan(u), self.steps, bins)


@dataclass(frozen=True)
class OneSidedGrid:
    """One-sided levels ``τ_k = k/steps``, ``k = 0..steps - 1`` (``τ = 1`` holds every
    element): ``u ≤ τ_k`` is ``e ≤ ε_k = (2k - steps)/steps`` (correctly rounded, as
    ``QuantileGrid``'s boundaries), and ``bin(e)`` is how many ``ε_k`` are strictly below
    ``e``."""

    steps: int

    @functools.cached_property
    def _boundaries(self) -> list[float]:
        """The ``ε_k``, ascending (``ε_0 = -1``: ``u ≤ 0``)."""
        return [
            math.copysign(abs(2 * k - self.steps) / self.steps, 2 * k - self.steps)
            for k in range(self.steps)
        ]

    def edges(self) -> list[float]:
        return list(self._boundaries)

    def bin(self, e: float) -> int:
        return bisect.bisect_left(self._boundaries, e)

    def u_bins(self, u: Tensor) -> Tensor:
        """The bin of each PIT ``u`` given as such (a mixture's): how many ``τ_k`` are
        strictly below it (NaN: ``steps + 1``, no bin)."""
        levels = torch.arange(self.steps, dtype=u.dtype, device=u.device) / self.steps
        bins = torch.searchsorted(levels, u.contiguous())
        return torch.where(torch.isnan(u), self.steps + 1, bins)


class EdgeBins:
    """``torch.bucketize(values, edges)`` for values in [-1, 1] and sorted edges in [-1, 1):
    each value's bin is how many edges are strictly below it.

    A table over equal cells replaces the binary search: the bin is the number of edges in
    earlier cells plus one comparison per edge sharing the value's cell. There are enough
    cells (up to ``_MAX_CELLS``) for each edge to have a cell of its own, so that is one
    comparison. The cell is ``floor(value · cells/2)`` (offset), exact and monotone, with 0
    on a cell boundary; comparisons are in float64, so the result equals ``bucketize``'s.
    """

    def __init__(self, edges: Sequence[float], device: torch.device) -> None:
        edges = sorted(edges)
        self._cells = _MIN_CELLS
        while self._cells < _MAX_CELLS and _most_per_cell(edges, self._cells) > 1:
            self._cells *= 2
        cells = [_cell(edge, self._cells) for edge in edges]
        before = torch.searchsorted(torch.tensor(cells), torch.arange(self._cells))
        self._edges_before = before.to(device, torch.int32)  # int32: faster to gather and add
        self._cell_edges = []
        for k in range(_most_per_cell(edges, self._cells)):
            table = torch.full((self._cells,), torch.inf, dtype=torch.float64)
            for cell in set(cells):
                shared = [edge for edge, at in zip(edges, cells, strict=True) if at == cell]
                if k < len(shared):
                    table[cell] = shared[k]
            self._cell_edges.append(table.to(device))

    def __call__(self, values: Tensor) -> Tensor:
        """The bins (int64), shaped like ``values``."""
        flat = values.reshape(-1)
        half = self._cells // 2
        cell = (flat * half).floor_().add_(half).int().clamp_(0, self._cells - 1)
        bins = self._edges_before.index_select(0, cell)
        for table in self._cell_edges:
            bins += flat > table.index_select(0, cell)
        return bins.long().reshape(values.shape)


class Cells:
    """The cells of ``e`` among the edges of several grids (cell ``c``: ``c`` edges strictly
    below), and what is fixed per cell: each grid's bin, ``bin_of_cell[grid]``, so per-cell
    sums fold into any grid's bins at the end (``folded``), and the sign every ``e`` in the
    cell has, ``sign_of_cell`` (0: ``e = ±0``, which has a cell of its own)."""

    def __init__(self, grids: dict[str, Grid]) -> None:
        edges = {_BELOW_ZERO, 0.0}
        for grid in grids.values():
            edges.update(grid.edges())
        self.edges = sorted(edges)
        self.cells = len(self.edges) + 1
        self._largest = [*self.edges, 1.0]  # of each cell: it stands for all of the cell
        self.bin_of_cell = {
            name: torch.tensor([grid.bin(e) for e in self._largest]) for name, grid in grids.items()
        }
        self.sign_of_cell = torch.tensor(
            [math.copysign(1.0, e) if e else 0.0 for e in self._largest]
        )

    def lookup(self, device: torch.device) -> EdgeBins:
        """The exact lookup of values' cells (int64): one per edges and device in a process,
        as making it takes tens of ms (a Dask task makes a state per partition)."""
        return _edge_bins(tuple(self.edges), device)

    def cell_of(self, finer: Cells) -> Tensor:
        """This grouping's cell of each cell of ``finer``, whose edges include these."""
        return torch.tensor([bisect.bisect_left(self.edges, e) for e in finer._largest])


def folded(values: Tensor, bin_of_cell: Tensor) -> Tensor:
    """``values`` per cell (last axis) summed into their bins."""
    bins = int(bin_of_cell.max()) + 1
    return values.new_zeros((*values.shape[:-1], bins)).index_add_(-1, bin_of_cell, values)


def _cell(edge: float, cells: int) -> int:
    return min(max(math.floor(edge * (cells // 2)) + cells // 2, 0), cells - 1)


def _most_per_cell(edges: Sequence[float], cells: int) -> int:
    """The most edges that share one of ``cells`` equal cells."""
    counts = Counter(_cell(edge, cells) for edge in edges)
    return max(counts.values(), default=0)


@functools.lru_cache(maxsize=16)
def _edge_bins(edges: tuple[float, ...], device: torch.device) -> EdgeBins:
    return EdgeBins(edges, device)  # read only once made: safe to share
