"""Write predictions recalibrated: every column of the input as it is, but the spread columns
(variance, standard deviation or log-variance, in the input's own form) rescaled by a
recalibration map, streamed batch by batch. From CSV to CSV the other columns (but the map's
key columns, which are read as scoring reads them) are carried as the text written: ``02134``
stays ``02134``, a 23-digit number keeps its digits."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from gaussnll.core.errors import InputError
from gaussnll.core.io.forms import FORMS
from gaussnll.core.io.readers import ReadRequest, column_names, iter_batches
from gaussnll.core.io.scales import ScaleLookup
from gaussnll.core.io.sources import FileFormat, resolve_source
from gaussnll.core.io.tensors import Location
from gaussnll.core.io.writers import RowWriter
from gaussnll.core.options import ScoreOptions, Spread
from gaussnll.core.recalibration import RecalibrationMap


def write_recalibrated(
    path: str, recalibration: RecalibrationMap, options: ScoreOptions, rows_to: RowWriter
) -> int:
    """Stream ``path`` to ``rows_to`` with its spread columns (``options.columns``) rescaled by
    ``recalibration``; return the rows written."""
    source = resolve_source(path)
    spec = options.columns
    if len(spec.spread) != len(recalibration.scale):
        raise InputError(
            f"the map has {len(recalibration.scale)} output(s) and --{spec.spread_kind.value}"
            f" names {len(spec.spread)} column(s): give one spread column per output",
            path=path,
        )
    columns = column_names(source, options.delimiter)
    keyed = (*spec.spread, *recalibration.by)  # read as scoring reads them
    text = source.format is FileFormat.CSV and rows_to.file_format is FileFormat.CSV
    request = ReadRequest(
        columns,
        (),
        options.chunk_size,
        options.delimiter,
        labels=recalibration.by,
        text=tuple(name for name in columns if name not in keyed) if text else (),
    )
    scales = ScaleLookup(recalibration)
    rows, where = 0, Location("", 1)
    for file, batch in iter_batches(source, request):
        where = Location(file, where.first_row if file == where.path else 1)
        factors = scales.scales(batch, where)
        for output, name in enumerate(spec.spread):
            index = batch.schema.get_field_index(name)
            if index < 0:
                raise InputError("no such column", path=file, column=name)
            rescaled = _rescaled(
                batch.column(index), factors[:, output], spec.spread_kind, file, name
            )
            batch = batch.set_column(index, name, rescaled)
        rows_to.write(batch)
        rows += batch.num_rows
        where = where.shifted(batch.num_rows)
    return rows


def _rescaled(column: pa.Array, factor: np.ndarray, kind: Spread, file: str, name: str) -> pa.Array:
    """A spread column with its variance times ``factor``, in the column's own form and type."""
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise InputError(f"holds {column.type} values; expected numbers", path=file, column=name)
    scaled = FORMS[kind].rescaled(column.cast(pa.float64()), factor)
    return scaled if pa.types.is_integer(column.type) else scaled.cast(column.type)
