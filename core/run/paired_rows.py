"""Each paired row's scores of one model, as ``compare``'s plan (``compare_plan``) pairs them:
one column per score compared, then each level's coverage indicator."""

from __future__ import annotations

import torch
from torch import Tensor

from gaussnll.core.errors import InputError
from gaussnll.core.io.chunks import Chunk
from gaussnll.core.run.compare_plan import QUANTILES, SAMPLES, ComparisonPlan
from gaussnll.core.run.scored import Scored
from gaussnll.core.state.row_scores import gaussian_crps, gaussian_quantiles, quantile_rows
from gaussnll.core.state.samples import empirical_quantile, sorted_draws


def side_scores(chunk: Chunk, scored: Scored, form: str, plan: ComparisonPlan) -> Tensor:
    """The chunk's rows' scores ``(rows, len(plan.columns))`` of a model of ``form``, from
    the chunk as read and what its scorer made of it (``scored``); scores of several outputs
    are means over them, as the NLL's."""
    columns: dict[str, Tensor] = {}
    if plan.levels is not None:
        quantiles = _quantiles(chunk, scored, form, plan)
        columns.update(quantile_rows(quantiles, chunk.target, plan.levels))
    for score in plan.scores:
        if score == "nll":
            columns[score] = scored.loss.mean(dim=1)
        elif score == "dss":  # z² + log v: twice the element loss without the constant
            columns[score] = 2 * scored.loss.mean(dim=1)
        elif score == "crps":
            columns[score] = _crps(chunk, scored, form).mean(dim=1)
    parts = [columns[score].unsqueeze(1) for score in plan.scores]
    if plan.levels is not None:
        parts.append(columns["quantile_coverage"])
    return torch.cat(parts, dim=1)


def _crps(chunk: Chunk, scored: Scored, form: str) -> Tensor:
    """Each element's CRPS: the draws' (energy form), or the Gaussian's closed form."""
    if form == SAMPLES and scored.crps is not None:
        return scored.crps
    mean, var = _gaussian(scored)
    return gaussian_crps(chunk.target - mean, torch.sqrt(var))


def _quantiles(chunk: Chunk, scored: Scored, form: str, plan: ComparisonPlan) -> Tensor:
    """The model's quantiles at the plan's levels ``(rows, K)``: a quantile model's own, a
    Gaussian's ``μ + σ Φ⁻¹(τ)``, or the draws' empirical quantiles (numpy's linear rule)."""
    levels = plan.levels.levels if plan.levels is not None else ()
    if form == QUANTILES:
        return chunk.mean
    outputs = chunk.mean.shape[-1]
    if outputs != 1:
        raise InputError(
            f"has {outputs} outputs per row; a quantile model has one, so only a model of one "
            "output compares with it",
            path=chunk.where.path,
        )
    if form == SAMPLES:
        ordered = sorted_draws(chunk.mean)  # (rows, 1, M)
        return torch.cat([empirical_quantile(ordered, tau) for tau in levels], dim=1)
    mean, var = _gaussian(scored)
    return gaussian_quantiles(mean, torch.sqrt(var), levels)


def _gaussian(scored: Scored) -> tuple[Tensor, Tensor]:
    if scored.gaussian is None:
        raise ValueError("a Gaussian's scores need the mean and variance it was scored as")
    return scored.gaussian
