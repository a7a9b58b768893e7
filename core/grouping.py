"""Dense group indices for the values of one or more key columns (``--by``).

Each chunk's key columns are dictionary-encoded by Arrow; only the chunk's distinct keys are
looked up in Python, so the cost per chunk is O(rows) in Arrow plus O(distinct keys) in Python.
Groups are numbered in order of first appearance; a null key is a group of its own.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Key = tuple[Hashable, ...]


class GroupKeys:
    """The groups seen so far: ``keys[i]`` is group ``i``'s tuple of key values."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self.keys: list[Key] = []
        self._index: dict[Key, int] = {}

    def index(self, batch: pa.RecordBatch) -> np.ndarray:
        """Each row's group index (int64), adding the groups not seen before."""
        uniques, codes = [], []
        for name in self.columns:
            encoded = pc.dictionary_encode(batch.column(name), null_encoding="encode")
            uniques.append(encoded.dictionary.to_pylist())
            codes.append(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))
        if len(codes) == 1:
            keys = [(value,) for value in uniques[0]]
            local = codes[0]
        else:
            combos, local = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
            keys = [
                tuple(values[i] for values, i in zip(uniques, combo, strict=True))
                for combo in combos.tolist()
            ]
        return self.add(keys)[local.reshape(-1)]

    def add(self, keys: Iterable[Key]) -> np.ndarray:
        """The group index of each key, adding those not seen before."""
        indices = []
        for key in keys:
            index = self._index.get(key)
            if index is None:
                index = self._index[key] = len(self.keys)
                self.keys.append(key)
            indices.append(index)
        return np.asarray(indices, dtype=np.int64)


def sort_key(key: Key) -> tuple:
    """Order keys by their values, a null after every value."""
    return tuple((value is None, value) for value in key)
