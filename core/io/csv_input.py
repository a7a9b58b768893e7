"""CSV input: a regular file in ranges parsed on every core; stdin and compressed files streamed.

A regular file (or an object a URI names) is cut at line ends into ranges of a few blocks, each
block about half a chunk of rows; pyarrow parses a range's blocks in parallel, and the ranges in
file order: faster than the streaming reader on one thread, and half-chunk blocks peak lower in
memory than whole-chunk ones at the same speed (see bench/README.md). Like
pyarrow's own reader (``newlines_in_values=False``), this assumes no quoted value spans lines.
Column types not given are inferred from the first range and kept for the others.

stdin and compressed files go through pyarrow's incremental reader on one thread, in 1 MB blocks
coalesced into chunks.

A bad row is reported with its row and column: a range that fails is parsed again on one
thread, which makes pyarrow name the line.

A part of a regular file (``ByteRange``, a Dask task's partition) holds the lines that start in
its bytes: both of its ends are moved to the next line start by the same cut as the ranges', so
the parts of a file hold each line once. Its rows are numbered from 1 (the rows before it are
not known without reading them), and its column types are the file's first range's, given.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv

from gaussnll.core.errors import InputError
from gaussnll.core.io.filesystems import file_size, name_part, open_input_file, open_input_stream
from gaussnll.core.io.sources import COMPRESSIONS, STDIN

STREAM_BLOCK_BYTES = 1 << 20
MIN_BLOCK_BYTES = 1 << 20  # a row must fit in a block
MAX_BLOCK_BYTES = 1 << 24
MAX_BLOCKS_PER_RANGE = 4
_PROBE_BYTES = 1 << 16
_LINE_END = re.compile(rb"[\r\n]")
_CONVERSION = re.compile(r"CSV conversion error to (\w+): invalid value '(.*)'")
_NUMBER_TYPE = re.compile(r"double|float|u?int\d+")
_RAGGED = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+): (.*)")
_OVERLONG_ROW = "straddling object straddles two block boundaries"
_LOCATED = re.compile(r"(?:column #(\d+): )?Row #(\d+): (.*)")


@dataclass(frozen=True)
class CsvRead:
    """What to read from a CSV file: columns (the numeric ones parsed as float64, the ``text``
    ones kept as the text written, ``02134`` and ``NA`` included)."""

    columns: tuple[str, ...]
    numeric: tuple[str, ...]
    delimiter: str
    chunk_size: int
    text: tuple[str, ...] = ()

    def parse_options(self) -> pacsv.ParseOptions:
        return pacsv.ParseOptions(delimiter=self.delimiter)

    def convert_options(self, types: dict[str, pa.DataType] | None = None) -> pacsv.ConvertOptions:
        """Numeric columns as float64, text ones as strings; ``types`` fixes the others' (else
        pyarrow infers them)."""
        types = {
            **(types or {}),
            **{name: pa.string() for name in self.text},
            **{name: pa.float64() for name in self.numeric},
        }
        return pacsv.ConvertOptions(include_columns=list(self.columns), column_types=types)


@dataclass(frozen=True)
class ByteRange:
    """A part of a plain CSV file: the rows whose lines start at or after byte ``start`` and
    before byte ``stop``; ``types``: the file's first range's column types
    (``first_range_types``; None: inferred from the part's own first range)."""

    start: int
    stop: int
    types: dict[str, pa.DataType] | None = None


def csv_batches(
    path: str,
    read: CsvRead,
    header: list[str] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    part: ByteRange | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the projected columns in file order, in batches of at most about ``chunk_size``
    rows (longer ones are sliced by the caller); a bad row raises an InputError naming its row
    and column. ``header``: the file's column names when the caller has read them already;
    ``on_bytes(position)``: told how far into a regular file the reader is, after each block
    (a compressed file: its compressed bytes); ``part``: only that part of a plain file, its
    rows numbered from 1."""
    if path == STDIN or file_size(path) is None:
        yield from _streamed_batches(path, read)
    elif _compression(path) is not None:
        yield from _streamed_batches(path, read, on_bytes)
    else:
        names = header if header is not None else csv_header(path, read.delimiter)
        yield from _ranged_batches(path, read, names, on_bytes, part)


def is_compressed(path: str) -> bool:
    """Whether the CSV file ``path`` is compressed (``.gz``, ``.bz2``, ``.zst``): read from
    start to end, never in ranges or cut into parts."""
    return _compression(path) is not None


def range_blocks() -> int:
    """Blocks pyarrow parses at once in a range: one per core, up to ``MAX_BLOCKS_PER_RANGE``."""
    return max(1, min(MAX_BLOCKS_PER_RANGE, pa.cpu_count()))


def first_range_types(path: str, read: CsvRead, blocks: int) -> dict[str, pa.DataType] | None:
    """The column types a plain CSV file's reader infers from its first range, as it is cut
    with ``blocks`` blocks (``range_blocks`` where the file is read whole), and keeps for the
    others; None when that range does not parse (its reader reports why)."""
    with open_input_file(path) as file:
        block, span = _range_bytes(file, read, blocks)
        end = _line_end_after(file, span, file.size())
        data = pa.py_buffer(file.read_at(end, 0))
    try:
        return _column_types(_parsed(data, read, RangeLayout(), block, threads=True))
    except pa.ArrowInvalid:
        return None


@dataclass(frozen=True)
class RangeLayout:
    """What a range after the first needs from it: the header's names and the column types
    inferred from the first range (as pyarrow's streaming reader infers them from its first
    block); the first range has neither."""

    names: list[str] | None = None
    types: dict[str, pa.DataType] | None = None

    @property
    def header_lines(self) -> int:
        return 1 if self.names is None else 0


def _ranged_batches(
    path: str,
    read: CsvRead,
    names: list[str],
    on_bytes: Callable[[int], None] | None,
    part: ByteRange | None,
) -> Iterator[pa.RecordBatch]:
    with open_input_file(path) as file:
        size = file.size()
        block, span = _range_bytes(file, read, range_blocks())
        start, stop = 0, size
        if part is not None:
            start, stop = _line_start(file, part.start, size), _line_start(file, part.stop, size)
        layout = RangeLayout(None if start == 0 else names, None if part is None else part.types)
        rows_before = 0
        while start < stop:
            end = min(stop, _line_end_after(file, start + span, size))
            data = pa.py_buffer(file.read_at(end - start, start))
            try:
                table = _parsed(data, read, layout, block, threads=True)
            except pa.ArrowInvalid as error:
                raise _located_error(path, read, error, data, layout, rows_before, block) from error
            if layout.names is None or layout.types is None:  # the first range
                layout = RangeLayout(names, layout.types or _column_types(table))
            if on_bytes is not None:
                on_bytes(end)
            yield from table.to_batches()
            rows_before += table.num_rows
            start = end


def _range_bytes(file: pa.NativeFile, read: CsvRead, blocks: int) -> tuple[int, int]:
    """The bytes of a block and of a range of ``blocks`` blocks (before its cut at a line end)."""
    block = _block_bytes(file.read_at(_PROBE_BYTES, 0), read.chunk_size)
    return block, block * blocks


def _column_types(table: pa.Table) -> dict[str, pa.DataType]:
    return {field.name: field.type for field in table.schema}


def _block_bytes(head: bytes, chunk_size: int) -> int:
    """Bytes holding about half a chunk of rows, judged by the lines in ``head``."""
    lines = max(1, len(_LINE_END.findall(head)))
    wanted = len(head) * chunk_size // (2 * lines)
    return max(MIN_BLOCK_BYTES, min(MAX_BLOCK_BYTES, wanted))


def _line_end_after(file: pa.NativeFile, position: int, size: int) -> int:
    """The offset just past the first line end at or after ``position``, else ``size``; or
    ``MAX_BLOCK_BYTES`` further if none comes before (pyarrow then rejects the overlong row).

    A cut between ``\\r`` and ``\\n`` leaves an empty line, which pyarrow skips."""
    limit = min(size, position + MAX_BLOCK_BYTES)
    while position < limit:
        window = file.read_at(_PROBE_BYTES, position)
        if not window:
            break
        if found := _LINE_END.search(window):
            return position + found.end()
        position += len(window)
    return limit


def _line_start(file: pa.NativeFile, position: int, size: int) -> int:
    """The first line start at or after ``position``: the file's start, or the offset just
    past a line end (the ranges' cut)."""
    return 0 if position <= 0 else _line_end_after(file, position - 1, size)


def _parsed(
    data: pa.Buffer, read: CsvRead, layout: RangeLayout, block: int, threads: bool
) -> pa.Table:
    """One range parsed whole, in blocks of ``block`` bytes, on pyarrow's threads or on one."""
    return pacsv.read_csv(
        data,
        read_options=pacsv.ReadOptions(
            use_threads=threads, block_size=block, column_names=layout.names
        ),
        parse_options=read.parse_options(),
        convert_options=read.convert_options(layout.types),
    )


def _located_error(
    path: str,
    read: CsvRead,
    error: pa.ArrowInvalid,
    data: pa.Buffer,
    layout: RangeLayout,
    rows_before: int,
    block: int,
) -> InputError:
    """The error of a range that failed to parse in parallel, with its row: parsed again on one
    thread, pyarrow names the line within the range (counting the header, if it has it)."""
    try:
        _parsed(data, read, layout, len(data) + 1, threads=False)
    except pa.ArrowInvalid as located:
        error = located
    return csv_error(path, read, error, rows_before - layout.header_lines, block)


def _streamed_batches(
    path: str, read: CsvRead, on_bytes: Callable[[int], None] | None = None
) -> Iterator[pa.RecordBatch]:
    """Through pyarrow's incremental reader; ``on_bytes`` (a regular, compressed file) is told
    the position in the file underneath the decompression."""
    read_options = pacsv.ReadOptions(block_size=STREAM_BLOCK_BYTES, use_threads=False)
    raw = None if on_bytes is None else open_input_file(path)
    stream = (
        open_csv_stream(path) if raw is None else pa.CompressedInputStream(raw, _compression(path))
    )
    try:
        with stream:
            batches = pacsv.open_csv(
                stream,
                read_options=read_options,
                parse_options=read.parse_options(),
                convert_options=read.convert_options(),
            )
            for batch in _coalesced(batches, read.chunk_size):
                if raw is not None and on_bytes is not None:
                    on_bytes(raw.tell())
                yield batch
    except pa.ArrowInvalid as error:
        raise csv_error(path, read, error, -1, STREAM_BLOCK_BYTES) from error  # -1: the header
    finally:
        if raw is not None:
            raw.close()


def _coalesced(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Join small batches into batches of ``rows`` rows (one copy; larger ones pass through)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield _joined(pending)
            pending, count = [], 0
    if pending:
        yield _joined(pending)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def csv_header(path: str, delimiter: str) -> list[str]:
    """The column names of a CSV file (reads only its first block; bad rows are left for the
    streaming read to report)."""
    options = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=lambda _row: "skip")
    with open_csv_stream(path) as stream:
        return pacsv.open_csv(stream, parse_options=options).schema.names


def open_csv_stream(path: str) -> pa.NativeFile:
    if path == STDIN:
        if sys.stdin is None:  # started with stdin closed (<&-)
            raise InputError("stdin is closed; expected CSV on it", path="<stdin>")
        return pa.PythonFile(sys.stdin.buffer, mode="r")
    return open_input_stream(path, _compression(path))


def _compression(path: str) -> str | None:
    name = name_part(path).lower()
    return next((c for s, c in COMPRESSIONS.items() if name.endswith(s)), None)


def csv_error(
    path: str, read: CsvRead, error: pa.ArrowInvalid, row_offset: int, block: int
) -> InputError:
    """pyarrow's message for a bad row, as row, column and value (the column named from the
    header, which stdin cannot give again); pyarrow's line plus ``row_offset`` is the data row.
    ``block``: the bytes pyarrow parsed at once, which a row must fit in."""
    message = " ".join(str(error).split())
    display = "<stdin>" if path == STDIN else path
    if _OVERLONG_ROW in message:
        return InputError(
            f"holds a row longer than {block:,} bytes, more than a CSV row may be", path=display
        )
    if match := _RAGGED.search(message):
        line, expected, got, text = int(match[1]), match[2], match[3], match[4][:60]
        return InputError(
            f"expected {expected} fields, got {got}: {text!r}", path=display, row=line + row_offset
        )
    if match := _LOCATED.search(message):
        index, line, detail = match[1], int(match[2]), match[3]
        column = None if index is None else _column_name(path, read, int(index))
        if conversion := _CONVERSION.fullmatch(detail):
            detail = f"expected {_wanted(conversion[1])}, got {conversion[2]!r}"
        return InputError(detail, path=display, column=column, row=line + row_offset)
    return InputError(message, path=display)


def _wanted(type_name: str) -> str:
    """What a value converted to pyarrow's ``type_name`` (inferred from the first rows) must be."""
    if _NUMBER_TYPE.fullmatch(type_name):
        return "a number"
    if type_name == "null":
        return "an empty cell, as in the column's first rows"
    return f"a {type_name} value"


def _column_name(path: str, read: CsvRead, index: int) -> str:
    header = csv_header(path, read.delimiter) if path != STDIN else []
    return header[index] if index < len(header) else f"#{index + 1}"
