"""Where the scoring state's sums go: for the whole input, or for each of many groups.

A sink holds sums of one per-group shape, ``(outputs, ...)``, for ``groups`` groups:

- ``TotalSink`` has one group: each chunk is reduced to its sums, which are added with Neumaier
  compensation, so the total is independent of the chunking to a few ulps.
- ``GroupSink`` has a row of sums per group, added element by element with ``index_add_`` /
  ``scatter_add_`` at each row's group: a chunk costs O(its elements) however many groups there
  are (a dense per-chunk sum would cost O(groups)). It grows as new groups appear.

Integer sinks count (int64); float sinks sum in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from gaussnll.core.summation import CompensatedSum


class TotalSink:
    """Sums of shape ``(1, *shape)``: one group, the whole input."""

    def __init__(self, shape: tuple[int, ...], device: torch.device, *, integer: bool = False):
        self.shape = shape
        self.integer = integer
        self._dtype = _sum_dtype(integer)
        if integer:
            self._counts = torch.zeros(shape, dtype=torch.int64, device=device)
        else:
            self._sum = CompensatedSum(shape, device)

    def add(self, values: Tensor) -> Tensor:
        """Add ``values`` of shape ``(rows, *shape)``; return their sums (the chunk's)."""
        sums = values.sum(dim=0, dtype=self._dtype)
        self._add(sums)
        return sums

    def add_columns(self, columns: Sequence[Tensor]) -> None:
        """Add the last axis's entries given one by one: ``columns[k]`` is ``(rows, *shape[:-1])``.
        Each is reduced on its own, never stacked into a ``(rows, *shape)`` copy."""
        self._add(torch.stack([column.sum(dim=0, dtype=self._dtype) for column in columns], -1))

    def count(self, amount: int | Tensor) -> None:
        """Add ``amount`` to a count of shape ``()``."""
        self._counts += amount

    def add_binned(self, bins: Tensor, values: Tensor | None) -> None:
        """Per output, add ``values`` (``(rows, outputs)``; None: count) into the last axis at
        ``bins`` (``(rows, outputs)``, each in ``[0, shape[-1])``)."""
        outputs, size = bins.shape[1], self.shape[-1]
        flat = bins if outputs == 1 else bins + torch.arange(outputs, device=bins.device) * size
        self._add(_scattered(flat.reshape(-1), values, outputs * size).reshape(self.shape))

    def _add(self, sums: Tensor) -> None:
        if self.integer:
            self._counts += sums.to(torch.int64)
        else:
            self._sum.add(sums)

    def merge(self, other: TotalSink) -> None:
        if self.integer:
            self._counts += other._counts.to(self._counts.device)
        else:
            self._sum.merge(other._sum)

    def value(self) -> Tensor:
        """The sums, ``(1, *shape)``."""
        return (self._counts if self.integer else self._sum.value()).unsqueeze(0)


class GroupSink:
    """Sums of shape ``(groups, *shape)``, one row per group; ``group`` gives each row's."""

    def __init__(self, shape: tuple[int, ...], device: torch.device, *, integer: bool = False):
        self.shape = shape
        self.integer = integer
        self.groups = 0
        self._total = torch.zeros((0, *shape), dtype=_sum_dtype(integer), device=device)

    def reserve(self, groups: int) -> None:
        """Make room for ``groups`` groups. Capacity grows to a quarter more than asked for:
        growth stays amortised O(1) and at most a fifth of the sums are spare (doubling left
        up to half of them unused when many groups arrive in the first chunks)."""
        self.groups = max(self.groups, groups)
        capacity = self._total.shape[0]
        if groups > capacity:
            grown = self._total.new_zeros((max(groups + groups // 4, 16), *self.shape))
            grown[:capacity] = self._total
            self._total = grown

    def add(self, values: Tensor, group: Tensor) -> None:
        self._total.index_add_(0, group, values.to(self._total.dtype))

    def add_columns(self, columns: Sequence[Tensor], group: Tensor) -> None:
        for k, column in enumerate(columns):
            self._total[..., k].index_add_(0, group, column.to(self._total.dtype))

    def count(self, group: Tensor, per_row: Tensor | None = None) -> None:
        """Add ``per_row`` (default one) to each row's group (a count of shape ``()``)."""
        self._total.index_add_(0, group, torch.ones_like(group) if per_row is None else per_row)

    def add_binned(self, bins: Tensor, values: Tensor | None, group: Tensor) -> None:
        outputs, size = bins.shape[1], self.shape[-1]
        slot = group.unsqueeze(1) * outputs + torch.arange(outputs, device=bins.device)
        flat = (slot * size + bins).reshape(-1)
        target = self._total.view(-1)
        if values is None:
            target.scatter_add_(0, flat, torch.ones_like(flat).to(target.dtype))
        else:
            target.scatter_add_(0, flat, values.reshape(-1).to(target.dtype))

    def merge(self, other: GroupSink, mapping: Tensor) -> None:
        """Add ``other``'s groups into this sink's groups ``mapping[i]``."""
        rows = other._total[: other.groups].to(self._total.device)
        self._total.index_add_(0, mapping.to(self._total.device), rows)

    def value(self) -> Tensor:
        """The sums, ``(groups, *shape)``."""
        return self._total[: self.groups]


def _sum_dtype(integer: bool) -> torch.dtype:
    """Counts in int64, sums in float64."""
    return torch.int64 if integer else torch.float64


def _scattered(flat_bins: Tensor, values: Tensor | None, length: int) -> Tensor:
    """float64 sums of ``values`` (or counts) per bin. ``scatter_add_`` into a fixed-size
    buffer: unlike ``bincount`` it never reads the data's maximum back, so CUDA does not
    synchronise."""
    sums = torch.zeros(length, dtype=torch.float64, device=flat_bins.device)
    if values is None:
        source = torch.ones((), dtype=torch.float64, device=flat_bins.device)
        return sums.scatter_add_(0, flat_bins, source.expand(flat_bins.numel()))
    return sums.scatter_add_(0, flat_bins, values.reshape(-1).to(torch.float64))


class Sums:
    """One quantity, summed for the whole input and, when grouping, for each group too."""

    def __init__(
        self,
        shape: tuple[int, ...],
        device: torch.device,
        *,
        integer: bool = False,
        grouped: bool = False,
    ) -> None:
        self.total = TotalSink(shape, device, integer=integer)
        self.by_group = GroupSink(shape, device, integer=integer) if grouped else None

    def add(self, values: Tensor, group: Tensor | None = None) -> Tensor:
        """Add ``values`` of shape ``(rows, *shape)``; ``group`` is each row's group. Returns the
        chunk's sums over all its rows."""
        sums = self.total.add(values)
        if self.by_group is not None:
            self.by_group.add(values, group)
        return sums

    def add_columns(self, columns: Sequence[Tensor], group: Tensor | None = None) -> None:
        """Add the last axis's entries one by one (see ``TotalSink.add_columns``)."""
        self.total.add_columns(columns)
        if self.by_group is not None:
            self.by_group.add_columns(columns, group)

    def count(self, rows: int, group: Tensor | None = None) -> None:
        """Add ``rows`` rows to a count of shape ``()`` (``group``: each row's group)."""
        self.total.count(rows)
        if self.by_group is not None:
            self.by_group.count(group)

    def count_flags(self, flags: Tensor, group: Tensor | None = None) -> None:
        """Add how many of each row's ``flags`` (``(rows, w)`` booleans) are set, to a count
        of shape ``()``."""
        self.total.count(flags.sum())
        if self.by_group is not None:
            self.by_group.count(group, flags.sum(dim=1))

    def add_binned(self, bins: Tensor, values: Tensor | None, group: Tensor | None = None) -> None:
        """Per output, add ``values`` (None: count) into the last axis at ``bins``."""
        self.total.add_binned(bins, values)
        if self.by_group is not None:
            self.by_group.add_binned(bins, values, group)

    def reserve(self, groups: int) -> None:
        if self.by_group is not None:
            self.by_group.reserve(groups)

    def merge(self, other: Sums, mapping: Tensor | None = None) -> None:
        """Add ``other`` (its group ``i`` into this one's group ``mapping[i]``)."""
        self.total.merge(other.total)
        if self.by_group is not None and other.by_group is not None:
            self.by_group.merge(other.by_group, mapping)

    def value(self, by_group: bool = False) -> Tensor:
        """``(1, *shape)`` for the whole input, or ``(groups, *shape)``."""
        return (self.by_group if by_group else self.total).value()
