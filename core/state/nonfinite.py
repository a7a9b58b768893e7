"""The non-finite policy: stop at a NaN/inf (``error``), drop its row (``skip``), or let it
flow into the result as torch does (``propagate``)."""

from __future__ import annotations

import torch
from torch import Tensor

SKIP_REASONS = ("mean", "target", "var")


def finite_rows(mean: Tensor, target: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """The mask of rows whose mean, target and variance are all finite; and ``(rows, roles)``:
    which role of each row holds a non-finite value (``SKIP_REASONS``; a row may have several).
    Each role is ``(rows, ...)``: an ensemble's members count too."""
    roles = (mean, target, var)
    bad = torch.stack([~torch.isfinite(values).flatten(1).all(dim=1) for values in roles], 1)
    return ~bad.any(dim=1), bad


def expand_rows(values: Tensor, keep: Tensor, fill: float) -> Tensor:
    """Put the kept rows' ``values`` back at their places among all rows, ``fill`` elsewhere."""
    full = torch.full(
        (keep.shape[0], values.shape[1]), fill, dtype=values.dtype, device=values.device
    )
    full[keep] = values
    return full
