"""Stream per-row losses to Parquet or CSV, atomically: a failed run leaves no file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from gaussnll.core.errors import OutputError, UsageError
from gaussnll.core.io.sources import FileFormat, format_of

_READABLE = 0o644


class RowWriter:
    """Writes record batches to ``sink`` as Parquet or CSV; the schema comes from the first.

    ``name`` is what errors call the output (the user's path, not a temporary one).
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
        with _writing(self._name):
            if self._writer is None:
                self._schema = batch.schema
                if self._format is FileFormat.PARQUET:
                    self._writer = pq.ParquetWriter(self._sink, batch.schema)
                else:
                    self._writer = pacsv.CSVWriter(self._sink, batch.schema)
            self._writer.write_batch(self._conformed(batch))

    def _conformed(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` in the file's schema: an id column may change width from one input file
        to the next (int32, then int64), or be all null in one."""
        schema = self._schema
        if batch.schema == schema:
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
            with _writing(self._name):
                self._writer.close()


@contextmanager
def _writing(name: str) -> Iterator[None]:
    """Report a failed write (disk full, permissions) as an OutputError; a closed pipe stays
    a BrokenPipeError, which the CLI ends quietly."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputError(f"cannot write {name}: {error}") from error


def row_file_format(path: str, inputs: Sequence[str]) -> FileFormat:
    """Check that ``path`` can take per-row output (and is none of the ``inputs`` files);
    return its format."""
    file_format = format_of(path)
    if file_format not in (FileFormat.PARQUET, FileFormat.CSV) or path.endswith(
        (".gz", ".bz2", ".zst")
    ):
        raise UsageError(f"--per-row must name a .parquet or .csv file. Got {path!r} instead.")
    target = os.path.realpath(path)
    if any(os.path.realpath(f) == target for f in inputs):
        raise UsageError(f"--per-row {path!r} is an input file; choose another path")
    return file_format


@contextmanager
def atomic_row_writer(path: str, file_format: FileFormat) -> Iterator[RowWriter]:
    """A RowWriter on a temporary file beside ``path``, renamed to ``path`` only on success."""
    with _replaced_on_success(path) as temporary:
        writer = RowWriter(temporary, file_format, name=path)
        try:
            yield writer
            writer.close()
        except BaseException:
            with suppress(Exception):
                writer.close()
            raise


def write_text_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it."""
    with _replaced_on_success(path) as temporary, _writing(path):
        Path(temporary).write_text(text, encoding="utf-8")


@contextmanager
def _replaced_on_success(path: str) -> Iterator[str]:
    """A temporary path beside ``path``: renamed to ``path`` when the block succeeds, removed
    when it fails or is interrupted, so ``path`` is never half-written."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        handle, temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=directory
        )
    except OSError as error:
        raise OutputError(f"cannot create {path}: {error.strerror or error}") from error
    os.close(handle)
    os.chmod(temporary, _READABLE)
    try:
        yield temporary
        with _writing(path):
            os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
