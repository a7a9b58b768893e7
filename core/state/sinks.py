"""Where the scoring state's sums go: for the whole input, or for each of many groups.

A sink holds sums of one per-group shape, ``(outputs, ...)``, for ``groups`` groups:

- ``TotalSink`` has one group: each chunk is reduced to its sums, which are added with Neumaier
  compensation, so the total is independent of the chunking to a few ulps.
- ``GroupSink`` has a row of sums per group, added element by element with ``index_add_`` /
  ``scatter_add_`` at each row's group: a chunk costs O(its elements) however many groups there
  are (a dense per-chunk sum would cost O(groups)). It grows as new groups appear.

Integer sinks count (int64); float sinks sum in float64. A ``compact`` group sink counts in
int32 while every count must fit (its bound, the elements added so far, is below 2^31), and
turns its tables to int64 before one could pass it: the same counts in half the memory. A
chunk's many small sums (the calibration's moments and histograms) go in with one
``add_parts`` call: one scatter per part into one buffer, then one compensated add, instead of
an add per quantity.

Every change to a sink's sums is ``@deferrable``: while a thread is ``recording``, its changes
are kept in a ``Ledger`` instead, to be applied later (``workers`` applies them in chunk order,
so the sums see the same additions in the same order whichever thread computed a chunk).
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor

from gaussnll.core.state.summation import CompensatedSum

_thread = threading.local()
Method = TypeVar("Method", bound=Callable[..., None])


class Ledger:
    """Changes to sums recorded on one thread, to apply later on any thread: every change, or
    those whose owner (a sink, or a state whose change reads its sums) ``only`` takes."""

    def __init__(self, only: Callable[[object], bool] | None = None) -> None:
        self._changes: list[Callable[[], None]] = []
        self._only = only

    def takes(self, owner: object) -> bool:
        """Whether a change of ``owner`` is recorded (else it is made at once)."""
        return self._only is None or self._only(owner)

    def record(self, change: Callable[[], None]) -> None:
        self._changes.append(change)

    def apply(self) -> None:
        """Make the recorded changes, in the order they were recorded."""
        for change in self._changes:
            change()
        self._changes.clear()


@contextmanager
def recording(only: Callable[[object], bool] | None = None) -> Iterator[Ledger]:
    """Within the block, this thread's changes to any sink (those of the owners ``only``
    takes) go to the yielded ledger."""
    _thread.ledger = ledger = Ledger(only)
    try:
        yield ledger
    finally:
        _thread.ledger = None


def deferrable(method: Method) -> Method:
    """A change to a sink: made now, or recorded while this thread is ``recording``."""

    @functools.wraps(method)
    def made_or_recorded(self: object, *args: object, **kwargs: object) -> None:
        ledger = getattr(_thread, "ledger", None)
        if ledger is None or not ledger.takes(self):
            method(self, *args, **kwargs)
        else:
            ledger.record(functools.partial(method, self, *args, **kwargs))

    return made_or_recorded  # type: ignore[return-value]


class Binned(NamedTuple):
    """Per output, ``values`` (``(rows, outputs)`` or width 1; None: count each row) added at
    slot ``offset + bins`` of the last axis (``bins``: ``(rows, outputs)``)."""

    offset: int
    bins: Tensor
    values: Tensor | None


class TotalSink:
    """Sums of shape ``(1, *shape)``: one group, the whole input."""

    def __init__(self, shape: tuple[int, ...], device: torch.device, *, integer: bool = False):
        self.shape = shape
        self.integer = integer
        self._dtype = _sum_dtype(integer)
        self._device = device
        if integer:
            self._counts = torch.zeros(shape, dtype=torch.int64, device=device)
        else:
            self._sum = CompensatedSum(shape, device)

    def add(self, values: Tensor) -> Tensor:
        """Add ``values`` of shape ``(rows, *shape)``; return their sums (the chunk's)."""
        sums = values.sum(dim=0, dtype=self._dtype)
        self._add(sums)
        return sums

    @deferrable
    def count(self, amount: int | Tensor) -> None:
        """Add ``amount`` to a count of shape ``()``."""
        self._counts += amount

    def add_parts(self, columns: Sequence[Tensor], binned: Sequence[Binned]) -> None:
        """Add a chunk into a sum of shape ``(outputs, slots)`` in one step: ``columns[k]``
        (``(rows, outputs)`` or width 1) summed over rows into slot ``k``, and each ``binned``
        part scattered at its slots."""
        chunk = torch.zeros(self.shape, dtype=self._dtype, device=self._device)
        width = chunk.shape[0]
        if columns:
            sums = [column.sum(dim=0, dtype=self._dtype).expand(width) for column in columns]
            chunk[:, : len(columns)] = torch.stack(sums, dim=1)
        for part in binned:
            index, values = part.bins.t(), None if part.values is None else part.values.t()
            chunk[:, part.offset :].scatter_add_(1, index, _source(values, index, self._dtype))
        self._add(chunk)

    @deferrable
    def _add(self, sums: Tensor) -> None:
        if self.integer:
            self._counts += sums.to(torch.int64)
        else:
            self._sum.add(sums)

    @deferrable
    def moved(self, index: Tensor) -> None:
        """Move the sums along the last axis, each to slot ``index[slot]`` (those that meet
        add)."""
        index = index.to(self._device)
        if self.integer:
            self._counts = torch.zeros_like(self._counts).index_add_(-1, index, self._counts)
        else:
            total, error = self._sum.total, self._sum.error
            self._sum.total = torch.zeros_like(total).index_add_(-1, index, total)
            self._sum.error = torch.zeros_like(error).index_add_(-1, index, error)

    @deferrable
    def merge(self, other: TotalSink) -> None:
        if self.integer:
            self._counts += other._counts.to(self._counts.device)
        else:
            self._sum.merge(other._sum)

    def value(self) -> Tensor:
        """The sums, ``(1, *shape)``."""
        return (self._counts if self.integer else self._sum.value()).unsqueeze(0)

    def exported(self) -> dict[str, np.ndarray]:
        """The running sums as NumPy arrays: ``total`` (counts, or the compensated sum's total)
        and, for float sums, its running ``error``, so a restored sum merges to the same bits."""
        if self.integer:
            return {"total": self._counts.cpu().numpy()}
        return {"total": self._sum.total.cpu().numpy(), "error": self._sum.error.cpu().numpy()}

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Take on sums ``exported`` by a sink of the same shape and kind."""
        if self.integer:
            self._counts = _tensor(arrays["total"], self._counts)
        else:
            self._sum.total = _tensor(arrays["total"], self._sum.total)
            self._sum.error = _tensor(arrays["error"], self._sum.error)


class GroupSink:
    """Sums of shape ``(groups, *shape)``, one row per group; ``group`` gives each row's.

    ``ranges`` cuts the last axis into ranges (e.g. the slots of ``add_parts``' columns and of
    each binned part) kept as separate tables: rows go to random groups, and a compact table
    per range keeps each pass's scattered writes within less memory than one wide table
    (faster for many groups: see bench/README.md). A narrow table (``_COLUMNWISE_MAX``
    positions a group at most) is laid out column by column (``_new_table``).

    ``compact`` counts (integer sinks) are int32 while ``bound``, the elements added so far
    (which no count can pass), fits int32: an ``add_parts`` of counts adds at most one per
    element to any count. Other additions of integers widen the tables to int64 first.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        device: torch.device,
        *,
        integer: bool = False,
        ranges: Sequence[int] | None = None,
        compact: bool = False,
    ) -> None:
        self.shape = shape
        self.integer = integer
        self.groups = 0
        self.bound: int | None = 0 if integer and compact else None  # None: int64 or float
        sizes = list(ranges) if ranges is not None else [shape[-1]] if shape else []
        self._start = {start: k for k, start in enumerate(itertools.accumulate(sizes, initial=0))}
        widths = [(*shape[:-1], size) for size in sizes] if sizes else [shape]
        dtype = torch.int32 if self.bound is not None else _sum_dtype(integer)
        self._tables = [_new_table(0, width, dtype, device) for width in widths]

    def _headroom(self, elements: int | None) -> None:
        """Make room in compact counts for ``elements`` more (None: any number: int64)."""
        if self.bound is None:
            return
        self.bound = None if elements is None else self.bound + elements
        if self.bound is None or self.bound > _INT32_MAX:
            self.bound = None
            self._tables = [
                _grown(table, len(table), self.groups, torch.int64) for table in self._tables
            ]

    @deferrable
    def reserve(self, groups: int) -> None:
        """Make room for ``groups`` groups. Capacity at least doubles: growth copies each
        table about once in all (growing by a quarter copied them five times: 1.3 s at 10^6
        groups). Only the rows of groups seen are zeroed, so the spare rows' memory is never
        touched (never resident) until used. Tables grow one at a time, each old one freed
        before the next is copied: growing holds the sums once plus one table twice, not all
        of them twice."""
        if groups <= self.groups:
            return
        capacity = self._tables[0].shape[0]
        if groups > capacity:
            size = max(groups, 2 * capacity, 16)
            for k, table in enumerate(self._tables):
                self._tables[k] = _grown(table, size, self.groups)
            del table
        for table in self._tables:
            table[self.groups : groups].zero_()
        self.groups = groups

    @property
    def bytes_per_group(self) -> int:
        """The memory one group's sums take (before the spare capacity)."""
        return sum(math.prod(table.shape[1:]) * table.element_size() for table in self._tables)

    @deferrable
    def add(self, values: Tensor, group: Tensor) -> None:
        self._headroom(None)
        (table,) = self._tables
        _index_add(table, group, values)

    @deferrable
    def count(self, group: Tensor, per_row: Tensor | None = None) -> None:
        """Add ``per_row`` (default one) to each row's group (a count of shape ``()``)."""
        self._headroom(None)
        (table,) = self._tables
        _index_add(table, group, torch.ones_like(group) if per_row is None else per_row)

    @deferrable
    def add_parts(self, columns: Sequence[Tensor], binned: Sequence[Binned], group: Tensor) -> None:
        """``TotalSink.add_parts``, each row into its group's sums; the columns and each part
        must fill ranges of their own."""
        rows, outputs = group.shape[0], self.shape[0]
        counted = not columns and all(part.values is None for part in binned)
        self._headroom(rows * outputs if counted else None)
        if columns:
            table = self._tables[self._start[0]]
            for k, column in enumerate(columns):
                _index_add(table[..., k], group, column.expand(rows, outputs))
        starts: dict[tuple[int, ...], Tensor] = {}  # of each row's outputs, by table strides
        for part in binned:
            table = self._tables[self._start[part.offset]]
            # each element's offset in the table's memory, whatever its layout
            *strides, of_bin = table.stride()
            start = starts.get(tuple(strides))
            if start is None:
                start = starts[tuple(strides)] = _starts(group, outputs, *strides)
            index = torch.add(start, part.bins, alpha=of_bin).reshape(-1)
            spread = None if part.values is None else part.values.expand(rows, outputs).reshape(-1)
            _memory(table).scatter_add_(0, index, _source(spread, index, table.dtype))

    @deferrable
    def moved(self, index: Tensor, groups: Tensor) -> None:
        """Move each of ``groups``' sums along the last axis, each to slot ``index[k, slot]``
        (``k``: the group's row; those that meet add), range by range."""
        for start, table in zip(self._start, self._tables, strict=False):  # one start more
            size = table.shape[-1]
            local = (index[:, start : start + size] - start).to(table.device)
            rows = table.index_select(0, groups.to(table.device))
            spread = local.unsqueeze(-2).expand_as(rows)
            moved = torch.zeros_like(rows).scatter_add_(-1, spread, rows)
            table.index_copy_(0, groups.to(table.device), moved)

    @deferrable
    def merge(self, other: GroupSink, mapping: Tensor) -> None:
        """Add ``other``'s groups into this sink's groups ``mapping[i]``."""
        self._headroom(other.bound)
        for mine, theirs in zip(self._tables, other._tables, strict=True):
            _index_add(mine, mapping.to(mine.device), theirs[: other.groups].to(mine.device))

    def value(self) -> Tensor:
        """The sums, ``(groups, *shape)`` (of a sink without ranges)."""
        (table,) = self._tables
        return table[: self.groups]

    def ranges(self) -> list[Tensor]:
        """The sums of each range, ``(groups, *shape[:-1], size)``: no copy."""
        return [table[: self.groups] for table in self._tables]

    def exported(self) -> dict[str, np.ndarray]:
        """Each range's table of the groups so far, as NumPy arrays named by position (counts
        in int64, compact or not)."""
        dtype = _sum_dtype(self.integer)
        return {
            str(k): table.to(dtype).contiguous().cpu().numpy()
            for k, table in enumerate(self.ranges())
        }

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Take on every group's sums ``exported`` by a sink of the same shape, kind and
        ranges (the tables hold no group yet), with no spare capacity: a loaded state takes
        its own size once more, not more."""
        groups = {len(arrays[str(k)]) for k in range(len(self._tables))}
        if len(groups) != 1:
            raise ValueError("the tables of grouped sums hold different numbers of groups")
        self.groups = groups.pop()
        if self.bound is not None:  # the elements its counts hold
            held = (int(np.asarray(arrays[str(k)]).sum()) for k in range(len(self._tables)))
            self._headroom(sum(held))
        restored = (
            _tensor(arrays[str(k)], table, any_rows=True) for k, table in enumerate(self._tables)
        )
        self._tables = [_grown(table, self.groups, self.groups) for table in restored]


def of_groups(owner: object) -> bool:
    """Whether a change is to groups' sums: a ``GroupSink``'s, or a grouped state's own change
    (``grouped``: one that reads its groups' sums as it makes them)."""
    return isinstance(owner, GroupSink) or getattr(owner, "grouped", False) is True


def _tensor(values: np.ndarray, like: Tensor, *, any_rows: bool = False) -> Tensor:
    """``values`` copied into a new tensor of ``like``'s dtype and device; its shape must be
    ``like``'s (with ``any_rows``, but for the first axis, the groups): sums of other options
    differ. Read-only values (views of an Arrow file's buffers) are read, never shared."""
    values = np.asarray(values)
    expected, got = tuple(like.shape), tuple(values.shape)
    if (expected[1:], len(expected)) != (got[1:], len(got)) or not (any_rows or got == expected):
        raise ValueError(f"sums of shape {got} do not fit sums of shape {expected}")
    with warnings.catch_warnings():  # torch warns of read-only arrays: this one is only read
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        source = torch.from_numpy(values)
    return torch.empty(got, dtype=like.dtype, device=like.device).copy_(source)


def _index_add(table: Tensor, group: Tensor, values: Tensor) -> None:
    """Add ``values`` ``(rows, *shape)`` into ``table`` ``(groups, *shape)`` at each row's
    ``group``: one 1-D ``scatter_add_`` per position of ``shape``, into a narrow table's
    contiguous columns (``_new_table``). torch adds into a 1-D tensor in one tight loop but
    adds each row of a 2-D or 3-D one as a kernel of its own (about 30 ns a row), and its 1-D
    ``scatter_add_`` takes about 0.6 of the time of ``index_add_`` (the same additions in the
    same order: the same bits). A wider sum (the samples' 125 counts of a group) is laid out a
    group to a row and goes in one ``index_add_``, 18 times faster than column by column."""
    values = values.to(table.dtype)
    if math.prod(table.shape[1:]) > _COLUMNWISE_MAX:
        table.index_add_(0, group, values)
        return
    for position in itertools.product(*map(range, table.shape[1:])):
        at: tuple[slice | int, ...] = (slice(None), *position)
        table[at].scatter_add_(0, group, values[at])


def _starts(group: Tensor, outputs: int, of_group: int, of_output: int) -> Tensor:
    """Where each row's outputs start in a table's memory (``(rows, outputs)``), from the
    table's strides: the offsets that ``add_parts``' parts share (one to four tensor passes
    a part fewer)."""
    start = (group * of_group).unsqueeze(1)
    if outputs == 1:
        return start
    return start + torch.arange(outputs, device=group.device) * of_output


def _new_table(
    capacity: int, width: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> Tensor:
    """An uninitialised table of ``capacity`` groups' sums of shape ``width``, indexed
    ``(group, *position)``. A narrow one is laid out column by column: each position's sums of
    every group contiguous, so a pass of ``_index_add`` writes into one column (10^5 groups'
    column is 0.8 MB, within the L2 cache) rather than across the whole table: 10 moments of
    98,304 rows into 10^5 groups take 1.3 ms against 3.3 ms laid out a group to a row."""
    if math.prod(width) > _COLUMNWISE_MAX:
        return torch.empty((capacity, *width), dtype=dtype, device=device)
    columns = torch.empty((*width, capacity), dtype=dtype, device=device)
    return columns.movedim(-1, 0)


def _memory(table: Tensor) -> Tensor:
    """A ``_new_table``'s memory as one flat tensor (``table.stride()`` gives each element's
    offset in it)."""
    return table.as_strided((table.untyped_storage().nbytes() // table.element_size(),), (1,))


def _grown(table: Tensor, capacity: int, used: int, dtype: torch.dtype | None = None) -> Tensor:
    """``table`` with room for ``capacity`` groups (and ``dtype``: its own by default), in the
    same layout; its first ``used`` copied (the others not initialised)."""
    grown = _new_table(capacity, tuple(table.shape[1:]), dtype or table.dtype, table.device)
    grown[:used] = table[:used]
    return grown


_INT32_MAX = torch.iinfo(torch.int32).max
_COLUMNWISE_MAX = 10  # positions of a group's sum added column by column at most


def _sum_dtype(integer: bool) -> torch.dtype:
    """Counts in int64, sums in float64."""
    return torch.int64 if integer else torch.float64


def _source(values: Tensor | None, index: Tensor, dtype: torch.dtype) -> Tensor:
    """What a scatter at ``index`` adds: ``values`` broadcast to its shape, or ones (a count)."""
    if values is None:
        return torch.ones((), dtype=dtype, device=index.device).expand(index.shape)
    return values.expand(index.shape).to(dtype)


class Placement(NamedTuple):
    """Where a chunk's rows go: each row's ``group`` (a dense index; grouped sums need it) and
    ``weight`` (``(rows, 1)`` float64; None: every row weighs 1)."""

    group: Tensor | None = None
    weight: Tensor | None = None


def _given(value: Tensor | None, name: str) -> Tensor:
    """``value``, which grouped (or, ``weight``, weighted) sums cannot do without."""
    if value is None:
        kind = "weighted" if name == "weight" else "grouped"
        raise ValueError(f"{kind} sums need {name}")
    return value


class Sums:
    """One quantity, summed for the whole input and, when grouping, for each group too (or,
    ``total=False``, for each group only: the whole input's is another state's).

    The one place where rows are weighed and placed: a ``weighted`` sum multiplies what it is
    given by each row's weight (a count becomes a float64 sum of weights), and a grouped one
    adds each row into its group, both from the chunk's ``Placement``. Counts of rows
    (``count``, ``count_flags``) are never weighted.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        device: torch.device,
        *,
        integer: bool = False,
        grouped: bool = False,
        weighted: bool = False,
        total: bool = True,
        ranges: Sequence[int] | None = None,
        compact: bool = False,
    ) -> None:
        """``ranges``: how the last axis divides into ranges; ``compact``: counts per group in
        int32 while they fit (see ``GroupSink``)."""
        if not (grouped or total):
            raise ValueError("sums are kept for the whole input, per group, or both")
        self._ranges = list(ranges) if ranges is not None else None
        self.weighted = weighted
        integer = integer and not weighted
        self.integer = integer
        self.total = TotalSink(shape, device, integer=integer) if total else None
        self.by_group = (
            GroupSink(shape, device, integer=integer, ranges=ranges, compact=compact)
            if grouped
            else None
        )

    def add(self, values: Tensor, at: Placement) -> Tensor | None:
        """Add ``values`` of shape ``(rows, *shape)`` (weighted, if this sum is). Returns the
        chunk's sums over all its rows (None: kept per group only)."""
        values = self._weighed(values, at)
        sums = None if self.total is None else self.total.add(values)
        if self.by_group is not None:
            self.by_group.add(values, _given(at.group, "group"))
        return sums

    def count(self, rows: int, at: Placement) -> None:
        """Add ``rows`` rows to a count of shape ``()``."""
        if self.total is not None:
            self.total.count(rows)
        if self.by_group is not None:
            self.by_group.count(_given(at.group, "group"))

    def count_flags(self, flags: Tensor, at: Placement) -> None:
        """Add how many of each row's ``flags`` (``(rows, w)`` booleans) are set, to a count
        of shape ``()``."""
        if self.total is not None:
            self.total.count(flags.sum())
        if self.by_group is not None:
            self.by_group.count(_given(at.group, "group"), flags.sum(dim=1))

    def column(self, values: Tensor, at: Placement) -> Tensor:
        """``values`` (``(rows, ...)``, weighted if this sum is) as ``add_parts`` takes a
        column: without groups, summed over its rows now, while it is still in the cache
        (cheaper than summing it later with the others), so it can be freed; the same bits
        either way."""
        values = self._weighed(values, at)
        if self.by_group is not None:
            return values
        return values.sum(dim=0, keepdim=True, dtype=_sum_dtype(self.integer))

    def add_parts(self, columns: Sequence[Tensor], binned: Sequence[Binned], at: Placement) -> None:
        """Add a chunk's columns (as ``column`` gives them) and binned parts (see
        ``TotalSink.add_parts``); a weighted sum weighs the binned parts (a count: the
        weights)."""
        if self.weighted:
            weight = _given(at.weight, "weight")
            binned = [
                part._replace(values=weight if part.values is None else part.values * weight)
                for part in binned
            ]
        if self.total is not None:
            self.total.add_parts(columns, binned)
        if self.by_group is not None:
            self.by_group.add_parts(columns, binned, _given(at.group, "group"))

    def _weighed(self, values: Tensor, at: Placement) -> Tensor:
        """``values`` times each row's weight, in a weighted sum."""
        return values * _given(at.weight, "weight") if self.weighted else values

    def reserve(self, groups: int) -> None:
        if self.by_group is not None:
            self.by_group.reserve(groups)

    @property
    def bytes_per_group(self) -> int:
        """The memory one group's sums take (0 when not grouping)."""
        return 0 if self.by_group is None else self.by_group.bytes_per_group

    def moved(self, index: Tensor, groups: Tensor | None = None) -> None:
        """Move sums along the last axis, each to slot ``index[k, slot]`` (those that meet
        add): the whole input's by ``index[0]``, or (``groups`` given) each of ``groups``' by
        its row ``k``. How binned sums follow bins that grow coarser."""
        if groups is None:
            self._total().moved(index[0])
        else:
            self._grouped().moved(index, groups)

    def merge(self, other: Sums, mapping: Tensor | None = None) -> None:
        """Add ``other`` (its group ``i`` into this one's group ``mapping[i]``)."""
        if self.total is not None and other.total is not None:
            self.total.merge(other.total)
        if self.by_group is not None and other.by_group is not None:
            self.by_group.merge(other.by_group, _given(mapping, "mapping"))

    def value(self, by_group: bool = False) -> Tensor:
        """``(1, *shape)`` for the whole input, or ``(groups, *shape)`` a group to a row (a
        copy of a column-by-column table: torch reduces a row of a matrix laid out otherwise
        in another order, and a report's WIS or mean along a row would change in its last
        bits with the layout)."""
        return self._grouped().value().contiguous() if by_group else self._total().value()

    def ranges(self, by_group: bool = False) -> list[Tensor]:
        """The sums of each range of the last axis, as ``value`` gives them (the whole input's:
        no copy)."""
        if by_group:
            return [table.contiguous() for table in self._grouped().ranges()]
        total = self._total().value()
        if self._ranges is None:  # one range, as for GroupSink
            return [total]
        return list(torch.split(total, self._ranges, dim=-1))

    def exported(self) -> dict[str, np.ndarray]:
        """Every running sum as NumPy arrays: ``total.*`` for the whole input, ``group.*``
        (one table per range, a row per group) when grouped."""
        parts = {}
        if self.total is not None:
            parts["total"] = self.total.exported()
        if self.by_group is not None:
            parts["group"] = self.by_group.exported()
        return {
            f"{part}.{name}": array
            for part, arrays in parts.items()
            for name, array in arrays.items()
        }

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Take on sums ``exported`` by ``Sums`` of the same shape, kind and grouping, into
        these (new, empty) ones."""
        if self.total is not None:
            self.total.restore(_part(arrays, "total"))
        if self.by_group is not None:
            self.by_group.restore(_part(arrays, "group"))

    def _grouped(self) -> GroupSink:
        if self.by_group is None:
            raise ValueError("these sums are not grouped")
        return self.by_group

    def _total(self) -> TotalSink:
        if self.total is None:
            raise ValueError("these sums are kept per group only")
        return self.total


def _part(arrays: dict[str, np.ndarray], part: str) -> dict[str, np.ndarray]:
    """The arrays named ``part.NAME``, by ``NAME``."""
    prefix = part + "."
    return {name[len(prefix) :]: a for name, a in arrays.items() if name.startswith(prefix)}
