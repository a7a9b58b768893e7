"""Stream Arrow record batches of at most ``chunk_size`` rows, reading only the needed columns.

Every reader holds at most a bounded buffer of the file: Parquet is read without pre-buffering
(pyarrow's default pre-buffer pulls whole row groups ahead and grows with the file), CSV through
pyarrow's incremental reader, Arrow IPC through ordinary reads (a memory map of a file truncated
while it is read kills the process with SIGBUS). A Parquet file must yield as many rows as its
footer records, so a file cut short while it is read is an error, never half a score. A URI
(``s3://``...) is read through its filesystem's files and streams, with the same chunks, checks
and messages.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.parquet as pq

from gaussnll.core.errors import InputError
from gaussnll.core.io.csv_input import (
    ByteRange,
    CsvRead,
    csv_batches,
    csv_header,
    first_range_types,
)
from gaussnll.core.io.filesystems import file_size, filesystem_and_path, open_input_file
from gaussnll.core.io.labels import LabelColumns
from gaussnll.core.io.sources import STDIN, FileFormat, Source
from gaussnll.core.options import ScoreOptions

PARQUET_BUFFER_BYTES = 1 << 20  # larger buffers cost memory and read no faster
_DELIMITER_HINTS = (";", "\t", "|", ":")
_FIRST_ROWS = 1024  # rows read at a time to find an ensemble's first list


@dataclass(frozen=True)
class ReadRequest:
    """Which columns to read (``numeric`` ones as numbers), in chunks of how many rows;
    ``on_bytes(position)``: told how far into the file a CSV reader has read; ``labels``: the
    columns that key rows (``labels.LabelColumns``), None: every column not read as a number
    (a column merely carried through, as ``rescale``'s, may hold anything); ``text``: CSV
    columns kept as the text written (to write it back as it was)."""

    columns: tuple[str, ...]
    numeric: tuple[str, ...]
    chunk_size: int
    delimiter: str = ","
    on_bytes: Callable[[int], None] | None = None
    labels: tuple[str, ...] | None = None
    text: tuple[str, ...] = ()


def scoring_request(source: Source, options: ScoreOptions) -> ReadRequest:
    """What scoring reads: the options' columns, in batches of ``chunk_size`` rows; an
    ensemble's of ``chunk_size / M`` rows when its M members per row can be told before the
    pass (member columns, or the first row of a list column), so a batch holds about as many
    values whatever M is."""
    spec = options.columns
    rows = options.chunk_size
    if options.per_row_members:
        members = len(spec.mean) if len(spec.mean) > 1 else _first_list_length(source, spec.mean[0])
        rows = max(1, rows // (members or 1))
    return ReadRequest(options.needed, spec.numeric, rows, options.delimiter)


def _first_list_length(source: Source, column: str) -> int | None:
    """The length of ``column``'s first value when it is a list in Parquet or Arrow files (the
    first row that has one: empty files and missing values are passed over); None otherwise,
    or when it cannot be read (the pass itself reports why)."""
    if source.format is FileFormat.CSV or not source.files:
        return None
    request = ReadRequest((column,), (column,), _FIRST_ROWS)
    try:
        for _, batch in iter_batches(source, request):
            values = batch.column(0).drop_null()
            if len(values):
                value = values[0].as_py()
                return len(value) if isinstance(value, list) else None
    except InputError:
        return None
    return None


@dataclass
class ReadProgress:
    """How far the reader is through the input's bytes, where it can tell (CSV files, whose
    row count is unknown until read): ``bytes_total`` None when it cannot. The reader thread
    advances ``bytes_read`` after each block it has read."""

    bytes_total: int | None = None
    bytes_read: int = 0


def read_progress(source: Source) -> ReadProgress:
    """A byte counter for ``source``: with a total for CSV files (compressed: their compressed
    bytes), none for stdin or a pipe, nor for formats that record their row count."""
    if source.format is not FileFormat.CSV:
        return ReadProgress()
    sizes = [file_size(file) for file in source.files]
    if None in sizes:
        return ReadProgress()
    return ReadProgress(sum(size or 0 for size in sizes))


def iter_batches(
    source: Source, request: ReadRequest, progress: ReadProgress | None = None
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield ``(file, batch)`` in file order: the requested columns, at most ``chunk_size`` rows.
    ``progress`` (with a total) is advanced as CSV bytes are read."""
    labels = label_columns(request)
    before = 0  # bytes of the files already read
    for path in source.files:
        file_request = request
        if progress is not None and progress.bytes_total is not None:
            file_request = replace(request, on_bytes=_advance(progress, before))
            before += file_size(path) or 0
        yield from iter_file_batches(path, source.format, file_request, labels=labels)


