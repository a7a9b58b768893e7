"""The paired differences of two models' per-row NLL, as mergeable sums."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from gaussnll.core.state.summation import CompensatedSum


class PairedTotals(NamedTuple):
    """Rows; and, each row counted with its weight (1 unweighted): Σw, Σwd, Σwd², and Σw over
    the rows with ``d < 0`` and with ``d > 0``."""

    rows: int
    weight: float
    total: float
    squares: float
    negative: float
    positive: float


class PairedDifferences:
    """The sums of ``PairedTotals`` (compensated float64, exact counts up to 2⁵³): mergeable."""

    def __init__(self, device: torch.device) -> None:
        self.rows = 0
        self._sums = CompensatedSum((5,), device)

    def update(self, differences: Tensor, weight: Tensor | None = None) -> None:
        """Add the per-row differences of a chunk (1-D), and each row's weight (1-D; None:
        1 each)."""
        d = differences.to(torch.float64)
        w = torch.ones_like(d) if weight is None else weight.to(torch.float64)
        self.rows += d.shape[0]
        wd = w * d
        parts = [w, wd, wd * d, torch.where(d < 0, w, 0.0), torch.where(d > 0, w, 0.0)]
        self._sums.add(torch.stack([part.sum() for part in parts]))

    def merge(self, other: PairedDifferences) -> None:
        self.rows += other.rows
        self._sums.merge(other._sums)

    def totals(self) -> PairedTotals:
        """The sums, read from the device."""
        return PairedTotals(self.rows, *self._sums.value().tolist())
