"""The scoring core: chunks of tensors in, a Report out. Mergeable, device-agnostic.

The file engine feeds it chunks read from disk; Python code can feed it tensors directly
(``Scorer.update``), e.g. from an evaluation loop, and merge scorers of different partitions.
The Scorer keeps the lifecycle (add, merge, save, report); each prediction form's chunk is
scored by its module (``gaussian_rows``, ``quantile_rows``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from gaussnll.core.errors import InputError, UsageError, redacted
from gaussnll.core.io.chunks import Chunk
from gaussnll.core.io.devices import resolve_device
from gaussnll.core.io.tensors import DTYPES
from gaussnll.core.options import ScoreOptions
from gaussnll.core.report.report import Report
from gaussnll.core.run.chunk_checks import Validity
from gaussnll.core.run.ensemble_members import MemberInput
from gaussnll.core.run.gaussian_rows import add_gaussian
from gaussnll.core.run.group_limit import group_keys_of, reserve_groups
from gaussnll.core.run.quantile_rows import add_quantiles
from gaussnll.core.run.report_of import report_of
from gaussnll.core.run.scored import Scored
from gaussnll.core.run.scorer_state import (
    Shape,
    document_options,
    document_shape,
    new_state,
    restored_state,
    state_document,
)
from gaussnll.core.run.tensor_input import TENSORS, tensor_chunk
from gaussnll.core.state.score_state import ScoreState


class Scorer:
    """Accumulates the Gaussian NLL, calibration and accuracy of chunks into a Report.

    ``update(mean, target, var)`` takes tensors (1-D, or ``(rows, D)`` for several outputs; the
    third is the spread as the options' columns say, a variance by default); ``merge`` adds
    another scorer of the same options; ``report()`` derives every number.
    Invalid values raise :class:`InputError` as the file engine does (rows counted from 1).
    """

    def __init__(self, options: ScoreOptions | None = None, **settings: Any) -> None:
        self.options = replace(options or ScoreOptions(), **settings)
        self.device = resolve_device(self.options.device)
        self.state: ScoreState | None = None
        self.group_keys = group_keys_of(self.options)
        self._validity = Validity(self.device)
        self._members = MemberInput(self.options, self.device)  # set by the first chunk
        # Rows carry weights: with a weight column, or tensors given weights in their first update.
        self._weighted = self.options.columns.weight is not None
        # When the run began: the report's seconds count from it (a merge sets it).
        self.started = time.perf_counter()
        self._rows_given = 0
        self.unseen_rows = 0  # rows whose key the recalibration map had not seen (the engine's)

    def update(
        self, mean: Tensor, target: Tensor, var: Tensor, weight: Tensor | None = None
    ) -> Tensor:
        """Add rows given as tensors; return their element losses (with the ``full`` constant;
        NaN for a row of weight 0, which is left out).

        For an ensemble, ``mean`` and ``var`` are ``(rows, members)`` or ``(rows, members, D)``
        and the losses are the moment-matched Gaussian's. ``weight`` (``(rows,)`` or
        ``(rows, 1)``) weighs each row: give it with every update or with none.
        """
        if self.options.quantiles is not None:
            raise UsageError(
                "Scorer.update takes a Gaussian's mean and variance: score a quantile model's "
                "file or table instead"
            )
        chunk = tensor_chunk(mean, target, var, weight, self.options, self.device, self._rows_given)
        self._rows_given += chunk.length
        return self.add(chunk).per_row(self.options.full)

    def add(self, chunk: Chunk) -> Scored:
        """Add a chunk; invalid values raise at once on the CPU (see ``failed`` on a GPU)."""
        chunk = chunk.ready()
        state = self.prepare(chunk)
        self.check_weights(chunk)
        if self.group_keys is not None:
            reserve_groups(state, self.group_keys, self.options.max_groups)
        if chunk.scale is not None and chunk.scale.shape[1] != state.outputs:
            raise InputError(
                f"the recalibration map has {chunk.scale.shape[1]} output(s) and the data "
                f"{state.outputs}: use a map fitted on predictions of the same outputs",
                path=chunk.where.path,
            )
        if self.options.quantiles is not None:
            return add_quantiles(chunk, state, self.options, self._validity)
        return add_gaussian(chunk, state, self.options, self._validity, self._members)

    def check_weights(self, chunk: Chunk) -> None:
        """Refuse a row whose weight is not a finite number >= 0 (on a GPU: noted, and
        refused by ``report``)."""
        if chunk.weight is not None:
            column = self.options.columns.weight or "weight"
            self._validity.check_weights(chunk.weight, column, chunk.where)

    def prepare(self, chunk: Chunk) -> ScoreState:
        """The state, made for ``chunk``'s outputs if this is the first (threads adding chunks
        at once must be given a prepared scorer)."""
        if self.state is None:
            if self.options.per_row_members:
                self._members.set(chunk.mean.shape[1], chunk.mean.dtype)
            self._weighted = chunk.weight is not None
            quantiles = self.options.quantiles is not None  # one output, K quantiles
            self.state = self._new_state(1 if quantiles else chunk.mean.shape[-1])
        elif (chunk.weight is not None) != self._weighted:
            raise UsageError(
                "give each row's weight with every chunk or with none: "
                + ("earlier rows were weighted" if self._weighted else "earlier rows were not")
            )
        return self.state

    def failed(self) -> bool:
        """On a GPU, whether any chunk so far was invalid (one synchronisation)."""
        return self._validity.failed()

    def merge(self, other: Scorer) -> None:
        """Add another scorer's rows (same options), e.g. of another partition or worker."""
        if other.state is None:
            return
        if self.state is None:
            self._members.take(other._members)
            self._weighted = other._weighted
            self.state = self._new_state(other.state.outputs)
        self.unseen_rows += other.unseen_rows
        mapping = None
        if self.group_keys is not None:
            if other.group_keys is None:
                raise ValueError("cannot merge an ungrouped scorer into a grouped one")
            indices = self.group_keys.add(other.group_keys.keys)
            mapping = torch.from_numpy(indices).to(self.device)
            reserve_groups(self.state, self.group_keys, self.options.max_groups)
        self.state.merge(other.state, mapping)
        self._validity.merge(other._validity)

    def state_dict(self) -> dict[str, Any]:
        """The state as a portable document of plain numbers (``run.scorer_state``)."""
        self._validity.raise_if_failed(TENSORS)
        outputs = None if self.state is None else self.state.outputs
        shape = Shape(outputs, self._members.count, self._weighted)
        return state_document(self.options, self.state, shape, self.group_keys, self.unseen_rows)

    @classmethod
    def from_state(
        cls, document: dict[str, Any], *, device: str = "cpu", path: str | None = None
    ) -> Scorer:
        """A scorer holding the state of ``document`` (from ``state_dict``), ready to merge or
        report; ``path`` names its file in errors."""
        options, unseen_rows = document_options(document, device, path)
        scorer = cls(options)
        scorer.unseen_rows = unseen_rows
        shape = document_shape(document, options, scorer.group_keys, path)
        if shape.outputs is None:
            return scorer
        if shape.members is not None:
            scorer._members.set(shape.members, DTYPES[options.dtype])
        scorer._weighted = shape.weighted
        scorer.state = restored_state(
            document, shape.outputs, scorer._new_state, scorer.group_keys, path
        )
        return scorer

    def limit_groups(self, max_groups: int | None) -> None:
        """Allow at most ``max_groups`` groups from now on (as the option; None: as many as
        fit the memory budget), checking the groups so far: an OptionError naming
        ``max_groups`` when there are more."""
        self.options = replace(self.options, max_groups=max_groups)
        if self.state is not None and self.group_keys is not None:
            reserve_groups(self.state, self.group_keys, max_groups)

    def _new_state(self, outputs: int, device: torch.device | None = None) -> ScoreState:
        grouped = self.group_keys is not None
        options, members, weighted = self.options, self._members, self._weighted
        return new_state(options, outputs, device or self.device, grouped, members, weighted)

    def report(
        self, path: str = TENSORS, file_format: str = "tensors", *, allow_empty: bool = False
    ) -> Report:
        """Every reported number, derived from the sums; ``allow_empty``: a report of no rows
        (its means NaN) instead of an InputError."""
        state = self.state
        if state is None and allow_empty:
            state = self._new_state(len(self.options.columns.mean))
        if state is None:
            raise InputError("no data rows", path=path)
        self._validity.raise_if_failed(path)
        seconds = time.perf_counter() - self.started
        common = {"path": redacted(path), "format": file_format, "seconds": seconds}
        keys, unseen = self.group_keys, self.unseen_rows
        return report_of(state, self.options, keys, unseen, self.device, allow_empty, **common)
