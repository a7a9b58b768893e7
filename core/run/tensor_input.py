"""Rows given as tensors (``Scorer.update``, e.g. from an evaluation loop) as a chunk, as the
file engine would have read them: on the scorer's device and dtype, one output per column."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from gaussnll.core.errors import UsageError
from gaussnll.core.io.chunks import Chunk
from gaussnll.core.io.tensors import DTYPES, Location
from gaussnll.core.options import ScoreOptions

TENSORS = "<tensors>"  # what errors and reports name as the input


def tensor_chunk(
    mean: Tensor,
    target: Tensor,
    var: Tensor,
    weight: Tensor | None,
    options: ScoreOptions,
    device: torch.device,
    rows_before: int,
) -> Chunk:
    """The chunk of rows given as tensors (1-D, or ``(rows, D)``; an ensemble's ``mean`` and
    ``var`` ``(rows, members)`` or ``(rows, members, D)``), after ``rows_before`` rows given
    earlier (row numbers count from them); a map without groups scales every row."""
    if options.samples:
        raise UsageError("samples are scored from files or tables, not from tensors")
    dtype = DTYPES[options.dtype]
    roles = [torch.as_tensor(t).to(device, dtype) for t in (mean, target, var)]
    rows = roles[0].shape[0]
    row_weight = None if weight is None else row_weights(weight, rows).to(device)
    roles = [t.unsqueeze(1) if t.ndim == 1 else t for t in roles]
    if options.ensemble:
        roles[0], roles[2] = (t.unsqueeze(2) if t.ndim == 2 else t for t in (roles[0], roles[2]))
    where = Location(TENSORS, rows_before + 1)
    chunk = Chunk(
        mean=roles[0], target=roles[1], spread=roles[2], ids=None, where=where, weight=row_weight
    )
    recalibration = options.recalibration
    if recalibration is None:
        return chunk
    if recalibration.by:
        raise UsageError(
            "a recalibration map with groups needs its key columns: score a file or a table "
            "instead of tensors"
        )
    scale = torch.tensor(recalibration.scale, dtype=dtype, device=device)
    return replace(chunk, scale=scale.expand(chunk.length, -1))


def row_weights(weight: Tensor, rows: int) -> Tensor:
    """``weight``, one per row (``(rows,)`` or ``(rows, 1)``), as a ``(rows, 1)`` float64
    tensor; any other shape is refused (it would broadcast to wrong sums)."""
    given = torch.as_tensor(weight)
    if tuple(given.shape) not in ((rows,), (rows, 1)):
        raise UsageError(
            f"weight must hold one number per row, shape ({rows},); got shape {tuple(given.shape)}"
        )
    return given.to(torch.float64).reshape(rows, 1)
