"""Quantile bins for ``--by`` intervals: edges that split a numeric column's values into K bins
of nearly equal count, found in a first pass over that column alone.

The values are thinned to at most ``SAMPLE`` (every 2nd, then every 4th ... value, in file
order), so the pass holds bounded memory; the edges are then quantiles of that sample. They are
shown in the group keys, so each group is exactly defined whatever the sample.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import pyarrow as pa

from gaussnll.core.errors import InputError
from gaussnll.core.options import ScoreOptions

SAMPLE = 1 << 20


class _Thinned:
    """Every ``stride``-th value seen, the stride doubling whenever more than ``SAMPLE`` are
    kept."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.kept = 0
        self.stride = 1
        self.seen = 0

    def add(self, values: np.ndarray) -> None:
        offset = (-self.seen) % self.stride
        self.seen += len(values)
        part = values[offset :: self.stride]
        self.parts.append(part[~np.isnan(part)])
        self.kept += len(self.parts[-1])
        while self.kept > SAMPLE:
            whole = np.concatenate(self.parts)[::2]
            self.parts, self.kept, self.stride = [whole], len(whole), self.stride * 2

    def values(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.empty(0)


def with_quantile_edges(
    options: ScoreOptions, batches: Iterable[tuple[str, pa.RecordBatch]]
) -> ScoreOptions:
    """``options`` with each quantile-bin count replaced by its edges, from ``batches`` (the
    interval columns' values, in file order)."""
    counts = {name: bins for name, bins in options.intervals.items() if isinstance(bins, int)}
    samples = {name: _Thinned() for name in counts}
    for path, batch in batches:
        for name, sample in samples.items():
            column = batch.column(name)
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                raise InputError(
                    f"holds {column.type} values; quantile bins need a numeric column",
                    path=path,
                    column=name,
                )
            sample.add(column.to_numpy(zero_copy_only=False).astype(np.float64))
    intervals = dict(options.intervals)
    for name, bins in counts.items():
        values = samples[name].values()
        if not len(values):
            raise InputError("has no numeric value to find quantile bins in", column=name)
        inner = np.quantile(values, np.arange(1, bins) / bins)
        intervals[name] = tuple(np.unique(inner).tolist())
    return replace(options, intervals=intervals)


def needs_quantiles(options: ScoreOptions) -> list[str]:
    """The interval columns given as a number of quantile bins."""
    return [name for name, bins in options.intervals.items() if isinstance(bins, int)]
