"""An ensemble's members in a chunk: checked against the weights its first chunk set; samples'
draws as members of equal weight and no variance."""

from __future__ import annotations

import torch
from torch import Tensor

from gaussnll.core.errors import InputError
from gaussnll.core.io.chunks import Chunk
from gaussnll.core.options import ScoreOptions
from gaussnll.core.state.mixture import Members, MemberWeights


def members_of(
    chunk: Chunk,
    var: Tensor,
    weights: MemberWeights | None,
    weight_tensor: Tensor | None,
    options: ScoreOptions,
) -> Members:
    """The chunk's ensemble members (those of nonzero weight), checked against the first
    chunk's: the same number of members, and a spread for each."""
    spec = options.columns
    if weights is None or weight_tensor is None:
        raise ValueError("members are read only once the first chunk has set the weights")
    mean = chunk.mean
    if options.samples:  # equally likely draws, as many as this file's rows have
        return Members.of(mean, var, mean.new_full((mean.shape[1],), 1 / mean.shape[1]))
    problem = None
    if mean.shape[1] != len(weights.normalised):
        expected = len(weights.normalised)
        given = (
            f"{expected} weights are given"
            if options.member_weights
            else (f"earlier rows have {expected}")
        )
        problem = (spec.mean, f"{mean.shape[1]} members where {given}")
    elif var.shape[1] != mean.shape[1]:
        problem = (spec.spread, f"{var.shape[1]} members where the mean has {mean.shape[1]}")
    elif var.shape[2] not in (1, mean.shape[2]):
        problem = (
            spec.spread,
            f"{var.shape[2]} outputs per member where the mean has {mean.shape[2]}",
        )
    if problem is not None:
        names, detail = problem
        raise InputError(
            f"has {detail}",
            path=chunk.where.path,
            column=",".join(names),
            row=chunk.where.row(0),
        )
    if len(weights.kept) < mean.shape[1]:
        index = torch.tensor(weights.kept, device=mean.device)
        mean, var = mean.index_select(1, index), var.index_select(1, index)
    return Members.of(mean, var, weight_tensor)
