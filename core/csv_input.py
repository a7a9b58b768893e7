"""CSV input: streamed with pyarrow's threaded reader; on a parse or conversion error the file
is read again on one thread, which makes pyarrow name the line, to report row, column and value."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv

from gaussnll.core.errors import InputError
from gaussnll.core.sources import COMPRESSIONS, STDIN

CSV_BYTES_PER_ROW_GUESS = 64
CSV_BLOCK_BYTES = (1 << 20, 1 << 26)
_CONVERSION = re.compile(
    r"column #(\d+): Row #(\d+): CSV conversion error to \w+: invalid value '(.*)'"
)
_RAGGED = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+): (.*)")


@dataclass(frozen=True)
class CsvRead:
    """What to read from a CSV file: columns (the numeric ones parsed as float64)."""

    columns: tuple[str, ...]
    numeric: tuple[str, ...]
    delimiter: str
    chunk_size: int

    def options(self, threads: bool = True) -> dict[str, object]:
        block = self.chunk_size * CSV_BYTES_PER_ROW_GUESS
        block = min(max(block, CSV_BLOCK_BYTES[0]), CSV_BLOCK_BYTES[1])
        types = {name: pa.float64() for name in self.numeric}
        return {
            "read_options": pacsv.ReadOptions(block_size=block, use_threads=threads),
            "parse_options": pacsv.ParseOptions(delimiter=self.delimiter),
            "convert_options": pacsv.ConvertOptions(
                include_columns=list(self.columns), column_types=types
            ),
        }


def csv_batches(path: str, read: CsvRead) -> Iterator[pa.RecordBatch]:
    """Stream the projected columns; bad rows raise an InputError naming row and column."""
    stream = open_csv_stream(path)
    try:
        with stream:
            yield from pacsv.open_csv(stream, **read.options())
    except pa.ArrowInvalid as error:
        raise locate_csv_error(path, read, error) from error


def csv_header(path: str, delimiter: str) -> list[str]:
    """The column names of a CSV file (reads only its first block; bad rows are left for the
    streaming read to report)."""
    options = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=lambda _row: "skip")
    with open_csv_stream(path) as stream:
        return pacsv.open_csv(stream, parse_options=options).schema.names


def open_csv_stream(path: str) -> pa.NativeFile:
    if path == STDIN:
        return pa.PythonFile(sys.stdin.buffer, mode="r")
    compression = next((c for s, c in COMPRESSIONS.items() if path.lower().endswith(s)), None)
    return pa.input_stream(path, compression=compression)


def locate_csv_error(path: str, read: CsvRead, error: pa.ArrowInvalid) -> InputError:
    """Re-read ``path`` single-threaded to find the row behind ``error`` (not for stdin)."""
    message = " ".join(str(error).split())
    if path != STDIN:
        try:
            with open_csv_stream(path) as stream:
                for _ in pacsv.open_csv(stream, **read.options(threads=False)):
                    pass
        except pa.ArrowInvalid as located:
            message = " ".join(str(located).split())
    display = "<stdin>" if path == STDIN else path
    if match := _CONVERSION.search(message):
        index, line, value = int(match[1]), int(match[2]), match[3]
        header = csv_header(path, read.delimiter) if path != STDIN else []
        column = header[index] if index < len(header) else f"#{index + 1}"
        return InputError(
            f"expected a number, got {value!r}", path=display, column=column, row=line - 1
        )
    if match := _RAGGED.search(message):
        line, expected, got, text = int(match[1]), match[2], match[3], match[4][:60]
        return InputError(
            f"expected {expected} fields, got {got}: {text!r}", path=display, row=line - 1
        )
    return InputError(message, path=display)
