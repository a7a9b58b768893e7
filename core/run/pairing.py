"""Pair the rows of two prediction files: by order (row k with row k) or by an id column.

By order, both files stream in lock step: chunks are re-cut so that each pair holds the same
rows, whatever each file's batch sizes, in bounded memory. By id, the projected columns of both
files are read into memory and joined on the id (ids must be unique in each file); rows present
in one file only are left out of the comparison and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from gaussnll.core.errors import InputError, OptionError
from gaussnll.core.io.chunks import Chunk, to_chunks
from gaussnll.core.io.grouping import GroupKeys
from gaussnll.core.io.prefetch import prefetched
from gaussnll.core.io.readers import ReadRequest, iter_batches
from gaussnll.core.io.scales import ScaleLookup
from gaussnll.core.io.sources import Source
from gaussnll.core.io.tensors import Location
from gaussnll.core.options import ScoreOptions

ChunkPair = tuple[Chunk, Chunk]


@dataclass(frozen=True)
class Pairing:
    """The paired chunks, and how many rows of each file found no partner (by id only)."""

    pairs: Iterator[ChunkPair]
    method: str
    unmatched: tuple[int, int] = (0, 0)
    scales: ScaleLookup | None = None  # the candidate's recalibration, if any


def pair_by_order(
    sources: tuple[Source, Source],
    options: ScoreOptions | tuple[ScoreOptions, ScoreOptions],
    device: torch.device,
    group_keys: GroupKeys | None = None,
) -> Pairing:
    """Row k of one file with row k of the other; the files must have as many rows (``options``:
    both files', or each file's). With
    ``group_keys``, each pair's group is its baseline row's (read from the baseline)."""
    sides, scales = _sides(options)
    left, right = [
        prefetched(to_chunks(iter_batches(source, _request(side)), side, device, keys, scale))
        for source, side, scale, keys in zip(
            sources, sides, scales, (group_keys, None), strict=True
        )
    ]
    names = (sources[0].name, sources[1].name)
    return Pairing(_lock_step(left, right, names=names), "order", scales=scales[1])


def pair_by_id(
    sources: tuple[Source, Source],
    options: ScoreOptions | tuple[ScoreOptions, ScoreOptions],
    device: torch.device,
    group_keys: GroupKeys | None = None,
) -> Pairing:
    """Rows with equal ids, in the baseline's row order; each file's ids must be unique
    (``options``: both files', or each file's). With
    ``group_keys``, each pair's group is its baseline row's (read from the baseline)."""
    sides, scales = _sides(options)
    id_column = sides[0].columns.id
    if id_column is None:
        raise OptionError("columns.id", "must name the id column to pair rows by id")
    tables = [
        _read_table(source, _request(side)) for source, side in zip(sources, sides, strict=True)
    ]
    keys = _join_keys([table.column(id_column) for table in tables], sources, id_column)
    for key, source in zip(keys, sources, strict=True):
        _require_unique(key, source.name, id_column)
    indexed = [
        pa.table({"key": key, f"row{side}": np.arange(len(key), dtype=np.int64)})
        for side, key in enumerate(keys)
    ]
    joined = indexed[0].join(indexed[1], keys="key", join_type="inner").sort_by("row0")
    rows = [joined.column(f"row{side}").to_numpy() for side in range(2)]
    streams = [
        _taken_chunks(table, side_rows, source.name, side, device, scale, keys)
        for table, side_rows, source, side, scale, keys in zip(
            tables, rows, sources, sides, scales, (group_keys, None), strict=True
        )
    ]
    unmatched = (tables[0].num_rows - joined.num_rows, tables[1].num_rows - joined.num_rows)
    # in lock step: a form may cut its chunks smaller (draws: by their memory)
    paired = _lock_step(iter(streams[0]), iter(streams[1]), (sources[0].name, sources[1].name))
    return Pairing(paired, "id", unmatched, scales[1])


def _sides(
    options: ScoreOptions | tuple[ScoreOptions, ScoreOptions],
) -> tuple[tuple[ScoreOptions, ScoreOptions], tuple[None, ScaleLookup | None]]:
    """Each file's options (``options``: both files', or the baseline's and the candidate's),
    and scales: a recalibration map applies to the candidate only, and the ``--by`` columns are
    read from the baseline only."""
    first, second = options if isinstance(options, tuple) else (options, options)
    baseline = replace(first, recalibration=None)
    candidate = replace(second, columns=replace(second.columns, by=()), intervals={})
    recalibration = second.recalibration
    scales = None if recalibration is None else ScaleLookup(recalibration)
    return (baseline, candidate), (None, scales)


def _request(options: ScoreOptions) -> ReadRequest:
    spec = options.columns
    return ReadRequest(options.needed, spec.numeric, options.chunk_size, options.delimiter)


def _lock_step(
    left: Iterator[Chunk], right: Iterator[Chunk], names: tuple[str, str]
) -> Iterator[ChunkPair]:
    """Yield pairs of chunks of equal length, cutting the longer chunk of each step."""
    pending: list[Chunk | None] = [None, None]
    streams = (left, right)
    paired = 0
    while True:
        for side in (0, 1):
            if pending[side] is None:
                pending[side] = next(streams[side], None)
        first, second = pending
        if first is None or second is None:
            break
        length = min(first.length, second.length)
        yield first.slice(0, length), second.slice(0, length)
        paired += length
        pending = [
            chunk.slice(length) if chunk.length > length else None for chunk in (first, second)
        ]
    totals = [paired + _rows_left(pending[side], streams[side]) for side in (0, 1)]
    if totals[0] != totals[1]:
        raise InputError(
            f"{names[0]} has {totals[0]:,} rows and {names[1]} has {totals[1]:,}: pairing by "
            "order needs as many rows in each; pass --id-col to pair rows by an id column",
            path=names[1],
        )


def _rows_left(pending: Chunk | None, rest: Iterator[Chunk]) -> int:
    return (pending.length if pending is not None else 0) + sum(chunk.length for chunk in rest)


def _read_table(source: Source, request: ReadRequest) -> pa.Table:
    batches = [batch for _, batch in iter_batches(source, request)]
    if not batches:
        raise InputError("no data rows", path=source.name)
    # Files may differ in width (int32 ids in one, int64 in the next; float32 means): promoted.
    tables = [pa.Table.from_batches([batch]) for batch in batches]
    try:
        return pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(
            f"its files' columns have types that do not combine ({' '.join(str(error).split())})",
            path=source.name,
        ) from error


def _join_keys(
    keys: list[pa.ChunkedArray], sources: tuple[Source, Source], column: str
) -> list[pa.ChunkedArray]:
    """The two id columns in one type: integers as int64 (uint64 when both are unsigned),
    text as large strings."""
    if all(pa.types.is_unsigned_integer(key.type) for key in keys):
        return [key.cast(pa.uint64()) for key in keys]
    if all(pa.types.is_integer(key.type) for key in keys):
        return [
            _as_int64(key, source.name, column) for key, source in zip(keys, sources, strict=True)
        ]
    if all(_is_text(key.type) for key in keys):
        return [key.cast(pa.large_string()) for key in keys]
    if keys[0].type == keys[1].type:
        return keys
    raise InputError(
        f"the id column holds {keys[0].type} values in {sources[0].name} and {keys[1].type} "
        f"values in {sources[1].name}; ids must be of one kind to pair rows",
        path=sources[1].name,
        column=column,
    )


def _as_int64(key: pa.ChunkedArray, path: str, column: str) -> pa.ChunkedArray:
    """Integer ids as int64: a uint64 id past its range beside signed ids cannot pair."""
    try:
        return key.cast(pa.int64())
    except pa.ArrowInvalid:
        largest = pc.max(key).as_py()
        raise InputError(
            f"holds the unsigned id {largest}, past the range of the other file's signed ids; "
            "ids must be of one kind to pair rows",
            path=path,
            column=column,
        ) from None


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _require_unique(key: pa.ChunkedArray, path: str, column: str) -> None:
    """Every row needs an id, and no id may appear twice (a pair must be one row each)."""
    missing = pc.is_null(key, nan_is_null=True)
    if pc.any(missing).as_py():
        row = pc.index(missing, True).as_py()
        raise InputError(
            "missing id (null or NaN); every row needs one to be paired",
            path=path,
            column=column,
            row=row + 1,
        )
    counts = pc.value_counts(key)
    repeated = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(repeated):
        row = pc.index(pc.is_in(key, repeated.field("values")), True).as_py()
        value = key[row].as_py()
        times = pc.filter(repeated.field("counts"), pc.equal(repeated.field("values"), value))
        raise InputError(
            f"id {value!r} appears {times[0].as_py()} times; ids must be unique to pair rows",
            path=path,
            column=column,
            row=row + 1,
        )


def _taken_chunks(
    table: pa.Table,
    rows: np.ndarray,
    label: str,
    options: ScoreOptions,
    device: torch.device,
    scales: ScaleLookup | None,
    group_keys: GroupKeys | None,
) -> Iterable[Chunk]:
    """The paired ``rows`` of ``table`` as chunks that know their file row numbers (and, with
    ``group_keys``, their groups)."""
    taken = table.take(pa.array(rows)).combine_chunks()
    batches = ((label, batch) for batch in taken.to_batches(max_chunksize=options.chunk_size))
    file_rows = rows + 1
    for chunk in to_chunks(batches, options, device, group_keys, scales):
        start = chunk.where.first_row - 1
        where = Location(label, chunk.where.first_row, file_rows[start : start + chunk.length])
        yield replace(chunk, where=where)
