"""The scoring core: chunks of tensors in, a Report out. Mergeable, device-agnostic.

The file engine feeds it chunks read from disk; Python code can feed it tensors directly
(``Scorer.update``), e.g. from an evaluation loop, and merge scorers of different partitions.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from gaussnll.core.errors import InputError, OptionError, UsageError, redacted
from gaussnll.core.families import FAMILIES
from gaussnll.core.io.chunks import Chunk
from gaussnll.core.io.devices import resolve_device, single_threaded_kernels
from gaussnll.core.io.grouping import GroupKeys
from gaussnll.core.io.tensors import DTYPES
from gaussnll.core.loss import nll_terms
from gaussnll.core.options import ScoreOptions, Spread
from gaussnll.core.report.derive import derive_report
from gaussnll.core.report.report import Report
from gaussnll.core.run.chunk_checks import Validity, check_widths, explain, left_in
from gaussnll.core.run.ensemble_members import members_of
from gaussnll.core.run.memory_budget import group_memory_budget
from gaussnll.core.run.quantile_rows import add_quantiles
from gaussnll.core.run.scored import Scored
from gaussnll.core.run.state_document import (
    STATE_SCHEMA,
    applied_recalibration,
    check_document,
    options_document,
    options_from_document,
    plain_keys,
)
from gaussnll.core.run.tensor_input import TENSORS, tensor_chunk
from gaussnll.core.run.validation import raise_on_overflow
from gaussnll.core.state import portable
from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.mixture import MemberWeights
from gaussnll.core.state.nonfinite import expand_rows
from gaussnll.core.state.score_state import ScoreState
from gaussnll.core.state.sinks import Placement


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
        by = self.options.columns.by
        if any(isinstance(bins, int) for bins in self.options.intervals.values()):
            raise UsageError(
                "quantile bins need a first pass over the data, which a Scorer does not make: "
                "score a file or a table, or give the intervals' edges"
            )
        self.group_keys = GroupKeys(by, self.options.edges()) if by else None
        self._validity = Validity(self.device)
        self._weights: MemberWeights | None = None  # an ensemble's, from its first chunk
        self._draws: dict[str, int] = {}  # samples: the draws per row of each file so far
        self._weight_tensor: Tensor | None = None
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
        options, spec = self.options, self.options.columns
        chunk = chunk.ready()
        state = self.prepare(chunk)
        self.check_weights(chunk)
        if self.group_keys is not None:
            self._reserve_groups(state, self.group_keys)
        if chunk.scale is not None and chunk.scale.shape[1] != state.outputs:
            raise InputError(
                f"the recalibration map has {chunk.scale.shape[1]} output(s) and the data "
                f"{state.outputs}: use a map fitted on predictions of the same outputs",
                path=chunk.where.path,
            )
        if options.quantiles is not None:
            return add_quantiles(chunk, state, options, self._validity)
        var = chunk.variance(spec.spread_kind)
        members, given, given_var = None, chunk, var
        if options.samples:
            self._check_draws(chunk)
        if self._weights is not None:  # scored as the moment-matched Gaussian
            members = members_of(chunk, var, self._weights, self._weight_tensor, options)
            chunk = replace(chunk, mean=members.matched_mean, spread=members.matched_var)
            var = members.matched_var
        check_widths(chunk, spec, state.outputs)
        scored, scored_var = chunk, var
        kept = left_in(chunk, var, state, options.nan_policy)
        if kept is not None:
            scored, scored_var = chunk.rows(kept), var[kept]
            members = None if members is None else members.rows(kept)
        at = Placement(scored.group, scored.weight)
        ensemble = members is not None
        floored = _floored(state, scored, scored_var, spec.spread_kind, options.eps, at, ensemble)
        error = scored.target - scored.mean
        terms = nll_terms(error, floored)
        loss = terms.loss
        batch = RowBatch(terms, error, scored_var, floored, at, scored.target, members, options.eps)
        chunk_sums, extra = state.update(batch)
        checked = given if kept is None else given.rows(kept)
        if self._validity.bad_here(checked, spec, chunk_sums, options.nan_policy):
            aligned = loss if kept is None else expand_rows(loss, kept, 0.0)
            if members is not None:  # each member a column of the file, as read
                given = replace(given, mean=given.mean.flatten(1), spread=given.spread.flatten(1))
                given_var = given_var.flatten(1)
            explain(given, spec, given_var, aligned, options.nan_policy)
        if options.samples:
            return Scored(loss, kept, crps=extra)
        return Scored(loss, kept, mixture=extra)

    def check_weights(self, chunk: Chunk) -> None:
        """Refuse a row whose weight is not a finite number >= 0 (on a GPU: noted, and
        refused by ``report``)."""
        if chunk.weight is not None:
            column = self.options.columns.weight or "weight"
            self._validity.check_weights(chunk.weight, column, chunk.where)

    def _check_draws(self, chunk: Chunk) -> None:
        """Samples: each file's rows have one number of draws (files may differ), and every
        draw is finite unless the policy skips or propagates non-finite values (on a GPU:
        noted, and refused by ``report``)."""
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
            self._validity.check_finite(chunk.mean, names, where)

    def prepare(self, chunk: Chunk) -> ScoreState:
        """The state, made for ``chunk``'s outputs if this is the first (threads adding chunks
        at once must be given a prepared scorer)."""
        if self.state is None:
            if self.options.per_row_members:
                self._set_weights(chunk.mean.shape[1], chunk.mean.dtype)
            self._weighted = chunk.weight is not None
            quantiles = self.options.quantiles is not None  # one output, K quantiles
            self.state = self._new_state(1 if quantiles else chunk.mean.shape[-1])
        elif (chunk.weight is not None) != self._weighted:
            raise UsageError(
                "give each row's weight with every chunk or with none: "
                + ("earlier rows were weighted" if self._weighted else "earlier rows were not")
            )
        return self.state

    def _set_weights(self, members: int, dtype: torch.dtype) -> None:
        """An ensemble's weights, for ``members`` members per row."""
        self._weights = MemberWeights.of(self.options.member_weights, members)
        self._weight_tensor = self._weights.tensor(self.device, dtype)

    def failed(self) -> bool:
        """On a GPU, whether any chunk so far was invalid (one synchronisation)."""
        return self._validity.failed()

    def merge(self, other: Scorer) -> None:
        """Add another scorer's rows (same options), e.g. of another partition or worker."""
        if other.state is None:
            return
        if self.state is None:
            self._weights, self._weight_tensor = other._weights, other._weight_tensor
            self._weighted = other._weighted
            self.state = self._new_state(other.state.outputs)
        self.unseen_rows += other.unseen_rows
        mapping = None
        if self.group_keys is not None:
            if other.group_keys is None:
                raise ValueError("cannot merge an ungrouped scorer into a grouped one")
            indices = self.group_keys.add(other.group_keys.keys)
            mapping = torch.from_numpy(indices).to(self.device)
            self._reserve_groups(self.state, self.group_keys)
        self.state.merge(other.state, mapping)
        self._validity.merge(other._validity)

    def state_dict(self) -> dict[str, Any]:
        """The state as a portable document of plain numbers (``run.state_document``): what
        ``from_state`` turns back into a scorer, a state file holds and Dask tasks return."""
        if self.failed():
            raise InputError(
                "holds a negative spread or weight, a NaN or an infinity; score on the CPU to "
                "find the row",
                path=TENSORS,
            )
        groups = None if self.group_keys is None else plain_keys(self.group_keys.keys)
        recalibration = self.options.recalibration
        applied = None
        if recalibration is not None:
            applied = {"file": recalibration.path, "unseen_rows": self.unseen_rows}
        return {
            "schema": STATE_SCHEMA,
            "options": options_document(self.options),
            "outputs": None if self.state is None else self.state.outputs,
            "members": None if self._weights is None else len(self._weights.normalised),
            "weighted": self._weighted,
            "groups": groups,
            "max_groups": self.options.max_groups,
            "sums": {} if self.state is None else portable.exported(self.state),
            "recalibration": applied,
        }

    @classmethod
    def from_state(
        cls, document: dict[str, Any], *, device: str = "cpu", path: str | None = None
    ) -> Scorer:
        """A scorer holding the state of ``document`` (from ``state_dict``), ready to merge or
        report; ``path`` names its file in errors."""
        check_document(document, path)

        def malformed(what: str) -> InputError:
            return InputError(f"not a gaussnll state file{what}", path=path)

        options = replace(options_from_document(document["options"], path), device=device)
        if document.get("max_groups") is not None:
            options = replace(options, max_groups=document["max_groups"])
        file, unseen_rows = applied_recalibration(document, path)
        if options.recalibration is not None:  # named by its file, not the state's
            options = replace(options, recalibration=replace(options.recalibration, path=file))
        scorer = cls(options)
        scorer.unseen_rows = unseen_rows
        outputs, groups = document["outputs"], document["groups"]
        if (groups is None) != (scorer.group_keys is None):
            raise malformed(": its groups contradict its options")
        if outputs is None:
            return scorer
        if scorer.group_keys is not None:
            scorer.group_keys.add(tuple(key) for key in groups)
        members = document.get("members")
        if (members is None) == options.per_row_members:
            raise malformed(": its members contradict its options")
        if members is not None:
            scorer._set_weights(members, DTYPES[options.dtype])
        scorer._weighted = document.get("weighted", False)
        if not isinstance(scorer._weighted, bool):
            raise malformed(": 'weighted' must be true or false")
        try:  # the sums' shapes checked on the meta device (no memory) before any is made
            meta = scorer._new_state(outputs, device=torch.device("meta"))
            portable.restore(meta, document["sums"])
            scorer.state = scorer._new_state(outputs)
            portable.restore(scorer.state, document["sums"])
        except ValueError as error:
            raise malformed(f" of these options: {error}") from None
        keys = scorer.group_keys
        if keys is not None and scorer.state.totals(True)["rows"].shape[0] != len(keys.keys):
            raise malformed(": its sums and groups differ in number")
        return scorer

    def limit_groups(self, max_groups: int | None) -> None:
        """Allow at most ``max_groups`` groups from now on (as the option; None: as many as
        fit the memory budget), checking the groups so far: an OptionError naming
        ``max_groups`` when there are more."""
        self.options = replace(self.options, max_groups=max_groups)
        if self.state is not None and self.group_keys is not None:
            self._reserve_groups(self.state, self.group_keys)

    def _new_state(self, outputs: int, device: torch.device | None = None) -> ScoreState:
        return ScoreState(
            outputs,
            device or self.device,
            levels=self.options.levels if self.options.calibration else None,
            pit_bins=self.options.pit_bins,
            grouped=self.group_keys is not None,
            members=None if self.options.samples else self._weights,
            draws=len(self._weights.normalised) if self.options.samples and self._weights else None,
            weighted=self._weighted,
            selection=self.options.selection,
            quantiles=self.options.quantiles,
        )

    def _reserve_groups(self, state: ScoreState, group_keys: GroupKeys) -> None:
        """Make room for the groups seen so far, unless there are more than ``max_groups``
        (by default, than the groups whose sums fit the memory budget): stopped before the
        memory runs out."""
        found, limit, size = len(group_keys.keys), self.options.max_groups, state.bytes_per_group
        if limit is None:
            budget, source = group_memory_budget()
            limit = budget // max(size, 1)
            stated = (
                f"is {limit:,} by default (the groups whose sums fit {_size(budget)}: {source})"
            )
        else:
            stated = f"is {limit:,}"
        if found > limit:
            families = ",".join(name for name in FAMILIES if name in state.selection.groups)
            raise OptionError(
                "max_groups",
                f"{stated} but the by columns {', '.join(map(repr, group_keys.columns))} "
                f"hold more groups ({found:,} found so far); each group's sums take "
                f"{_size(size)} with the group metrics {families}, so {limit:,} groups take "
                f"about {_size(limit * size)}: raise the limit, choose fewer --group-metrics "
                "or group by fewer values",
            )
        state.reserve(found)

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
        if state.rows == 0 and not allow_empty:
            reason = (
                "weight 0, or a NaN or infinite value"
                if self._weighted
                else "a NaN or infinite value"
            )
            raise InputError(f"every row has {reason}: nothing to score", path=path)
        if self.failed():
            raise InputError(
                "holds a negative spread or weight, a NaN or an infinity; score on the CPU to "
                "find the row",
                path=path,
            )
        common = {
            "path": redacted(path),
            "format": file_format,
            "device": str(self.device),
            "seconds": time.perf_counter() - self.started,
        }
        with single_threaded_kernels(self.device.type == "cpu"):
            report = derive_report(state, self.options, self.group_keys, **common)
        if state.rows:  # without rows, a mean is 0 / 0, not an overflow
            raise_on_overflow(report.to_dict(groups=False), self.options, path)
        recalibration = self.options.recalibration
        if recalibration is None:
            return report
        return replace(report, recalibration=recalibration.record(self.unseen_rows))


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


def _size(size: float) -> str:
    """A byte count for a person: ``56 bytes``, ``5.1 KB``, ``510 MB``."""
    if size < 1000:
        return f"{size:,.0f} bytes"
    units = ["KB", "MB", "GB", "TB"]
    size /= 1000
    while size >= 1000 and len(units) > 1:
        size /= 1000
        units.pop(0)
    return f"{size:.3g} {units[0]}"
