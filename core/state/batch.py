"""A chunk's rows as every accumulator reads them, built once per chunk.

The scorer builds one ``RowBatch`` per chunk (after rows are left out, the floor applied and
torch's element losses computed); each metric family's accumulator reads the parts it needs.
What several families share (``σ``, ``z``, ``e = erf(z/√2)``, ``e``'s cell) is computed on first
use and kept, so a chunk computes each at most once whichever families are chosen.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor

from gaussnll.core.loss import NllTerms
from gaussnll.core.state.sinks import Placement

if TYPE_CHECKING:
    from gaussnll.core.state.binning import EdgeBins
    from gaussnll.core.state.mixture import Members

_INV_SQRT_2 = 1 / math.sqrt(2)
Value = TypeVar("Value")


@dataclass
class RowBatch:
    """The scored rows of a chunk: ``terms`` of torch's loss on ``floored_var`` (``max(var,
    eps)``, the same tensor as ``var`` when nothing was floored), the errors ``target - mean``
    ``(rows, outputs)``, the variances as given (width 1 or outputs), where each row goes
    (``at``: group and weight), and an ensemble's ``members`` with the ``target`` and ``eps``
    the mixture needs; a quantile model's ``quantiles`` ``(rows, K)``; each row's ``key``
    (int64, from its values or id) when bootstrap replicates are drawn."""

    terms: NllTerms
    error: Tensor
    var: Tensor
    floored_var: Tensor
    at: Placement
    target: Tensor | None = None
    members: Members | None = None
    eps: float = 0.0
    quantiles: Tensor | None = None
    key: Tensor | None = None
    _shared: dict[Hashable, Any] = field(default_factory=dict, repr=False)

    @property
    def floored(self) -> bool:
        """Whether any variance was raised to ``eps`` (``floored_var`` is then a copy)."""
        return self.floored_var is not self.var

    @functools.cached_property
    def std(self) -> Tensor:
        """``σ = √var``, the variance as given."""
        return torch.sqrt(self.var)

    @functools.cached_property
    def quotient(self) -> Tensor:
        """``r/σ`` as IEEE division gives it (NaN for ``0/0``)."""
        return self.error / self.std

    @functools.cached_property
    def z(self) -> Tensor:
        """``z = r/σ``; where ``σ = 0`` a point mass's limit: ``±∞`` for ``r ≠ 0``, 0 for
        ``r = 0`` (its PIT is then ½, the midpoint of the step)."""
        return torch.nan_to_num(self.quotient, nan=0.0, posinf=math.inf, neginf=-math.inf)

    @functools.cached_property
    def erf(self) -> Tensor:
        """``e = erf(z/√2)``: the PIT is ``(1 + e)/2`` and ``|e|`` the central level at whose
        interval's bound the element sits."""
        return (self.z * _INV_SQRT_2).erf_()

    def cells(self, lookup: EdgeBins) -> Tensor:
        """Each element's cell of ``e`` among ``lookup``'s edges (once per lookup)."""
        return self.shared(("cells", id(lookup)), lambda: lookup(self.erf))

    def shared(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        """``compute()``, once per chunk for each ``key``: what the accumulators of the whole
        input and of the groups both add (their per-element values) is computed once."""
        if key not in self._shared:
            self._shared[key] = compute()
        value: Value = self._shared[key]
        return value
