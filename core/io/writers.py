"""Stream per-row losses to Parquet or CSV (to a file, a temporary one, or a stream)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from gaussnll.core.errors import OutputError, UsageError
from gaussnll.core.io.sources import FileFormat, format_of


class RowWriter:
    """Writes record batches to ``sink`` as Parquet or CSV; the schema comes from the first.

    ``name`` is what errors call the output (the user's path, not a temporary one). As a
    context manager it closes the sink on the way out (quietly when an error is on its way).
    """

    def __init__(
        self, sink: str | BinaryIO, file_format: FileFormat, name: str | None = None
    ) -> None:
        self._sink = sink
        self._format = file_format
        self._name = name or (sink if isinstance(sink, str) else "<stdout>")
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        with writing(self._name):
            try:
                if self._writer is None:
                    self._schema = batch.schema
                    if self._format is FileFormat.PARQUET:
                        self._writer = pq.ParquetWriter(self._sink, batch.schema)
                    else:
                        self._writer = self._csv_writer(batch.schema)
                self._writer.write_batch(self._conformed(batch))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                # values the format cannot hold (bytes that are not UTF-8 in CSV, intervals)
                raise OutputError(
                    f"cannot write {self._name}: {' '.join(str(error).split())}"
                    + ("; write a .parquet file instead" if self._format is FileFormat.CSV else "")
                ) from error

    @property
    def file_format(self) -> FileFormat:
        """The format written: Parquet or CSV."""
        return self._format

    def _csv_writer(self, schema: pa.Schema) -> pacsv.CSVWriter:
        """A CSV writer of ``schema``; a column CSV cannot hold (a list, struct or map: one
        value per cell only) is an OutputError naming it."""
        for field in schema:
            if pa.types.is_nested(field.type):
                raise OutputError(
                    f"cannot write {self._name}: column {field.name!r} holds {field.type} "
                    "values, which a CSV file cannot hold; write a .parquet file instead"
                )
        return pacsv.CSVWriter(self._sink, schema)

    def _conformed(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` in the file's schema: an id column may change width from one input file
        to the next (int32, then int64), or be all null in one."""
        schema = self._schema
        if schema is None or batch.schema == schema:
            return batch
        try:
            return batch.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            changed = "; ".join(
                f"column {new.name!r} holds {new.type} values after {old.type} ones"
                for old, new in zip(schema, batch.schema, strict=True)
                if old.type != new.type
            )
            raise OutputError(
                f"cannot write {self._name}: {changed}, which they do not fit "
                f"({' '.join(str(error).split())})"
            ) from error

    def close(self) -> None:
        if self._writer is not None:
            with writing(self._name):
                self._writer.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(
        self, kind: type | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is None:
            self.close()
        else:
            with suppress(Exception):
                self.close()


@contextmanager
def writing(name: str) -> Iterator[None]:
    """Report a failed write (disk full, permissions) as an OutputError; a closed pipe stays
    a BrokenPipeError, which the CLI ends quietly."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputError(f"cannot write {name}: {error}") from error


def row_file_format(path: str) -> FileFormat:
    """Check that ``path`` names a per-row output format; return it."""
    file_format = format_of(path)
    if file_format not in (FileFormat.PARQUET, FileFormat.CSV) or path.endswith(
        (".gz", ".bz2", ".zst")
    ):
        raise UsageError(f"--per-row must name a .parquet or .csv file. Got {path!r} instead.")
    return file_format
