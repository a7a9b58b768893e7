"""Compensated float64 sums that stay on the compute device until read."""

from __future__ import annotations

import torch
from torch import Tensor


class CompensatedSum:
    """A Neumaier-compensated running sum of float64 tensors of one shape.

    Adding chunk sums this way keeps the total independent of how the data was chunked to
    within a few ulps, even for millions of small chunks of mixed sign.
    """

    def __init__(self, shape: tuple[int, ...], device: torch.device) -> None:
        self.total = torch.zeros(shape, dtype=torch.float64, device=device)
        self.error = torch.zeros_like(self.total)

    def add(self, value: Tensor) -> None:
        """Add ``value`` (float64, the same shape) into the running sum."""
        total = self.total + value
        bigger_total = self.total.abs() >= value.abs()
        self.error += torch.where(
            bigger_total, (self.total - total) + value, (value - total) + self.total
        )
        self.total = total

    def merge(self, other: CompensatedSum) -> None:
        """Add another running sum into this one."""
        self.add(other.total.to(self.total.device))
        self.error += other.error.to(self.error.device)

    def value(self) -> Tensor:
        """The compensated total; where the total overflowed (or is NaN) the total itself, as a
        plain sum would give (the compensation of an infinite total is ``inf - inf``)."""
        return torch.where(torch.isfinite(self.total), self.total + self.error, self.total)
