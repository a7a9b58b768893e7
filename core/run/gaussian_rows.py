"""A Gaussian model's chunk — one Gaussian per row, or an ensemble's members or a sample's draws
scored as their moment-matched Gaussian: its rows left out as the policy says, the row batch
built once and added to the state, and a bad value explained with its file, column and row."""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor

from gaussnll.core.io.chunks import Chunk
from gaussnll.core.loss import nll_terms
from gaussnll.core.options import ScoreOptions, Spread
from gaussnll.core.run.chunk_checks import Validity, check_widths, explain, left_in
from gaussnll.core.run.ensemble_members import MemberInput
from gaussnll.core.run.row_keys import row_keys
from gaussnll.core.run.scored import Scored
from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.nonfinite import expand_rows
from gaussnll.core.state.score_state import ScoreState
from gaussnll.core.state.sinks import Placement


def add_gaussian(
    chunk: Chunk,
    state: ScoreState,
    options: ScoreOptions,
    validity: Validity,
    members_in: MemberInput,
) -> Scored:
    """Add a Gaussian model's chunk to ``state``; return its element losses."""
    spec = options.columns
    var = chunk.variance(spec.spread_kind)
    key = None if options.ci is None else row_keys(chunk)
    members, given, given_var = None, chunk, var
    if members_in.weights is not None:  # scored as the moment-matched Gaussian
        members = members_in.of(chunk, var, validity)
        chunk = replace(chunk, mean=members.matched_mean, spread=members.matched_var)
        var = members.matched_var
    check_widths(chunk, spec, state.outputs)
    scored, scored_var = chunk, var
    kept = left_in(chunk, var, state, options.nan_policy)
    if kept is not None:
        scored, scored_var = chunk.rows(kept), var[kept]
        members = None if members is None else members.rows(kept)
        key = None if key is None else key[kept]
    at = Placement(scored.group, scored.weight)
    ensemble = members is not None
    floored = _floored(state, scored, scored_var, spec.spread_kind, options.eps, at, ensemble)
    error = scored.target - scored.mean
    terms = nll_terms(error, floored)
    batch = RowBatch(
        terms, error, scored_var, floored, at, scored.target, members, options.eps, key=key
    )
    chunk_sums, extra = state.update(batch)
    checked = given if kept is None else given.rows(kept)
    if validity.bad_here(checked, spec, chunk_sums, options.nan_policy):
        aligned = terms.loss if kept is None else expand_rows(terms.loss, kept, 0.0)
        if members is not None:  # each member a column of the file, as read
            given = replace(given, mean=given.mean.flatten(1), spread=given.spread.flatten(1))
            given_var = given_var.flatten(1)
        explain(given, spec, given_var, aligned, options.nan_policy)
    gaussian = (scored.mean, scored_var)
    if options.samples:
        return Scored(terms.loss, kept, crps=extra, gaussian=gaussian)
    return Scored(terms.loss, kept, mixture=extra, gaussian=gaussian)


def _floored(
    state: ScoreState,
    chunk: Chunk,
    var: Tensor,
    kind: Spread,
    eps: float,
    at: Placement,
    ensemble: bool,
) -> Tensor:
    """The variance the NLL uses: ``max(var, eps)``; with a recalibration map, its scale times
    the floored variance as given, ``s · max(var, eps)`` (the floor first: ``var_scale`` is
    fitted on floored variances, so the map's scores have ``var_scale`` 1 and the NLL its
    ``nll_at_var_scale``). An ensemble's members are scaled before the floor (``var``: its
    moment-matched variance, not a multiple of the given one)."""
    if chunk.scale is None or ensemble:
        return state.floored(var, eps, at)
    given = replace(chunk, scale=None).variance(kind)
    return state.floored(given, eps, at) * chunk.scale
