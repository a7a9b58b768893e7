"""The mergeable scoring state: every field is a sum, so chunking and order do not matter."""

from __future__ import annotations

import torch
from torch import Tensor

from gaussnll.core.summation import CompensatedSum


class ScoreState:
    """Sums of per-element losses, per output column, in float64 on the compute device.

    ``update`` adds a chunk, ``merge`` adds another state (e.g. from another worker or file
    partition), and ``loss_sums`` reads the totals with one device synchronisation.
    """

    def __init__(self, outputs: int, device: torch.device) -> None:
        self.rows = 0
        self.outputs = outputs
        self._loss = CompensatedSum((outputs,), device)

    def update(self, loss: Tensor) -> Tensor:
        """Add a chunk of element-wise losses ``(rows, outputs)``; return its per-output sums."""
        chunk_sums = loss.sum(dim=0, dtype=torch.float64)
        self.rows += loss.shape[0]
        self._loss.add(chunk_sums)
        return chunk_sums

    def merge(self, other: ScoreState) -> None:
        """Add ``other``, a state of the same outputs, into this one."""
        if other.outputs != self.outputs:
            raise ValueError(f"cannot merge states of {other.outputs} and {self.outputs} outputs")
        self.rows += other.rows
        self._loss.merge(other._loss)

    def loss_sums(self) -> list[float]:
        """The per-output loss sums (without the ``full`` constant)."""
        return self._loss.value().cpu().tolist()
