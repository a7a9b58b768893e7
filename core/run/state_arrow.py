"""A state document (``state_document``) as an Arrow IPC file, for large states: the sums of
10^5 ``--by`` groups take hundreds of MB, which as JSON text is several times larger and slow
to write and parse. The document is the same, version 4 (``schema: "gaussnll.state/4"``):

- the schema's metadata key ``gaussnll.state`` holds the document without its arrays, as JSON
  (``options``, ``outputs``, ``members``, ``groups``, ``max_groups``), with
  ``"encoding": "arrow"`` and ``"sums": {"PATH:PART": {"dtype", "shape"}}``;
- one record batch of one row holds the arrays: a column per sum, named as in ``sums``, a
  ``large_list`` of ``float64`` or ``int64`` holding the array flat in C order, its buffers
  compressed with zstd (IPC's own buffer compression, which Arrow readers undo; sums of many
  groups are mostly zeros, so this shrinks them many times and is faster to write and read).

Reading takes the IPC file format (``ARROW1`` magic, as written) or the stream format, from
the file's bytes (read whole, never memory-mapped: a file cut short is an error, not a crash),
validated in full before use; each array is a view of the read buffers, so loading holds the
file's size once more than the state.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from gaussnll.core.io.filesystems import first_line
from gaussnll.core.io.writers import writing
from gaussnll.core.run.state_document import check_document, malformed, sum_array, validated

HEADER_KEY = b"gaussnll.state"
ENCODING = "arrow"
_FILE_MAGIC = b"ARROW1"
_STREAM_MARKER = b"\xff\xff\xff\xff"


def is_arrow(head: bytes) -> bool:
    """Whether a file starting with ``head`` (its first 8 bytes) is Arrow IPC (file or stream)."""
    return head.startswith((_FILE_MAGIC, _STREAM_MARKER))


def write_arrow(document: dict[str, Any], path: str) -> None:
    """Write ``document`` (``Scorer.state_dict()``) to ``path`` as an Arrow IPC file."""
    arrays = document["sums"]
    header = {
        **{key: value for key, value in document.items() if key != "sums"},
        "encoding": ENCODING,
        "sums": {
            name: {"dtype": str(array.dtype), "shape": list(array.shape)}
            for name, array in arrays.items()
        },
    }
    columns = [_column(np.ascontiguousarray(array).reshape(-1)) for array in arrays.values()]
    schema = pa.schema(
        [
            pa.field(name, column.type, nullable=False)
            for name, column in zip(arrays, columns, strict=True)
        ],
        metadata={HEADER_KEY: json.dumps(header, separators=(",", ":"))},
    )
    batch = pa.record_batch(columns, schema=schema)
    compression = "zstd" if pa.Codec.is_available("zstd") else None
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with (
        writing(path),
        pa.OSFile(path, "wb") as sink,
        pa.ipc.new_file(sink, schema, options=options) as writer,
    ):
        writer.write_batch(batch)


def read_arrow(data: bytes, path: str) -> dict[str, Any]:
    """The state document in ``data``, the bytes of the Arrow IPC file ``path``, its arrays as
    NumPy arrays. The IPC data is validated in full before any of it is used: a damaged buffer
    (a flipped byte, an offset out of bounds) is an InputError, not a crash."""
    try:
        source = pa.BufferReader(data)
        opened = pa.ipc.open_file if data.startswith(_FILE_MAGIC) else pa.ipc.open_stream
        table = opened(source).read_all()
        table.validate(full=True)
        names = set(table.column_names)  # UTF-8, unless damaged
    except (OSError, ValueError, pa.ArrowException) as error:
        raise malformed(f"not a readable Arrow IPC file ({first_line(error)})", path) from None
    try:
        header = json.loads((table.schema.metadata or {})[HEADER_KEY])
    except (KeyError, ValueError, RecursionError):
        raise malformed(f"its Arrow schema has no {HEADER_KEY.decode()!r} document", path) from None
    if not isinstance(header, dict) or header.get("encoding") != ENCODING:
        raise malformed(f"its Arrow document must be of encoding {ENCODING!r}", path)
    check_document(header, path)
    if table.num_rows != 1:
        raise malformed(f"its arrays must be one row of columns, not {table.num_rows}", path)
    sums = {}
    for name, encoded in header["sums"].items():
        if name not in names:
            raise malformed(f"sum {name!r} has no column", path)
        try:
            column = table.column(name)
            if not pa.types.is_large_list(column.type):
                raise ValueError(f"a column of {column.type}, not of large_list")
            (row,) = [chunk for chunk in column.chunks if len(chunk)]
            values = row.flatten().to_numpy(zero_copy_only=True)
        except (pa.ArrowException, KeyError, ValueError) as error:
            raise malformed(f"sum {name!r} is malformed ({first_line(error)})", path) from None
        sums[name] = sum_array(name, encoded, values, path)
    document = {key: value for key, value in header.items() if key != "encoding"}
    return validated({**document, "sums": sums}, path)


def _column(values: np.ndarray) -> pa.LargeListArray:
    """``values`` (flat) as one list value, sharing their memory."""
    offsets = pa.array([0, len(values)], type=pa.int64())
    return pa.LargeListArray.from_arrays(offsets, pa.array(values))
