"""The label columns read beside the numbers (id and by columns): each must hold single values
(not lists or structs) of one kind in every file (integers of any width, text, ...), since rows
are keyed, grouped, joined and written by them."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from gaussnll.core.errors import InputError


def _is(name: str) -> Callable[[pa.DataType], bool]:
    """``pa.types.is_<name>``; never true where this pyarrow lacks it (views: pyarrow 16)."""
    return getattr(pa.types, f"is_{name}", lambda _kind: False)


_TEXT = tuple(map(_is, ("string", "large_string", "string_view")))
_BYTES = tuple(map(_is, ("binary", "large_binary", "fixed_size_binary", "binary_view")))


def is_bytes(kind: pa.DataType) -> bool:
    """Whether ``kind`` holds bytes (which, as a key, ``grouping`` decodes as UTF-8 text)."""
    return any(test(kind) for test in _BYTES)


_KINDS = (
    ("integers", pa.types.is_integer),
    ("floating-point numbers", pa.types.is_floating),
    # Bytes are text as a key: ``grouping`` decodes them as UTF-8 wherever rows are keyed.
    ("text", lambda kind: is_bytes(kind) or any(test(kind) for test in _TEXT)),
    ("booleans", pa.types.is_boolean),
    ("decimals", pa.types.is_decimal),
    ("dates", pa.types.is_date),
    ("timestamps", pa.types.is_timestamp),
)


class LabelColumns:
    """Checks each batch's label columns against the kind of the first file that had values."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self._first: dict[str, tuple[str, pa.DataType, str]] = {}

    def check(self, batch: pa.RecordBatch, path: str) -> None:
        """Raise unless ``batch``'s label columns hold single values of the first file's kind
        (an all-null column, typed null, fits any)."""
        for name in self.columns:
            value_type = batch.schema.field(name).type
            if pa.types.is_nested(value_type):
                raise InputError(
                    f"holds {value_type} values; an id or by column must hold single values "
                    "(numbers, text, dates)",
                    path=path,
                    column=name,
                )
            if pa.types.is_null(value_type):
                continue
            kind = kind_of(value_type)
            first = self._first.setdefault(name, (kind, value_type, path))
            if first[0] != kind:
                raise InputError(
                    f"holds {value_type} values where {first[2]} has {first[1]}; an id or by "
                    f"column must hold {first[0]} in every file",
                    path=path,
                    column=name,
                )


def kind_of(value_type: pa.DataType) -> str:
    """What sort of values a column holds, whatever their width (int32 and int64: integers)."""
    if pa.types.is_dictionary(value_type):
        value_type = value_type.value_type
    return next((kind for kind, test in _KINDS if test(value_type)), str(value_type))
