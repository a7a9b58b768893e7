"""Bin indices of values in [0, 1], the per-element step of the calibration sums, and the
folding of per-cell sums into bins at the end.

The per-element lookups never read anything back from the device and map a NaN (from invalid
input that is reported after the chunk) to a valid bin, so the accumulation stays well defined.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor

_MIN_CELLS, _MAX_CELLS = 1 << 10, 1 << 16  # powers of two: ``value * cells`` is exact


def uniform_bins(values: Tensor, steps: int, *, scale: float | None = None) -> Tensor:
    """``floor(values * scale)`` (``scale`` defaults to ``steps``) clamped to ``[0, steps - 1]``:
    the bin of each value among ``steps`` equal bins of [0, 1] (1 goes in the last), or of
    ``values`` that are the bin value times ``steps / scale``. Clamped after the integer
    conversion, which truncates (the floor of a value ≥ 0)."""
    return (values * (steps if scale is None else scale)).long().clamp_(0, steps - 1)


class EdgeBins:
    """``torch.bucketize(values, edges)`` for values in [0, 1] and sorted edges in [0, 1]: each
    value's bin is how many edges are strictly below it.

    A table over equal cells replaces the binary search: the bin is the number of edges in
    earlier cells plus one comparison per edge sharing the value's cell. There are enough
    cells (up to ``_MAX_CELLS``) for each edge to have a cell of its own, so that is one
    comparison. Comparisons are in float64, so the result equals ``bucketize``'s exactly.
    """

    def __init__(self, edges: Sequence[float], device: torch.device) -> None:
        edges = sorted(edges)
        self._cells = _MIN_CELLS
        while self._cells < _MAX_CELLS and _most_per_cell(edges, self._cells) > 1:
            self._cells *= 2
        cells = [_cell(edge, self._cells) for edge in edges]
        before = torch.tensor(cells, dtype=torch.int64)
        self._edges_before = torch.searchsorted(before, torch.arange(self._cells)).to(device)
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
        # int32 converts and clamps faster than int64; index_select takes either.
        cell = (flat * self._cells).int().clamp_(0, self._cells - 1)
        bins = self._edges_before.index_select(0, cell)
        for table in self._cell_edges:
            bins += flat > table.index_select(0, cell)
        return bins.reshape(values.shape)


class SharedCells:
    """The cells of values in [0, 1] among the edges of several grids at once (cell ``c``: ``c``
    edges strictly below). One exact lookup per value; each grid's bin (its ``bucketize``) is
    a fixed function of the cell, ``bin_of_cell[grid]``, so per-cell sums fold into any grid's
    bins at the end (``folded``)."""

    def __init__(self, grids: dict[str, Sequence[float]], device: torch.device) -> None:
        self.edges = sorted({edge for edges in grids.values() for edge in edges})
        self.cells = len(self.edges) + 1
        self._lookup = EdgeBins(self.edges, device)
        self.bin_of_cell = {name: bins_of_cells(self.edges, edges) for name, edges in grids.items()}

    def __call__(self, values: Tensor) -> Tensor:
        """The cells (int64), shaped like ``values``."""
        return self._lookup(values)


def bins_of_cells(cell_edges: Sequence[float], edges: Sequence[float]) -> Tensor:
    """For each cell of sorted ``cell_edges``, its bin among ``edges`` (some of ``cell_edges``):
    exact, since every value of a cell is above the same edges."""
    members = set(edges)
    return torch.tensor(list(itertools.accumulate((e in members for e in cell_edges), initial=0)))


def folded(values: Tensor, bin_of_cell: Tensor) -> Tensor:
    """``values`` per cell (last axis) summed into their bins."""
    bins = int(bin_of_cell[-1]) + 1
    return values.new_zeros((*values.shape[:-1], bins)).index_add_(-1, bin_of_cell, values)


def _cell(edge: float, cells: int) -> int:
    return min(int(edge * cells), cells - 1)


def _most_per_cell(edges: Sequence[float], cells: int) -> int:
    """The most edges that share one of ``cells`` equal cells."""
    counts = Counter(_cell(edge, cells) for edge in edges)
    return max(counts.values(), default=0)
