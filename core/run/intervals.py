"""Quantile bins for ``--by`` intervals: edges that split a numeric column's values into K bins
of nearly equal count, found in a first pass over that column alone.

The values are thinned to at most ``SAMPLE`` (every 2nd, then every 4th ... value, in file
order), so the pass holds bounded memory; the edges are then quantiles of that sample. They are
shown in the group keys, so each group is exactly defined whatever the sample.

With row weights (``columns.weight``) the quantiles are weighted: those ``np.quantile`` gives
for each value repeated as many times as its integer weight; other weights count by their
ratios (``weighted_quantiles``). Rows of weight 0, or of a weight the scoring pass will refuse,
are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import pyarrow as pa

from gaussnll.core.errors import InputError
from gaussnll.core.io.tensors import float_values
from gaussnll.core.options import QuantileEdges, ScoreOptions

SAMPLE = 1 << 20


class _Thinned:
    """Every ``stride``-th value seen (with its weight), the stride doubling whenever more than
    ``SAMPLE`` are kept."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []  # (values, weights) rows
        self.kept = 0
        self.stride = 1
        self.seen = 0

    def add(self, values: np.ndarray, weights: np.ndarray) -> None:
        offset = (-self.seen) % self.stride
        self.seen += len(values)
        part = np.stack([values, weights], axis=1)[offset :: self.stride]
        value, weight = part[:, 0], part[:, 1]
        self.parts.append(part[~np.isnan(value) & (weight > 0) & (weight < np.inf)])
        self.kept += len(self.parts[-1])
        while self.kept > SAMPLE:
            whole = np.concatenate(self.parts)[::2]
            self.parts, self.kept, self.stride = [whole], len(whole), self.stride * 2

    def quantiles(self, levels: np.ndarray) -> np.ndarray:
        """The weighted quantiles at ``levels`` of the values kept (none: an empty array)."""
        if not self.kept:
            return np.empty(0)
        kept = np.concatenate(self.parts)
        return weighted_quantiles(kept[:, 0], kept[:, 1], levels)


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``np.quantile`` (its default, linear method) of ``values`` each repeated ``weights``
    times: the sorted values' positions run over ``[0, Σw)``, value ``k`` covering
    ``weights[k]`` of them, and a level's position is ``(Σw - 1)·p``.

    Weights that are not all whole numbers are first divided by the smallest, which then counts
    as one value: only their ratios count, equal weights give the unweighted quantiles, and
    relative weights (summing to 1) do not put every position at 0, the smallest value."""
    if not np.array_equal(weights, np.round(weights)):
        weights = weights / weights.min()
    order = np.argsort(values, kind="stable")
    values, ends = values[order], np.cumsum(weights[order])
    position = (ends[-1] - 1) * levels
    below = np.floor(position)
    last = len(values) - 1
    low = values[np.minimum(np.searchsorted(ends, below, side="right"), last)]
    high = values[np.minimum(np.searchsorted(ends, below + 1, side="right"), last)]
    fraction = position - below
    # numpy's lerp: from the nearer end, so a level's quantile is the same bits as its own.
    return np.where(
        fraction >= 0.5, high - (high - low) * (1 - fraction), low + (high - low) * fraction
    )


def with_quantile_edges(
    options: ScoreOptions, batches: Iterable[tuple[str, pa.RecordBatch]]
) -> ScoreOptions:
    """``options`` with each quantile-bin count replaced by its edges, from ``batches`` (the
    interval columns' values, and the weight column if any, in file order)."""
    counts = {name: bins for name, bins in options.intervals.items() if isinstance(bins, int)}
    samples = {name: _Thinned() for name in counts}
    weight_column = options.columns.weight
    for path, batch in batches:
        weights = np.ones(batch.num_rows)
        if weight_column is not None:
            weights = _numbers(batch, weight_column, path, "weights must be numbers")
        for name, sample in samples.items():
            sample.add(_numbers(batch, name, path, "quantile bins need a numeric column"), weights)
    intervals = dict(options.intervals)
    for name, bins in counts.items():
        inner = samples[name].quantiles(np.arange(1, bins) / bins)
        if not len(inner):
            raise InputError("has no numeric value to find quantile bins in", column=name)
        intervals[name] = QuantileEdges(np.unique(inner).tolist())
    return replace(options, intervals=intervals)


def _numbers(batch: pa.RecordBatch, name: str, path: str, expected: str) -> np.ndarray:
    """The column ``name`` of ``batch`` as float64 (missing values NaN)."""
    column = batch.column(name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise InputError(f"holds {column.type} values; {expected}", path=path, column=name)
    return float_values(column)


def needs_quantiles(options: ScoreOptions) -> list[str]:
    """The interval columns given as a number of quantile bins."""
    return [name for name, bins in options.intervals.items() if isinstance(bins, int)]
