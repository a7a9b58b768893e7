"""Arrow columns → ``(rows, width)`` torch tensors, zero-copy where the column is float64.

A primitive numeric column becomes width 1; a list or fixed-size-list column of equal-length
rows becomes width ``D``; several columns for one role are stacked side by side.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from gaussnll.core.errors import InputError

DTYPES = {"float64": torch.float64, "float32": torch.float32}  # by ``ScoreOptions.dtype``

_TORCH_DTYPES = {pa.float64(): torch.float64, pa.float32(): torch.float32}


@dataclass(frozen=True)
class Location:
    """Where a batch sits: its file and the 1-based row number of its first row there.

    ``file_rows``, when given, are the file row numbers of the batch's rows, for batches whose
    rows are not contiguous in the file (rows paired by id).
    """

    path: str
    first_row: int
    file_rows: Sequence[int] | np.ndarray | None = field(default=None, compare=False)

    def row(self, offset: int) -> int:
        """The file row number of the batch's row ``offset`` (0-based)."""
        if self.file_rows is not None:
            return int(self.file_rows[offset])
        return self.first_row + offset

    def subset(self, offsets: np.ndarray) -> Location:
        """Where the batch's rows at ``offsets`` (0-based, ascending) sit."""
        if self.file_rows is not None:
            rows = np.asarray(self.file_rows)[offsets]
        else:
            rows = self.first_row + offsets
        return Location(self.path, self.first_row, rows)

    def shifted(self, start: int) -> Location:
        """Where the batch's rows from ``start`` on sit."""
        rows = None if self.file_rows is None else self.file_rows[start:]
        return Location(self.path, self.first_row + start, rows)


