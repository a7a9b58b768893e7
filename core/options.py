"""What to score and how: the columns, torch's loss options, the non-finite policy, streaming."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from gaussnll.core.columns import ColumnSpec
from gaussnll.core.defaults import DEFAULT_CHUNK_ROWS, DEFAULT_EPS, DEFAULT_LEVELS, DEFAULT_PIT_BINS
from gaussnll.core.errors import UsageError
from gaussnll.core.loss import REDUCTIONS
from gaussnll.core.nonfinite import NAN_POLICIES

MAX_PIT_BINS = 1000
DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class ScoreOptions:
    """How to score: the columns, torch's loss options, and how to stream."""

    columns: ColumnSpec = field(default_factory=ColumnSpec)
    full: bool = False
    eps: float = DEFAULT_EPS
    reduction: str = "mean"
    chunk_size: int = DEFAULT_CHUNK_ROWS
    device: str = "auto"
    dtype: str = "float64"
    nan_policy: str = "error"
    delimiter: str = ","
    calibration: bool = True
    levels: tuple[float, ...] = DEFAULT_LEVELS
    pit_bins: int = DEFAULT_PIT_BINS
    workers: int = 0  # scoring threads; 0: automatic (see ``workers.auto_workers``)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise UsageError(f"--eps must be a finite number >= 0. Got {self.eps!r} instead.")
        if self.reduction not in REDUCTIONS:
            raise UsageError(f"--reduction must be mean, sum or none. Got {self.reduction!r}.")
        if self.chunk_size < 1:
            raise UsageError(f"--chunk-size must be at least 1. Got {self.chunk_size} instead.")
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype must be float64 or float32. Got {self.dtype!r} instead.")
        if len(self.delimiter) != 1 or self.delimiter in '\r\n"':
            raise UsageError(f"--delimiter must be one character. Got {self.delimiter!r} instead.")
        if self.nan_policy not in NAN_POLICIES:
            raise UsageError(
                f"--nan-policy must be error, skip or propagate. Got {self.nan_policy!r} instead."
            )
        if not self.levels or not all(0 < level < 1 for level in self.levels):
            raise UsageError(
                f"--levels must be numbers in (0, 1). Got {list(self.levels)} instead."
            )
        if self.workers < 0:
            raise UsageError(f"--workers must be 0 (automatic) or more. Got {self.workers}.")
        if not 1 <= self.pit_bins <= MAX_PIT_BINS:
            raise UsageError(
                f"--pit-bins must be between 1 and {MAX_PIT_BINS}. Got {self.pit_bins} instead."
            )
