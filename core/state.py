"""The mergeable scoring state: every field is a sum, so chunking and order do not matter."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from gaussnll.core.calibration import CalibrationState
from gaussnll.core.nonfinite import SKIP_REASONS
from gaussnll.core.summation import CompensatedSum


class ScoreState:
    """Per-output sums of element losses (and, given levels, calibration sums and counts).

    ``update`` adds a chunk, ``merge`` adds another state (e.g. from another worker or file
    partition); nothing is read back from the device until the caller asks.
    """

    def __init__(
        self,
        outputs: int,
        device: torch.device,
        *,
        levels: Sequence[float] | None = None,
        pit_bins: int = 20,
    ) -> None:
        self.rows = 0
        self.outputs = outputs
        self._loss = CompensatedSum((outputs,), device)
        self.calibration = (
            CalibrationState(outputs, levels, pit_bins, device) if levels is not None else None
        )
        self.skipped_rows = torch.zeros((), dtype=torch.int64, device=device)
        self.skipped_reasons = torch.zeros(len(SKIP_REASONS), dtype=torch.int64, device=device)
        self.eps_floored = torch.zeros((), dtype=torch.int64, device=device)

    def count_skipped(self, kept: Tensor, reasons: Tensor) -> None:
        """Add the rows not ``kept`` for non-finite values, and their reasons (``SKIP_REASONS``)."""
        self.skipped_rows += (~kept).sum()
        self.skipped_reasons += reasons

    def count_floored(self, var: Tensor, eps: float) -> None:
        """Add how many variance values ``max(var, eps)`` raised."""
        self.eps_floored += (var < eps).sum()

    def update(self, loss: Tensor, mean: Tensor, target: Tensor, floored_var: Tensor) -> Tensor:
        """Add a chunk: element losses ``(rows, outputs)`` and the inputs they came from.

        Returns the chunk's per-output loss sums, for the caller's validity check.
        """
        chunk_sums = loss.sum(dim=0, dtype=torch.float64)
        self.rows += loss.shape[0]
        self._loss.add(chunk_sums)
        if self.calibration is not None:
            self.calibration.update(mean, target, floored_var)
        return chunk_sums

    def merge(self, other: ScoreState) -> None:
        """Add ``other``, a state of the same outputs and calibration grid, into this one."""
        if other.outputs != self.outputs:
            raise ValueError(f"cannot merge states of {other.outputs} and {self.outputs} outputs")
        if (self.calibration is None) != (other.calibration is None):
            raise ValueError("cannot merge a state with calibration into one without")
        self.rows += other.rows
        self._loss.merge(other._loss)
        self.skipped_rows += other.skipped_rows.to(self.skipped_rows.device)
        self.skipped_reasons += other.skipped_reasons.to(self.skipped_reasons.device)
        self.eps_floored += other.eps_floored.to(self.eps_floored.device)
        if self.calibration is not None:
            self.calibration.merge(other.calibration)

    def loss_sums(self) -> list[float]:
        """The per-output loss sums (without the ``full`` constant)."""
        return self._loss.value().cpu().tolist()
