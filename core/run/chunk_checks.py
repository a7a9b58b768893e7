"""What a chunk must satisfy to be scored, found without synchronising a GPU: widths that fit,
valid spreads and weights, finite losses; and which of its rows are scored (weight 0 and, under
``--nan-policy skip``, non-finite rows are left out)."""

from __future__ import annotations

import torch
from torch import Tensor

from gaussnll.core.errors import InputError
from gaussnll.core.io.chunks import Chunk
from gaussnll.core.io.forms import FORMS
from gaussnll.core.io.tensors import Location
from gaussnll.core.options import ColumnSpec
from gaussnll.core.run.validation import good_weights, raise_bad_weight, raise_first_problem
from gaussnll.core.state.nonfinite import finite_rows
from gaussnll.core.state.score_state import ScoreState
from gaussnll.core.state.sinks import Placement


class Validity:
    """Is every chunk valid? On the CPU a bad chunk is reported at once; on a GPU a device flag
    collects the verdicts and is read once at the end, so the pass never synchronises."""

    def __init__(self, device: torch.device) -> None:
        self._deferred = device.type != "cpu"
        self._flag = torch.zeros((), dtype=torch.bool, device=device)

    def bad_here(self, chunk: Chunk, spec: ColumnSpec, loss_sums: Tensor, policy: str) -> bool:
        """True when this chunk is invalid and must be explained now (CPU only).

        A negative spread is always invalid (torch raises); a non-finite loss unless the
        policy is ``propagate``.
        """
        bad = torch.zeros((), dtype=torch.bool, device=loss_sums.device)
        if policy != "propagate":
            bad |= ~torch.isfinite(loss_sums).all()
        if not FORMS[spec.spread_kind].signed and chunk.length:
            # amin (the faster test) is NaN for a chunk with a NaN, which is bad anyway unless
            # NaNs propagate.
            spread = chunk.spread
            bad |= (spread < 0).any() if policy == "propagate" else spread.amin() < 0
        if self._deferred:
            self._flag |= bad
            return False
        return bool(bad)

    def bad_values(self, fine: Tensor) -> bool:
        """True when a row is not ``fine`` and must be explained now (CPU only; on a GPU the
        verdict is noted)."""
        bad = ~fine.all()
        if self._deferred:
            self._flag |= bad
            return False
        return bool(bad)

    def check_finite(self, values: Tensor, column: str, where: Location) -> None:
        """Raise for the first row of ``values`` ``(rows, ...)`` holding a NaN or an infinity
        (on a GPU: note it)."""
        # ``x * 0`` is 0 for a finite x and NaN for a NaN or infinity: a row sums to 0 exactly
        # when all of it is finite (five times faster than ``isfinite`` and ``all``).
        finite = values.flatten(1).mul(0).sum(dim=1) == 0
        if self.bad_values(finite):
            first = int(torch.nonzero(~finite)[0, 0])
            raise InputError(
                "holds a NaN or infinite draw; expected finite numbers, or pass --nan-policy skip",
                path=where.path,
                column=column,
                row=where.row(first),
            )

    def check_weights(self, weight: Tensor, column: str, where: Location) -> None:
        """Raise for a row whose weight is not one of ``good_weights`` (on a GPU: note it)."""
        fine = good_weights(weight).all()  # False for a NaN
        if self._deferred:
            self._flag |= ~fine
        elif not bool(fine):
            raise_bad_weight(weight, column, where)

    def failed(self) -> bool:
        return bool(self._flag)

    def raise_if_failed(self, path: str) -> None:
        """Refuse, at the end, what a GPU run noted as invalid (the CPU finds the row)."""
        if self.failed():
            raise InputError(
                "holds a negative spread or weight, a NaN or an infinity; score on the CPU to "
                "find the row",
                path=path,
            )

    def merge(self, other: Validity) -> None:
        """Take on another scorer's deferred verdicts."""
        self._flag |= other._flag.to(self._flag.device)


def left_in(chunk: Chunk, var: Tensor, state: ScoreState, policy: str) -> Tensor | None:
    """The rows to score (None: all): not those of weight 0, which are left out as if absent,
    nor under the ``skip`` policy those with a non-finite value (counted as skipped)."""
    kept = None if chunk.weight is None else chunk.weight.squeeze(1) > 0
    if policy == "skip":
        finite, bad = finite_rows(chunk.mean, chunk.target, var)
        if kept is not None:  # a left-out row is not skipped
            finite, bad = finite | ~kept, bad & kept.unsqueeze(1)
        state.count_skipped(finite, bad, Placement(chunk.group))
        kept = finite if kept is None else kept & finite
    return None if kept is None or bool(kept.all()) else kept


def explain(chunk: Chunk, spec: ColumnSpec, var: Tensor, loss: Tensor, policy: str) -> None:
    """Raise an InputError naming the chunk's first bad value (its file, column and row)."""
    roles = [(chunk.mean, spec.mean), (chunk.target, spec.target), (chunk.spread, spec.spread)]
    raise_first_problem(roles, spec.spread_kind, var, loss, chunk.where, policy)


def check_widths(chunk: Chunk, spec: ColumnSpec, outputs: int) -> None:
    """Mean fixes the width D; target and spread must have width D or 1 (broadcast)."""
    for role, names, values in (
        ("mean", spec.mean, chunk.mean),
        ("target", spec.target, chunk.target),
        ("spread", spec.spread, chunk.spread),
    ):
        width = values.shape[1]
        allowed = (outputs,) if role == "mean" else (outputs, 1)
        if width not in allowed:
            raise InputError(
                f"{role} has {width} values per row; expected "
                + " or ".join(str(n) for n in dict.fromkeys(allowed))
                + f" to match the mean's {outputs}",
                path=chunk.where.path,
                column=",".join(names),
                row=chunk.where.row(0),
            )
