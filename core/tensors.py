"""Arrow columns → ``(rows, width)`` torch tensors, zero-copy where the column is float64.

A primitive numeric column becomes width 1; a list or fixed-size-list column of equal-length
rows becomes width ``D``; several columns for one role are stacked side by side.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from gaussnll.core.errors import InputError

_TORCH_DTYPES = {
    pa.float64(): torch.float64,
    pa.float32(): torch.float32,
}
_NUMPY_DTYPES = {torch.float64: np.float64, torch.float32: np.float32}


@dataclass(frozen=True)
class Location:
    """Where a batch sits: its file and the 1-based row number of its first row there."""

    path: str
    first_row: int


def role_tensor(
    batch: pa.RecordBatch, names: Sequence[str], dtype: torch.dtype, where: Location
) -> Tensor:
    """The role's columns of ``batch`` as one ``(rows, width)`` tensor of ``dtype``."""
    parts = [_column_tensor(batch.column(name), name, dtype, where) for name in names]
    if len(parts) == 1:
        return parts[0]
    if any(part.shape[1] != 1 for part in parts):
        raise InputError(
            "list columns cannot be combined with other columns for one role",
            path=where.path,
            column=",".join(names),
        )
    return torch.cat(parts, dim=1)


def _column_tensor(array: pa.Array, name: str, dtype: torch.dtype, where: Location) -> Tensor:
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        width = _common_list_length(array, name, where)
    elif pa.types.is_fixed_size_list(array.type):
        _reject_nulls(array, name, where)
        width = array.type.list_size
    else:
        return _flat_tensor(array, name, dtype, where, width=1).unsqueeze(1)
    values = _flat_tensor(array.flatten(), name, dtype, where, width=width)
    return values.reshape(len(array), width)


def _flat_tensor(
    array: pa.Array, name: str, dtype: torch.dtype, where: Location, *, width: int
) -> Tensor:
    _reject_nulls(array, name, where, width=width)
    if pa.types.is_integer(array.type) or pa.types.is_float16(array.type):
        array = pc.cast(array, pa.float64())
    source_dtype = _TORCH_DTYPES.get(array.type)
    if source_dtype is None:
        raise InputError(
            f"expected numbers, got values of type {array.type}", path=where.path, column=name
        )
    if len(array) == 0:
        return torch.empty(0, dtype=dtype)
    return _zero_copy_view(array, source_dtype).to(dtype)


def _zero_copy_view(array: pa.Array, source_dtype: torch.dtype) -> Tensor:
    """A tensor over the array's value buffer, read-only ones (memory maps) included.

    torch has no read-only tensors and warns about them; the engine never writes into its
    inputs, so the warning is silenced.
    """
    itemsize = array.type.byte_width
    values = np.frombuffer(
        array.buffers()[1],
        dtype=_NUMPY_DTYPES[source_dtype],
        count=len(array),
        offset=array.offset * itemsize,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
        return torch.from_numpy(values)


def _common_list_length(array: pa.Array, name: str, where: Location) -> int:
    _reject_nulls(array, name, where)
    lengths = pc.list_value_length(array)
    extremes = pc.min_max(lengths)
    shortest, longest = extremes["min"].as_py(), extremes["max"].as_py()
    if shortest != longest:
        first_other = pc.index(pc.not_equal(lengths, lengths[0]), True).as_py()
        raise InputError(
            f"list has {lengths[first_other].as_py()} values where earlier rows have "
            f"{lengths[0].as_py()}; every row must have the same number of outputs",
            path=where.path,
            column=name,
            row=where.first_row + first_other,
        )
    return shortest or 0


def _reject_nulls(array: pa.Array, name: str, where: Location, *, width: int = 1) -> None:
    """Raise on the first null; ``width`` maps an index of flattened list values to its row."""
    if array.null_count:
        first = pc.index(pc.is_null(array), True).as_py()
        raise InputError(
            "missing value; expected a number",
            path=where.path,
            column=name,
            row=where.first_row + first // max(width, 1),
        )
