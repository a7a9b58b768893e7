"""Each row's key for the bootstrap replicates (``state.replicates``): its id, or its values."""

from __future__ import annotations

from torch import Tensor

from gaussnll.core.io.chunks import Chunk
from gaussnll.core.state.replicates import id_keys, value_keys


def row_keys(chunk: Chunk) -> Tensor:
    """The key of each row of ``chunk``, as read (before rows are left out): the key it was
    given, else a hash of its id with an id column, else of every value that defines it (the
    mean, target and spread columns; an ensemble's every member, samples' every draw)."""
    if chunk.key is not None:
        return chunk.key
    if chunk.ids is not None:
        return id_keys(chunk.ids).to(chunk.mean.device)
    return value_keys([chunk.mean, chunk.target, chunk.spread])
