"""A quantile model's chunk (``ScoreOptions.quantiles``; its K quantiles in ``chunk.mean``, an
empty spread): checked, its rows left out as a Gaussian's are, and added to the state. There is
no density, so its element losses are each row's weighted interval score."""

from __future__ import annotations

import torch

from gaussnll.core.errors import InputError
from gaussnll.core.io.chunks import Chunk
from gaussnll.core.loss import NllTerms
from gaussnll.core.options import ColumnSpec, ScoreOptions
from gaussnll.core.run.chunk_checks import Validity, left_in
from gaussnll.core.run.scored import Scored
from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.nonfinite import finite_rows
from gaussnll.core.state.quantiles import QuantileLevels, row_wis
from gaussnll.core.state.score_state import ScoreState
from gaussnll.core.state.sinks import Placement


def add_quantiles(
    chunk: Chunk, state: ScoreState, options: ScoreOptions, validity: Validity
) -> Scored:
    """Add a quantile model's chunk to ``state``; return each kept row's WIS."""
    spec, levels = options.columns, options.quantiles or ()
    _check_widths(chunk, spec, len(levels))
    # The empty spread is always finite: the quantiles count as the mean among skip reasons.
    kept = left_in(chunk, chunk.spread, state, options.nan_policy)
    finite = finite_rows(chunk.mean, chunk.target, chunk.spread)[0]
    if kept is not None:  # rows left out (weight 0; under skip, non-finite) are not checked
        finite = finite | ~kept
    if validity.bad_values(finite):
        _explain(chunk, spec, finite)
    scored = chunk if kept is None else chunk.rows(kept)
    zero = torch.zeros_like(scored.target)  # no density: the NLL's sums stay 0 (reported null)
    at = Placement(scored.group, scored.weight)
    batch = RowBatch(
        NllTerms(zero, zero, zero, zero), zero, zero, zero, at, scored.target, quantiles=scored.mean
    )
    wis = state.update(batch)[1]  # from the quantile sums' own pinball losses
    if wis is None:  # the quantiles family left out
        wis = row_wis(scored.mean, scored.target, QuantileLevels(tuple(levels)))
    return Scored(wis, kept, name="wis")


def _check_widths(chunk: Chunk, spec: ColumnSpec, levels: int) -> None:
    """One quantile per level and one target per row."""
    problem = None
    if chunk.mean.shape[1] != levels:
        problem = (
            spec.quantiles,
            f"has {chunk.mean.shape[1]} quantiles per row; expected {levels}, one per level of "
            "quantiles",
        )
    elif chunk.target.shape[1] != 1:
        problem = (spec.target, f"has {chunk.target.shape[1]} values per row; expected 1")
    if problem is not None:
        names, detail = problem
        raise InputError(
            detail, path=chunk.where.path, column=",".join(names), row=chunk.where.row(0)
        )


def _explain(chunk: Chunk, spec: ColumnSpec, fine: torch.Tensor) -> None:
    """Raise for the first row holding a NaN or an infinity among its quantiles or target."""
    row = int(torch.nonzero(~fine)[0, 0])
    in_quantiles = not bool(torch.isfinite(chunk.mean[row]).all())
    names, values = (
        (spec.quantiles, chunk.mean[row]) if in_quantiles else (spec.target, chunk.target[row])
    )
    bad = ~torch.isfinite(values)
    column = names[int(torch.nonzero(bad)[0, 0])] if len(names) > 1 else names[0]
    raise InputError(
        f"holds {values[bad][0].item()}; expected a finite number (--nan-policy skip drops "
        "such rows)",
        path=chunk.where.path,
        column=column,
        row=chunk.where.row(row),
    )
