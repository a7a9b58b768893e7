"""The paired differences of two models' per-row NLL, as mergeable sums."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from gaussnll.core.state.summation import CompensatedSum


class PairedTotals(NamedTuple):
    """Rows, Σd, Σd², and how many rows have ``d < 0`` and ``d > 0``."""

    rows: int
    total: float
    squares: float
    negative: int
    positive: int


class PairedDifferences:
    """Σd, Σd² (compensated float64) and the counts of ``d < 0`` and ``d > 0``: mergeable."""

    def __init__(self, device: torch.device) -> None:
        self.rows = 0
        self._sums = CompensatedSum((2,), device)
        self._signs = torch.zeros(2, dtype=torch.int64, device=device)

    def update(self, differences: Tensor) -> None:
        """Add the per-row differences of a chunk (1-D)."""
        d = differences.to(torch.float64)
        self.rows += d.shape[0]
        self._sums.add(torch.stack([d.sum(), (d * d).sum()]))
        self._signs += torch.stack([(d < 0).sum(), (d > 0).sum()])

    def merge(self, other: PairedDifferences) -> None:
        self.rows += other.rows
        self._sums.merge(other._sums)
        self._signs += other._signs.to(self._signs.device)

    def totals(self) -> PairedTotals:
        """The sums, read from the device."""
        total, squares = self._sums.value().tolist()
        better, worse = self._signs.tolist()
        return PairedTotals(self.rows, total, squares, better, worse)
