"""The paired differences of two models' per-row scores, as mergeable sums (per group too).

One accumulator for every paired score: a chunk's scores are ``(rows, scores)`` per model, one
column per score the comparison pairs (``nll``, ``crps``, ``wis``...), summed side by side.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from gaussnll.core.state.sinks import Placement, Sums

_PARTS = 5  # per score: Σwd, Σwd², Σw over d < 0, Σw over d > 0, Σwb


class PairedTotals(NamedTuple):
    """Rows; and, each row counted with its weight (1 unweighted): Σw, Σwd, Σwd², Σw over
    the rows with ``d < 0`` and with ``d > 0``, and Σwb of the baseline's scores ``b``."""

    rows: int
    weight: float
    total: float
    squares: float
    negative: float
    positive: float
    baseline: float = 0.0


class PairedDifferences:
    """The sums of ``PairedTotals`` of each of ``scores`` paired scores (compensated float64),
    for the whole input and, ``grouped``, per group (each row's group in its ``Placement``;
    ``reserve`` first); a ``weighted`` state takes each row's weight there. ``Sums`` weighs and
    groups them: mergeable."""

    def __init__(
        self,
        device: torch.device,
        *,
        scores: int = 1,
        grouped: bool = False,
        weighted: bool = False,
    ) -> None:
        self.scores = scores
        self._rows = Sums((), device, integer=True, grouped=grouped)
        self._sums = Sums((1 + _PARTS * scores,), device, grouped=grouped, weighted=weighted)

    @property
    def rows(self) -> int:
        """Paired rows added so far (read from the device)."""
        return int(self._rows.value()[0])

    def reserve(self, groups: int) -> None:
        """Make room for ``groups`` groups (grouped states only)."""
        self._rows.reserve(groups)
        self._sums.reserve(groups)

    def update(self, baseline: Tensor, candidate: Tensor, at: Placement) -> None:
        """Add a chunk's rows' scores of both models, ``(rows, scores)`` each, placed (and
        weighed) by ``at``: their differences ``d = candidate - baseline``."""
        b = baseline.to(torch.float64)
        d = candidate.to(torch.float64) - b
        self._rows.count(d.shape[0], at)
        parts = torch.stack([d, d * d, (d < 0).to(d.dtype), (d > 0).to(d.dtype), b], dim=2)
        self._sums.add(torch.cat([torch.ones_like(d[:, :1]), parts.flatten(1)], dim=1), at)

    def totals(self, by_group: bool = False) -> list[list[PairedTotals]]:
        """The sums of the whole input (one) or of each group, each a list of one
        ``PairedTotals`` per score, read from the device."""
        rows = self._rows.value(by_group).cpu().tolist()
        sums = self._sums.value(by_group).cpu().tolist()
        return [
            [
                PairedTotals(n, row[0], *row[1 + _PARTS * k : 1 + _PARTS * (k + 1)])
                for k in range(self.scores)
            ]
            for n, row in zip(rows, sums, strict=True)
        ]
