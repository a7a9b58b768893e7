"""The paired differences of two models' per-row NLL, as mergeable sums (per group too)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from gaussnll.core.state.sinks import Placement, Sums


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
    """The sums of ``PairedTotals`` (compensated float64), for the whole input and, ``grouped``,
    per group (each row's group in its ``Placement``; ``reserve`` first); a ``weighted`` state
    takes each row's weight there. ``Sums`` weighs and groups them: mergeable."""

    def __init__(
        self, device: torch.device, *, grouped: bool = False, weighted: bool = False
    ) -> None:
        self._rows = Sums((), device, integer=True, grouped=grouped)
        self._sums = Sums((5,), device, grouped=grouped, weighted=weighted)

    @property
    def rows(self) -> int:
        """Paired rows added so far (read from the device)."""
        return int(self._rows.value()[0])

    def reserve(self, groups: int) -> None:
        """Make room for ``groups`` groups (grouped states only)."""
        self._rows.reserve(groups)
        self._sums.reserve(groups)

    def update(self, differences: Tensor, at: Placement) -> None:
        """Add the per-row differences of a chunk (1-D), placed (and weighed) by ``at``."""
        d = differences.to(torch.float64)
        self._rows.count(d.shape[0], at)
        parts = [torch.ones_like(d), d, d * d, (d < 0).to(d.dtype), (d > 0).to(d.dtype)]
        self._sums.add(torch.stack(parts, dim=1), at)

    def totals(self, by_group: bool = False) -> list[PairedTotals]:
        """The sums of the whole input (one) or of each group, read from the device."""
        rows = self._rows.value(by_group).cpu().tolist()
        sums = self._sums.value(by_group).cpu().tolist()
        return [PairedTotals(n, *row) for n, row in zip(rows, sums, strict=True)]
