"""Each row's key for the bootstrap replicates (``state.replicates``): its id, or its values."""

from __future__ import annotations

import pyarrow.compute as pc
import torch
from torch import Tensor

from gaussnll.core.io.chunks import Chunk
from gaussnll.core.state.replicates import id_keys, value_keys


def row_keys(chunk: Chunk) -> Tensor:
    """The key of each row of ``chunk``, as read (before rows are left out): the key it was
    given, else a hash of its id with an id column, else of every value that defines it (the
    mean, target and spread columns; an ensemble's every member, samples' every draw). A row
    without an id (null, NaN) is keyed by its values: its rows are not one cluster."""
    if chunk.key is not None:
        return chunk.key
    if chunk.ids is None:
        return value_keys([chunk.mean, chunk.target, chunk.spread])
    keys = id_keys(chunk.ids).to(chunk.mean.device)
    missing = pc.is_null(chunk.ids, nan_is_null=True)
    if pc.any(missing).as_py():
        rows = torch.from_numpy(missing.to_numpy(zero_copy_only=False)).to(keys.device)
        by_values = value_keys([chunk.mean, chunk.target, chunk.spread])
        keys = torch.where(rows, by_values, keys)
    return keys