@dataclass(frozen=True)
class Conversion:
    """How to turn a batch's columns into tensors.

    ``nulls_as_nan``: a missing value becomes NaN (for the skip and propagate policies) instead
    of an error naming its row.
    """

    dtype: torch.dtype
    where: Location
    nulls_as_nan: bool = False

    def role(self, batch: pa.RecordBatch, names: Sequence[str], what: str = "outputs") -> Tensor:
        """The role's columns of ``batch`` as one ``(rows, width)`` tensor (a list column's
        values are ``what``: outputs, or a quantile model's quantiles)."""
        parts = [self._column(batch.column(name), name, what) for name in names]
        if len(parts) == 1:
            return parts[0]
        if any(part.shape[1] != 1 for part in parts):
            raise InputError(
                "list columns cannot be combined with other columns for one role",
                path=self.where.path,
                column=",".join(names),
            )
        return torch.cat(parts, dim=1)

    def single(self, batch: pa.RecordBatch, name: str) -> Tensor:
        """The column ``name`` of ``batch``, one number per row (a list column is refused), as
        a ``(rows, 1)`` tensor."""
        array = batch.column(name)
        if _is_list(array.type):
            raise InputError(
                f"holds {array.type} values; expected one number per row",
                path=self.where.path,
                column=name,
            )
        return self._flat(array, name, width=1).unsqueeze(1)

    def members(self, batch: pa.RecordBatch, names: Sequence[str], what: str = "members") -> Tensor:
        """The role's ensemble members (or samples' draws: ``what``) as one ``(rows, members,
        width)`` tensor: a list column of M numbers, or of M lists of D numbers; or number
        columns, one per member."""
        array = batch.column(names[0])
        if len(names) > 1 or not _is_list(array.type):
            return self.role(batch, names).unsqueeze(2)
        (name,) = names
        members = self._list_length(array, name, what)
        self._require_values(array, name, members, f"{what.removesuffix('s')} per row")
        values, width = array.flatten(), 1
        if _is_list(values.type):
            width = self._list_length(values, name, "outputs", per_row=members)
            self._require_values(array, name, width, "value per member")
            values = values.flatten()
        flat = self._flat(values, name, width=members * width)
        return flat.reshape(len(array), members, width)

    def _list_length(self, array: pa.Array, name: str, what: str, *, per_row: int = 1) -> int:
        """The common length of the lists of ``array`` (of ``what``); ``per_row`` lists make
        a row."""
        if pa.types.is_fixed_size_list(array.type):
            self._reject_nulls(array, name, width=per_row)
            return int(array.type.list_size)
        return self._common_list_length(array, name, what, per_row=per_row)

    def _column(self, array: pa.Array, name: str, what: str) -> Tensor:
        if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
            width = self._common_list_length(array, name, what)
        elif pa.types.is_fixed_size_list(array.type):
            self._reject_nulls(array, name)
            width = array.type.list_size
        else:
            return self._flat(array, name, width=1).unsqueeze(1)
        self._require_values(array, name, width, "value per row")
        return self._flat(array.flatten(), name, width=width).reshape(len(array), width)

    def _flat(self, array: pa.Array, name: str, *, width: int) -> Tensor:
        if pa.types.is_integer(array.type) or pa.types.is_float16(array.type):
            # Rounded to the nearest float64 as torch and numpy convert: integers beyond 2**53
            # (uint64, nanosecond timestamps) have no exact float64.
            array = pc.cast(array, pa.float64(), safe=False)
        source_dtype = _TORCH_DTYPES.get(array.type)
        if source_dtype is None:
            raise InputError(
                f"expected numbers, got values of type {array.type}",
                path=self.where.path,
                column=name,
            )
        if array.null_count:
            if not self.nulls_as_nan:
                self._reject_nulls(array, name, width=width)
            array = pc.fill_null(array, pa.scalar(float("nan"), array.type))
        if len(array) == 0:
            return torch.empty(0, dtype=self.dtype)
        return _zero_copy_view(array).to(self.dtype)

    def _common_list_length(
        self, array: pa.Array, name: str, what: str, *, per_row: int = 1
    ) -> int:
        """The length every list of ``array`` (of ``what``) has; ``per_row`` lists make a
        row (nested lists)."""
        self._reject_nulls(array, name, width=per_row)
        lengths = pc.list_value_length(array)
        extremes = pc.min_max(lengths)
        shortest, longest = extremes["min"].as_py(), extremes["max"].as_py()
        if shortest != longest:
            first_other = pc.index(pc.not_equal(lengths, lengths[0]), True).as_py()
            raise InputError(
                f"list has {lengths[first_other].as_py()} values where earlier rows have "
                f"{lengths[0].as_py()}; every row must have the same number of {what}",
                path=self.where.path,
                column=name,
                row=self.where.row(first_other // per_row),
            )
        return shortest or 0

    def _require_values(self, array: pa.Array, name: str, length: int, what: str) -> None:
        """Refuse lists of ``length`` 0 (every row's, as lengths are equal) in a non-empty
        ``array``."""
        if length == 0 and len(array):
            raise InputError(
                f"lists are empty; expected at least one {what}",
                path=self.where.path,
                column=name,
                row=self.where.row(0),
            )

    def _reject_nulls(self, array: pa.Array, name: str, *, width: int = 1) -> None:
        """Raise on the first null; ``width`` maps an index of flattened list values to its row.
        With ``nulls_as_nan`` only a missing list gets here: skip and propagate take the
        missing numbers in a list, not the list."""
        if array.null_count:
            first = pc.index(pc.is_null(array), True).as_py()
            raise InputError(
                "missing list; expected a list of numbers (--nan-policy takes missing numbers "
                "in a list, not a missing list)"
                if self.nulls_as_nan
                else "missing value (empty, NA or NaN in CSV); expected a number, or pass "
                "--nan-policy skip",
                path=self.where.path,
                column=name,
                row=self.where.row(first // max(width, 1)),
            )


def _is_list(data_type: pa.DataType) -> bool:
    return (
        pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
    )


def numpy_view(array: pa.Array) -> np.ndarray:
    """The values of a fixed-width numeric Arrow array (nulls not masked) as a read-only NumPy
    array over its value buffer. Not ``to_numpy``: pyarrow's conversion imports pandas at
    its first call (0.2-0.3 s, on the reader thread before the first chunk)."""
    return np.frombuffer(
        array.buffers()[1],
        dtype=np.dtype(array.type.to_pandas_dtype()),
        count=len(array),
        offset=array.offset * array.type.byte_width,
    )


def present(array: pa.Array) -> np.ndarray:
    """Whether each value of an Arrow array is present (not null), from its validity bitmap
    (``pc.fill_null`` and ``pa.scalar`` import pandas, as ``numpy_view`` says)."""
    if not array.null_count:
        return np.ones(len(array), dtype=bool)
    bits = np.frombuffer(array.buffers()[0], dtype=np.uint8)
    start = array.offset
    return np.unpackbits(bits, bitorder="little")[start : start + len(array)].astype(bool)


def float_values(array: pa.Array) -> np.ndarray:
    """A numeric Arrow array's values as float64, NaN where missing (as NumPy rounds integers
    beyond 2**53), without pandas (see ``numpy_view``)."""
    floats = pc.cast(array, pa.float64(), safe=False)
    values = numpy_view(floats)
    if not floats.null_count:
        return values
    values = values.copy()
    values[~present(floats)] = math.nan
    return values


def _zero_copy_view(array: pa.Array) -> Tensor:
    """A tensor over the array's value buffer, read-only ones (memory maps) included.

    torch has no read-only tensors and warns about them; the engine never writes into its
    inputs, so the warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
        return torch.from_numpy(numpy_view(array))