def iter_file_batches(
    path: str,
    file_format: FileFormat,
    request: ReadRequest,
    row_groups: Sequence[int] | None = None,
    labels: LabelColumns | None = None,
    part: ByteRange | None = None,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """``iter_batches`` of one file; of a Parquet file, only ``row_groups`` when given; of a
    plain CSV file, only ``part`` when given. ``labels`` checks the label columns against
    earlier files' (a new one: this file's own)."""
    readers: dict[FileFormat, Callable[[str, ReadRequest], Iterator[pa.RecordBatch]]] = {
        FileFormat.PARQUET: functools.partial(_parquet_batches, row_groups=row_groups),
        FileFormat.CSV: functools.partial(_csv_batches, part=part),
        FileFormat.IPC: _ipc_batches,
    }
    read_file = readers[file_format]
    labels = labels or label_columns(request)
    try:
        for batch in read_file(path, request):
            labels.check(batch, _display(path))
            for piece in _slices(batch, request.chunk_size):
                yield _display(path), piece
    except (pa.ArrowException, OSError) as error:
        raise InputError(_one_line(error), path=_display(path)) from error
    except UnicodeDecodeError as error:
        message = f"is not UTF-8 text ({error.reason} at byte {error.start})"
        raise InputError(message, path=_display(path)) from error


def label_columns(request: ReadRequest) -> LabelColumns:
    """A checker of the request's label columns (by default those not read as numbers)."""
    if request.labels is not None:
        return LabelColumns(request.labels)
    return LabelColumns(tuple(c for c in request.columns if c not in request.numeric))


def parquet_row_groups(path: str) -> list[int]:
    """The rows of each row group of a Parquet file (its footer only)."""
    filesystem, inner = filesystem_and_path(path)
    try:
        metadata = pq.read_metadata(inner, filesystem=filesystem)
    except (pa.ArrowException, OSError) as error:
        raise InputError(_one_line(error), path=_display(path)) from error
    return [metadata.row_group(k).num_rows for k in range(metadata.num_row_groups)]


def _advance(progress: ReadProgress, before: int) -> Callable[[int], None]:
    def advance(position: int) -> None:
        progress.bytes_read = before + position

    return advance


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
    except (pa.ArrowException, OSError, InputError):
        return None


def _parquet_rows(path: str) -> int:
    filesystem, inner = filesystem_and_path(path)
    return pq.read_metadata(inner, filesystem=filesystem).num_rows


def _ipc_file_rows(path: str) -> int:
    with open_input_file(path) as file:
        reader = pa.ipc.open_file(file)
        if hasattr(reader, "count_rows"):  # pyarrow >= 17: the batches' metadata only
            return reader.count_rows()
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def _parquet_batches(
    path: str, request: ReadRequest, row_groups: Sequence[int] | None = None
) -> Iterator[pa.RecordBatch]:
    filesystem, inner = filesystem_and_path(path)
    parquet = pq.ParquetFile(
        inner, filesystem=filesystem, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES
    )
    require_columns(parquet.schema_arrow.names, request.columns, path)
    # One decoding thread: the other cores are computing, and arrow's pool threads keep memory
    # of their own (faster and steadier in memory: see bench/README.md).
    batches = parquet.iter_batches(
        batch_size=request.chunk_size,
        row_groups=row_groups,
        columns=list(request.columns),
        use_threads=False,
    )
    metadata = parquet.metadata
    claimed = metadata.num_rows
    in_groups = sum(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
    if in_groups != claimed:
        raise InputError(
            f"the footer records {claimed:,} rows but its row groups hold {in_groups:,}; "
            "expected a complete Parquet file",
            path=path,
        )
    if row_groups is not None:  # a part of the file: the rows its groups record
        claimed = sum(metadata.row_group(i).num_rows for i in row_groups)
    read = 0
    for batch in batches:
        read += batch.num_rows
        yield batch
    if read != claimed:
        raise InputError(
            f"read {read:,} rows where the footer records {claimed:,}; the file changed or "
            "was cut short while it was read",
            path=path,
        )


def _ipc_batches(path: str, request: ReadRequest) -> Iterator[pa.RecordBatch]:
    with open_input_file(path) as file:
        try:
            reader = pa.ipc.open_file(file)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            file.seek(0)
            reader = pa.ipc.open_stream(file)
            batches = iter(reader)
        require_columns(reader.schema.names, request.columns, path)
        for batch in batches:
            yield batch.select(list(request.columns))


def _csv_batches(
    path: str, request: ReadRequest, part: ByteRange | None = None
) -> Iterator[pa.RecordBatch]:
    header = None if path == STDIN else csv_header(path, request.delimiter)
    if header is not None:
        require_columns(header, request.columns, path)
    try:
        yield from csv_batches(path, _csv_read(request), header, request.on_bytes, part)
    except pa.ArrowKeyError as error:  # a missing column on stdin, whose header we cannot pre-read
        raise InputError(_one_line(error), path=_display(path)) from error


def csv_part_types(path: str, request: ReadRequest, blocks: int) -> dict[str, pa.DataType] | None:
    """The types every ``ByteRange`` part of a plain CSV file is read with: its first range's
    (``first_range_types``), where a requested column is not read as a number; else None (each
    part's own are the same)."""
    if set(request.columns) <= set(request.numeric):
        return None
    try:
        return first_range_types(path, _csv_read(request), blocks)
    except (pa.ArrowException, OSError):
        return None  # reading the file's first part reports why


def _csv_read(request: ReadRequest) -> CsvRead:
    return CsvRead(
        request.columns, request.numeric, request.delimiter, request.chunk_size, request.text
    )


def require_columns(present: Sequence[str], needed: Sequence[str], path: str) -> None:
    """Each needed column must appear exactly once; name what is wrong and what might be meant."""
    for name in needed:
        if present.count(name) > 1:
            raise InputError(
                f"the name appears {present.count(name)} times in the header; rename the copies",
                path=_display(path),
                column=name,
            )
        if name not in present:
            raise InputError(
                f"no such column; the file has {', '.join(map(repr, present))}"
                + _missing_column_hint(name, present),
                path=_display(path),
                column=name,
            )


def _missing_column_hint(name: str, present: Sequence[str]) -> str:
    if len(present) == 1:
        for delimiter in _DELIMITER_HINTS:
            if delimiter in present[0]:
                return f"; the header looks {delimiter!r}-delimited: pass --delimiter {delimiter!r}"
    folded = {column.lower(): column for column in present}
    close = difflib.get_close_matches(name.lower(), folded, n=1, cutoff=0.5)
    return f"; did you mean {folded[close[0]]!r}?" if close else ""


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


def column_names(source: Source, delimiter: str = ",") -> tuple[str, ...]:
    """Every column of the source's first file, to read them all (stdin cannot tell up front)."""
    if source.format is not FileFormat.CSV:
        return tuple(_first_schema(source).names)
    path = source.files[0]
    try:
        header = None if path == STDIN else csv_header(path, delimiter)
    except (pa.ArrowException, OSError, StopIteration) as error:
        raise InputError(_one_line(error), path=_display(path)) from error
    if header is None:
        raise InputError("stdin cannot be read twice: save it to a file first", path=path)
    return tuple(header)


def scalar_columns(source: Source, names: Sequence[str]) -> bool:
    """Whether every column of ``names`` holds one value per row, as the first file's schema
    tells: always in CSV; in Parquet and Arrow, unless it is a list (a column it lacks counts
    as scalar: the pass reports it)."""
    if source.format is FileFormat.CSV:
        return True
    schema = _first_schema(source)
    return not any(
        pa.types.is_nested(schema.field(name).type) for name in names if name in schema.names
    )


def _first_schema(source: Source) -> pa.Schema:
    """The schema of a Parquet or Arrow source's first file."""
    path = source.files[0]
    try:
        if source.format is FileFormat.PARQUET:
            filesystem, inner = filesystem_and_path(path)
            return pq.read_schema(inner, filesystem=filesystem)
        return _ipc_schema(path)
    except (pa.ArrowException, OSError) as error:
        raise InputError(_one_line(error), path=_display(path)) from error


def _ipc_schema(path: str) -> pa.Schema:
    with open_input_file(path) as file:
        try:
            return pa.ipc.open_file(file).schema
        except pa.ArrowInvalid:
            file.seek(0)
            return pa.ipc.open_stream(file).schema
