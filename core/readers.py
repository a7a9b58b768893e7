"""Stream Arrow record batches of at most ``chunk_size`` rows, reading only the needed columns.

Every reader holds at most a bounded buffer of the file: Parquet is read without pre-buffering
(pyarrow's default pre-buffer pulls whole row groups ahead and grows with the file), CSV through
pyarrow's incremental reader, Arrow IPC through a memory map.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from gaussnll.core.errors import InputError
from gaussnll.core.sources import COMPRESSIONS, STDIN, FileFormat, Source

PARQUET_BUFFER_BYTES = 1 << 22
CSV_BYTES_PER_ROW_GUESS = 64
CSV_BLOCK_BYTES = (1 << 20, 1 << 26)


def iter_batches(
    source: Source,
    columns: Sequence[str],
    chunk_size: int,
    numeric_columns: Sequence[str] = (),
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield ``(file, batch)`` in file order, batches of ``columns`` of at most ``chunk_size`` rows.

    ``numeric_columns`` are parsed as float64 where the format leaves types open (CSV).
    """
    read_file = {
        FileFormat.PARQUET: _parquet_batches,
        FileFormat.CSV: _csv_batches,
        FileFormat.IPC: _ipc_batches,
    }[source.format]
    for path in source.files:
        try:
            for batch in read_file(path, list(columns), chunk_size, list(numeric_columns)):
                for piece in _slices(batch, chunk_size):
                    yield _display(path), piece
        except (pa.ArrowException, OSError) as error:
            raise InputError(_one_line(error), path=_display(path)) from error


def count_rows(source: Source) -> int | None:
    """The row count when the files record it (Parquet, Arrow IPC file format), else None.

    Only a hint for progress: a file that cannot tell is left for the reader to report.
    """
    counters = {FileFormat.PARQUET: _parquet_rows, FileFormat.IPC: _ipc_file_rows}
    counter = counters.get(source.format)
    if counter is None:
        return None
    try:
        return sum(counter(path) for path in source.files)
    except (pa.ArrowException, OSError):
        return None


def _parquet_rows(path: str) -> int:
    return pq.read_metadata(path).num_rows


def _ipc_file_rows(path: str) -> int:
    with pa.memory_map(path) as mapped:
        reader = pa.ipc.open_file(mapped)
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def _parquet_batches(
    path: str, columns: list[str], chunk_size: int, _numeric: list[str]
) -> Iterator[pa.RecordBatch]:
    parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
    require_columns(parquet.schema_arrow.names, columns, path)
    yield from parquet.iter_batches(batch_size=chunk_size, columns=columns)


def _ipc_batches(
    path: str, columns: list[str], _chunk_size: int, _numeric: list[str]
) -> Iterator[pa.RecordBatch]:
    with pa.memory_map(path) as mapped:
        try:
            reader = pa.ipc.open_file(mapped)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            mapped.seek(0)
            reader = pa.ipc.open_stream(mapped)
            batches = iter(reader)
        require_columns(reader.schema.names, columns, path)
        for batch in batches:
            yield batch.select(columns)


def _csv_batches(
    path: str, columns: list[str], chunk_size: int, numeric: list[str]
) -> Iterator[pa.RecordBatch]:
    block = min(max(chunk_size * CSV_BYTES_PER_ROW_GUESS, CSV_BLOCK_BYTES[0]), CSV_BLOCK_BYTES[1])
    convert = pacsv.ConvertOptions(
        include_columns=columns, column_types={name: pa.float64() for name in numeric}
    )
    stream = _open_csv_stream(path)
    try:
        reader = pacsv.open_csv(
            stream, read_options=pacsv.ReadOptions(block_size=block), convert_options=convert
        )
    except pa.ArrowKeyError as error:
        stream.close()
        if path != STDIN:
            require_columns(_csv_header(path), columns, path)
        raise InputError(_one_line(error), path=_display(path)) from error
    with stream:
        yield from reader


def _open_csv_stream(path: str) -> pa.NativeFile:
    if path == STDIN:
        return pa.PythonFile(sys.stdin.buffer, mode="r")
    compression = next((c for s, c in COMPRESSIONS.items() if path.lower().endswith(s)), None)
    return pa.input_stream(path, compression=compression)


def _csv_header(path: str) -> list[str]:
    with _open_csv_stream(path) as stream:
        return pacsv.open_csv(stream).schema.names


def require_columns(present: Sequence[str], needed: Sequence[str], path: str) -> None:
    """Raise an InputError naming the first missing column, those present and a close match."""
    for name in needed:
        if name in present:
            continue
        folded = {column.lower(): column for column in present}
        close = [
            folded[c] for c in difflib.get_close_matches(name.lower(), folded, n=1, cutoff=0.5)
        ]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"no such column; the file has {', '.join(map(repr, present))}{hint}",
            path=_display(path),
            column=name,
        )


def _slices(batch: pa.RecordBatch, chunk_size: int) -> Iterator[pa.RecordBatch]:
    if batch.num_rows <= chunk_size:
        if batch.num_rows:
            yield batch
        return
    for start in range(0, batch.num_rows, chunk_size):
        yield batch.slice(start, chunk_size)


def _display(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
