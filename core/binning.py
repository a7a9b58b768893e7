"""Bin indices of values in [0, 1], the per-element step of the calibration sums.

Both kinds never read anything back from the device and map a NaN (from invalid input that is
reported after the chunk) to a valid bin, so the accumulation stays well defined.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_CELLS = 1024  # a power of two: ``value * _CELLS`` is exact, so a value's cell is exact


def uniform_bins(values: Tensor, steps: int, *, ceil: bool, offset: int, top: int) -> Tensor:
    """``ceil`` (or ``floor``) of ``values * steps``, plus ``offset``, clamped to ``[0, top]``.

    Clamped after the integer conversion, which truncates (the floor of a value ≥ 0).
    """
    scaled = values * steps
    if ceil:
        scaled.ceil_()
    if offset:
        scaled += offset
    return scaled.long().clamp_(0, top)


class EdgeBins:
    """``torch.bucketize(values, edges)`` for values in [0, 1] and a few sorted edges in [0, 1]:
    each value's bin is how many edges are strictly below it.

    A table over ``_CELLS`` equal cells replaces the binary search: the bin is the number of
    edges in earlier cells plus one comparison per edge sharing the value's cell (usually at
    most one). Comparisons are in float64, so the result equals ``bucketize``'s exactly.
    """

    def __init__(self, edges: Sequence[float], device: torch.device) -> None:
        edges = sorted(edges)
        cells = [min(int(edge * _CELLS), _CELLS - 1) for edge in edges]
        before = torch.tensor(cells, dtype=torch.int64)
        self._edges_before = torch.searchsorted(before, torch.arange(_CELLS)).to(device)
        self._cell_edges = []
        for k in range(max(cells.count(cell) for cell in cells) if cells else 0):
            table = torch.full((_CELLS,), torch.inf, dtype=torch.float64)
            for cell in set(cells):
                shared = [edge for edge, at in zip(edges, cells, strict=True) if at == cell]
                if k < len(shared):
                    table[cell] = shared[k]
            self._cell_edges.append(table.to(device))

    def __call__(self, values: Tensor) -> Tensor:
        """The bins, shaped like ``values``."""
        flat = values.reshape(-1)
        cell = (flat * _CELLS).long().clamp_(0, _CELLS - 1)
        bins = self._edges_before.index_select(0, cell)  # faster than take on the CPU
        for table in self._cell_edges:
            bins += flat > table.index_select(0, cell)
        return bins.reshape(values.shape)
