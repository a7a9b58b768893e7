"""The forms a predictive spread comes in, one entry each: a variance, a standard deviation or a
log-variance (``Spread``). An entry says how the form becomes a variance (scoring), how a
variance scale is applied in the form itself (``rescale``), and what a valid value is (errors):
code that handles spreads asks the entry instead of branching on the form. A new form is one
entry here (and its ``Spread`` member and column option).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from gaussnll.core.options import Spread


@dataclass(frozen=True)
class SpreadForm:
    """One form of the spread: ``to_variance`` of its values (a tensor), ``rescaled`` values
    whose variance is ``factor`` times theirs (float64 Arrow values), and ``expected``, what a
    valid value is. ``signed``: any real value is valid (no negative one to refuse), but a
    finite one may stand for an infinite variance."""

    kind: Spread
    expected: str
    signed: bool
    to_variance: Callable[[Tensor], Tensor]
    rescaled: Callable[[pa.Array, np.ndarray], pa.Array]


FORMS: dict[Spread, SpreadForm] = {
    Spread.VAR: SpreadForm(
        Spread.VAR,
        "a non-negative variance",
        signed=False,
        to_variance=lambda spread: spread,
        rescaled=lambda values, factor: pc.multiply(values, pa.array(factor)),
    ),
    Spread.STD: SpreadForm(
        Spread.STD,
        "a non-negative standard deviation",
        signed=False,
        to_variance=lambda spread: spread * spread,
        rescaled=lambda values, factor: pc.multiply(values, pa.array(np.sqrt(factor))),
    ),
    Spread.LOG_VAR: SpreadForm(
        Spread.LOG_VAR,
        "a log-variance small enough for a finite variance",
        signed=True,
        to_variance=torch.exp,
        rescaled=lambda values, factor: pc.add(values, pa.array(np.log(factor))),
    ),
}
