"""Record batches as chunks of tensors on the device: each role ``(rows, width)``, with where
the rows came from (file and row numbers) and, with ``--by``, each row's group index."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import torch
from torch import Tensor

from gaussnll.core.io.forms import FORMS
from gaussnll.core.io.grouping import GroupKeys
from gaussnll.core.io.scales import ScaleLookup
from gaussnll.core.io.tensors import DTYPES, Conversion, Location
from gaussnll.core.io.transfer import HostToDevice, wait_for
from gaussnll.core.options import ScoreOptions, Spread


@dataclass(frozen=True)
class Chunk:
    """Rows on the device: each role as a ``(rows, width)`` tensor, and where they came from.

    An ensemble's mean and spread are ``(rows, members, width)`` (``ScoreOptions.ensemble``);
    samples' mean holds the draws, ``(rows, M, width)``, and the spread is zeros ``(rows, M, 1)``;
    a quantile model's ``mean`` holds its K quantiles ``(rows, K)`` and its spread is empty
    ``(rows, 0)`` (``ScoreOptions.quantiles``).
    """

    mean: Tensor
    target: Tensor
    spread: Tensor
    ids: pa.Array | None
    where: Location
    group: Tensor | None = None
    arrived: Any = None  # on a GPU: the event marking the end of the copies (``transfer``)
    scale: Tensor | None = None  # each variance's recalibration factor (``scales``)
    weight: Tensor | None = None  # each row's weight, ``(rows, 1)`` float64 (``columns.weight``)
    # each row's bootstrap key (int64) where the caller gives one (compare: the baseline row's,
    # shared by its pair); None: from its id or values (``run.row_keys``)
    key: Tensor | None = None

    def rows(self, kept: Tensor) -> Chunk:
        """The chunk with only the ``kept`` rows (ids and location stay the file's)."""
        return replace(
            self,
            mean=self.mean[kept],
            target=self.target[kept],
            spread=self.spread[kept],
            group=None if self.group is None else self.group[kept],
            scale=None if self.scale is None else self.scale[kept],
            weight=None if self.weight is None else self.weight[kept],
            key=None if self.key is None else self.key[kept],
        )

    def ready(self) -> Chunk:
        """The chunk, once its tensors may be used on the current stream: on a GPU, the
        stream waits (on the device) for their copies to arrive (see ``transfer``)."""
        tensors = (self.mean, self.target, self.spread, self.group, self.scale, self.weight)
        wait_for(self.arrived, tensors)
        return self

    def variance(self, kind: Spread) -> Tensor:
        """The variance the spread stands for (a std squared, a log-variance exponentiated),
        times its recalibration scale if any: an ensemble's ``(rows, members, width)``
        variances each by their row's scale, the same for every member."""
        var = FORMS[kind].to_variance(self.spread)
        if self.scale is None:
            return var
        return var * (self.scale.unsqueeze(1) if var.ndim == 3 else self.scale)

    @property
    def length(self) -> int:
        return self.mean.shape[0]

    def slice(self, start: int, stop: int | None = None) -> Chunk:
        """Rows ``start`` to ``stop`` (default: the end), with their file row numbers."""
        rows = slice(start, stop)
        ids = None
        if self.ids is not None:
            ids = self.ids.slice(start, (stop if stop is not None else self.length) - start)
        return Chunk(
            self.mean[rows],
            self.target[rows],
            self.spread[rows],
            ids,
            self.where.shifted(start),
            None if self.group is None else self.group[rows],
            self.arrived,
            None if self.scale is None else self.scale[rows],
            None if self.weight is None else self.weight[rows],
            None if self.key is None else self.key[rows],
        )


def _roles(batch: pa.RecordBatch, options: ScoreOptions, convert: Conversion) -> list[Tensor]:
    """The mean, target and spread of ``batch`` (see ``Chunk``)."""
    spec = options.columns  # read in this order: the first bad column is the one named
    if spec.quantiles:
        quantiles = convert.role(batch, spec.quantiles, "quantiles")
        target = convert.role(batch, spec.target)
        return [quantiles, target, quantiles.new_empty((quantiles.shape[0], 0))]
    members, what = (
        (convert.members, "draws" if options.samples else "members")
        if options.per_row_members
        else (convert.role, "outputs")
    )
    roles = [members(batch, spec.mean, what), convert.role(batch, spec.target)]
    if spec.spread:  # samples read none: each draw's variance is 0
        roles.append(members(batch, spec.spread, what))
    return roles


def to_chunks(
    batches: Iterator[tuple[str, pa.RecordBatch]],
    options: ScoreOptions,
    device: torch.device,
    group_keys: GroupKeys | None = None,
    scales: ScaleLookup | None = None,
    first_row: int = 1,
) -> Iterator[Chunk]:
    """``(file, batch)`` pairs as chunks on ``device``, rows numbered from ``first_row`` (a
    part of a file: the number of its first row in the file) in each file;
    with ``group_keys``, each row's group index from the key columns; with ``scales``, each
    row's variance scales."""
    spec = options.columns
    dtype = DTYPES[options.dtype]
    host_to_device = HostToDevice(device)
    current_path, start = None, first_row
    for path, batch in batches:
        if path != current_path:
            current_path, first_row = path, start
        where = Location(path, first_row)
        # Weighted, a missing value is NaN too: it is refused by the scorer unless its row has
        # weight 0, which leaves the row out unchecked.
        nulls_as_nan = options.nan_policy != "error" or spec.weight is not None
        convert = Conversion(dtype, where, nulls_as_nan=nulls_as_nan)
        first_row += batch.num_rows
        group = None if group_keys is None else torch.from_numpy(group_keys.index(batch, where))
        scale = None if scales is None else torch.from_numpy(scales.scales(batch, where)).to(dtype)
        roles = _roles(batch, options, convert)
        # A missing weight is NaN whatever the policy: the scorer refuses it with its row. In
        # float64 whatever the dtype: a float32 value times a weight is then exact, as the
        # value's repeats would be.
        weight = None
        if spec.weight is not None:
            in_float64 = replace(convert, dtype=torch.float64, nulls_as_nan=True)
            weight = in_float64.single(batch, spec.weight)
        sent = [*roles, group, scale, weight]
        (*moved, group, scale, weight), arrived = host_to_device.send(sent)
        mean, target, *spread = (tensor for tensor in moved if tensor is not None)
        if not spread:  # samples: a view of one zero, not a tensor as large as the draws
            spread = [mean.new_zeros(()).expand(*mean.shape[:2], 1)]
        chunk = Chunk(
            mean=mean,
            target=target,
            spread=spread[0],
            ids=batch.column(spec.id) if spec.id else None,
            where=where,
            group=group,
            arrived=arrived,
            scale=scale,
            weight=weight,
        )
        if not options.per_row_members:
            yield chunk
            continue
        # An ensemble's M members (or M draws) per row are scored in pieces of chunk_size / M
        # rows, which bound its temporaries as a chunk of single Gaussians does.
        rows = max(1, options.chunk_size // max(1, mean.shape[1]))
        for offset in range(0, chunk.length, rows):
            yield chunk.slice(offset, offset + rows)
