"""An ensemble's members in a chunk: checked against the weights its first chunk set; samples'
draws as members of equal weight and no variance."""

from __future__ import annotations

import torch
from torch import Tensor

from gaussnll.core.errors import InputError
from gaussnll.core.io.chunks import Chunk
from gaussnll.core.options import ScoreOptions
from gaussnll.core.run.chunk_checks import Validity
from gaussnll.core.state.mixture import Members, MemberWeights


class MemberInput:
    """A scorer's members per row: an ensemble's weights (set by its first chunk, or by its
    state) and, for samples, each file's number of draws (files may differ, rows may not)."""

    def __init__(self, options: ScoreOptions, device: torch.device) -> None:
        self.options, self.device = options, device
        self.weights: MemberWeights | None = None
        self._tensor: Tensor | None = None
        self._draws: dict[str, int] = {}

    def set(self, members: int, dtype: torch.dtype) -> None:
        """The weights of ``members`` members per row."""
        self.weights = MemberWeights.of(self.options.member_weights, members)
        self._tensor = self.weights.tensor(self.device, dtype)

    def take(self, other: MemberInput) -> None:
        """Another scorer's weights (merging into a scorer that has seen no rows)."""
        self.weights, self._tensor = other.weights, other._tensor

    @property
    def count(self) -> int | None:
        """Members per row (None: not an ensemble, or no rows yet)."""
        return None if self.weights is None else len(self.weights.normalised)

    def of(self, chunk: Chunk, var: Tensor, validity: Validity) -> Members:
        """The chunk's members, checked (samples: their draws too)."""
        if self.options.samples:
            self._check_draws(chunk, validity)
        return members_of(chunk, var, self.weights, self._tensor, self.options)

    def _check_draws(self, chunk: Chunk, validity: Validity) -> None:
        """Each file's rows have one number of draws, and every draw is finite unless the
        policy skips or propagates non-finite values (on a GPU: noted, refused by the report)."""
        where, draws = chunk.where, chunk.mean.shape[1]
        names = ",".join(self.options.columns.mean)
        earlier = self._draws.setdefault(where.path, draws)
        if earlier != draws:
            raise InputError(
                f"has {draws} draws per row where earlier rows have {earlier}; every row of a "
                "file must have the same number of draws",
                path=where.path,
                column=names,
                row=where.row(0),
            )
        if self.options.nan_policy == "error":
            validity.check_finite(chunk.mean, names, where)


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
        return Members.of_draws(mean, var)
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
