"""The mergeable scoring state: every field is a sum, so chunking and order do not matter.

A state is the NLL's own sums (rows, loss, skipped and floored counts, weights) plus one
accumulator per chosen group of metric families (``families``): calibration and accuracy sums,
the σ bins of ENCE, an ensemble's mixture sums. Each accumulator keeps its sums for the whole
input and, when its families are chosen for groups, per group too (``sinks.Sums``): families
chosen for the whole input only cost no memory per group. Every accumulator reads the chunk's
``RowBatch`` and follows one protocol (``Accumulator``), so the state updates, merges, reserves
and saves them all alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from gaussnll.core.families import ENSEMBLE, SAMPLES, Selection, select
from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.bootstrap import CI, Bootstrap, BootstrapState
from gaussnll.core.state.calibration import (
    CALIBRATION_FAMILIES,
    CalibrationState,
    Lookup,
    grids_of,
)
from gaussnll.core.state.mixture import MemberWeights, MixtureState
from gaussnll.core.state.nonfinite import SKIP_REASONS
from gaussnll.core.state.quantiles import QUANTILES, QuantileState
from gaussnll.core.state.samples import SamplesState
from gaussnll.core.state.sinks import Placement, Sums
from gaussnll.core.state.uncertainty import UncertaintyState


class Accumulator(Protocol):
    """The sums of some metric families: added to per chunk, merged, grown with the groups.

    ``families``: the metric families whose numbers it gives; ``grouped``: whether it keeps
    its sums per group as well as for the whole input.
    ``totals(by_group)`` gives them on the CPU; the report derives its numbers from them.
    """

    grouped: bool
    families: frozenset[str]

    def update(self, batch: RowBatch) -> Tensor | None: ...

    def merge(self, other: Any, mapping: Tensor | None = None) -> None: ...

    def reserve(self, groups: int) -> None: ...

    @property
    def bytes_per_group(self) -> int: ...

    def totals(self, by_group: bool = False) -> dict[str, Tensor]: ...


class ScoreState:
    """Per-output sums of element losses and the accumulators of the chosen families.

    ``update`` adds a chunk, ``merge`` adds another state (e.g. from another worker or file
    partition); nothing is read back from the device until the caller asks. ``selection``
    (default: every family for the whole input, the cheap ones for groups) says which families
    are kept for the whole input and which per group; without ``levels`` only the NLL (and an
    ensemble's mixture) is kept; a quantile model's state (its ``quantiles`` levels given)
    keeps its quantile sums. With ``bootstrap`` settings and the ``ci`` family chosen, the
    whole input also keeps the bootstrap replicates of its intervals. A ``grouped`` state
    keeps the NLL sums and the groups' families per group (``group`` in each chunk's
    ``Placement``: a dense index; call ``reserve`` first with the number of groups). An
    ensemble's state (its ``members``' weights given) also keeps its ``mixture`` sums;
    samples' (their ``draws`` per row given), their ``samples`` sums.

    A ``weighted`` state takes each row's weight with every chunk: every sum is of weighted
    values and every count a sum of weights (float64), so integer weights give the numbers of
    each row repeated that many times; ``rows`` still counts rows, and the weights' own sum is
    kept.
    """

    def __init__(
        self,
        outputs: int,
        device: torch.device,
        *,
        levels: Sequence[float] | None = None,
        pit_bins: int = 20,
        grouped: bool = False,
        members: MemberWeights | None = None,
        draws: int | None = None,
        weighted: bool = False,
        selection: Selection | None = None,
        quantiles: Sequence[float] | None = None,
        bootstrap: Bootstrap | None = None,
    ) -> None:
        self.outputs = outputs
        self.grouped = grouped
        self.weighted = weighted
        self.selection = selection or select(
            None,
            None,
            calibration=levels is not None,
            ensemble=members is not None,
            samples=draws is not None,
        )
        self._rows = Sums((), device, integer=True, grouped=grouped)
        self._weight = Sums((), device, grouped=grouped) if weighted else None
        self._loss = Sums((outputs,), device, grouped=grouped, weighted=weighted)
        # Rows skipped for non-finite values, then how many had one per role (SKIP_REASONS).
        self._skipped = Sums((1 + len(SKIP_REASONS),), device, integer=True, grouped=grouped)
        self._floored = Sums((), device, integer=True, grouped=grouped)
        overall = self.selection.overall
        in_groups = self.selection.groups if grouped else frozenset[str]()
        lookup = None
        if levels is not None and overall & CALIBRATION_FAMILIES:
            lookup = Lookup.of(grids_of(overall & CALIBRATION_FAMILIES, levels, pit_bins), device)

        def calibration(families: frozenset[str], per_group: bool) -> CalibrationState | None:
            if lookup is None or levels is None or not families & CALIBRATION_FAMILIES:
                return None
            return CalibrationState(
                outputs,
                families,
                levels,
                pit_bins,
                device,
                lookup=lookup,
                grouped=per_group,
                weighted=weighted,
            )

        def uncertainty(families: frozenset[str], per_group: bool) -> UncertaintyState | None:
            if levels is None or "uncertainty" not in families:
                return None
            return UncertaintyState(outputs, device, grouped=per_group, weighted=weighted)

        def mixture(families: frozenset[str], per_group: bool) -> MixtureState | None:
            if members is None or ENSEMBLE not in families:
                return None
            return MixtureState(
                members,
                device,
                levels=levels,
                pit_bins=pit_bins,
                grouped=per_group,
                weighted=weighted,
            )

        def samples(families: frozenset[str], per_group: bool) -> SamplesState | None:
            if draws is None or levels is None or SAMPLES not in families:
                return None
            return SamplesState(
                draws,
                device,
                levels=levels,
                pit_bins=pit_bins,
                grouped=per_group,
                weighted=weighted,
            )

        def quantile(families: frozenset[str], per_group: bool) -> QuantileState | None:
            if quantiles is None or QUANTILES not in families:
                return None
            return QuantileState(quantiles, device, grouped=per_group, weighted=weighted)

        # The whole input's accumulators are those of a state without groups, so its numbers
        # are the same bits with or without --by; each group's keep sums per group only (their
        # attribute paths name the sums in state files).
        self.calibration = calibration(overall, False)
        self.uncertainty = uncertainty(overall, False)
        self.mixture = mixture(overall, False)
        self.samples = samples(overall, False)
        self.quantiles = quantile(overall, False)
        self.bootstrap = None
        if bootstrap is not None and CI in overall:
            self.bootstrap = BootstrapState(
                outputs, overall, levels or (), bootstrap, device, lookup=lookup
            )
        self.group_calibration = calibration(in_groups, True)
        self.group_uncertainty = uncertainty(in_groups, True)
        self.group_mixture = mixture(in_groups, True)
        self.group_samples = samples(in_groups, True)
        self.group_quantiles = quantile(in_groups, True)

    def scope(self, by_group: bool) -> list[Accumulator]:
        """The accumulators of each group, or of the whole input."""
        parts: list[Accumulator | None] = (
            [
                self.group_calibration,
                self.group_uncertainty,
                self.group_mixture,
                self.group_samples,
                self.group_quantiles,
            ]
            if by_group
            else [
                self.calibration,
                self.uncertainty,
                self.mixture,
                self.samples,
                self.quantiles,
                self.bootstrap,
            ]
        )
        return [part for part in parts if part is not None]

    @property
    def rows(self) -> int:
        """Rows added so far (read from the device)."""
        return int(self._rows.value()[0])

    def reserve(self, groups: int) -> None:
        """Make room for ``groups`` groups (grouped states)."""
        parts: list[Sums | Accumulator] = [*self._all_sums(), *self._accumulated()]
        for part in parts:
            part.reserve(groups)

    @property
    def bytes_per_group(self) -> int:
        """The memory one group's sums take in a grouped state, its families' included."""
        parts: list[Sums | Accumulator] = [*self._all_sums(), *self._accumulated()]
        return sum(part.bytes_per_group for part in parts)

    def count_skipped(self, kept: Tensor, bad: Tensor, at: Placement) -> None:
        """Add the rows not ``kept`` for non-finite values; ``bad`` is ``(rows, roles)``: which
        role of each row was non-finite (``SKIP_REASONS``)."""
        self._skipped.add(torch.cat([(~kept).unsqueeze(1), bad], dim=1), at)

    def floored(self, var: Tensor, eps: float, at: Placement) -> Tensor:
        """``max(var, eps)``, adding how many values it raised (``var`` is ``(rows, w)``). On
        the CPU a chunk with none to raise, the usual case, costs one ``amin`` instead of a
        count and a copy; on a GPU reading it would synchronise, so both always run."""
        if var.device.type == "cpu" and var.numel() and bool(var.amin() >= eps):
            return var
        self._floored.count_flags(var < eps, at)
        return var.clamp(min=eps)

    def update(self, batch: RowBatch) -> tuple[Tensor, Tensor | None]:
        """Add a chunk. Returns the chunk's per-output (weighted) loss sums, for the caller's
        validity check, and an ensemble's mixture losses of its elements, samples' CRPS of
        its elements or a quantile model's WIS of its rows (None: none of them)."""
        at = batch.at
        self._checked_weight(at.weight)
        self._rows.count(batch.terms.loss.shape[0], at)
        if self._weight is not None and at.weight is not None:
            self._weight.add(at.weight.squeeze(1), at)
        chunk_sums = self._loss.add(batch.terms.loss, at)
        mixture = None
        for accumulator in self._accumulated():
            losses = accumulator.update(batch)
            mixture = losses if mixture is None else mixture
        if chunk_sums is None:
            raise ValueError("the loss sums are kept for the whole input")
        return chunk_sums, mixture

    def _checked_weight(self, weight: Tensor | None) -> None:
        """A weighted state needs each row's weight; an unweighted one refuses them."""
        if (weight is not None) != self.weighted:
            raise ValueError(
                "a weighted state needs each row's weight"
                if self.weighted
                else "an unweighted state takes no weights"
            )

    def merge(self, other: ScoreState, mapping: Tensor | None = None) -> None:
        """Add ``other``, a state of the same outputs, families and calibration grid, into this
        one (grouped: its group ``i`` into this state's group ``mapping[i]``)."""
        if other.outputs != self.outputs:
            raise ValueError(f"cannot merge states of {other.outputs} and {self.outputs} outputs")
        if other.selection != self.selection:
            raise ValueError("cannot merge states of different metrics")
        if (self.calibration is None) != (other.calibration is None):
            raise ValueError("cannot merge a state with calibration into one without")
        if (self.mixture is None) != (other.mixture is None):
            raise ValueError("cannot merge an ensemble's state into one without members")
        if self.weighted != other.weighted:
            raise ValueError("cannot merge a weighted state with an unweighted one")
        for mine, theirs in zip(self._all_sums(), other._all_sums(), strict=True):
            mine.merge(theirs, mapping)
        pairs = zip(self._accumulated(), other._accumulated(), strict=True)
        for accumulator, counterpart in pairs:
            accumulator.merge(counterpart, mapping)

    def totals(self, by_group: bool = False) -> dict[str, Tensor]:
        """On the CPU, per group (or for the whole input, as one group): ``rows`` ``(B,)``,
        ``loss`` sums ``(B, outputs)`` without the ``full`` constant, ``skipped`` ``(B, 1 +
        roles)``, ``floored`` ``(B,)``, and ``weight`` ``(B,)`` (float64): the sum of the rows'
        weights, or of a row each when unweighted, which every mean divides by."""
        counted = (self._rows, self._loss, self._skipped, self._floored)
        names = ("rows", "loss", "skipped", "floored")
        totals = {
            name: sums.value(by_group).cpu() for name, sums in zip(names, counted, strict=True)
        }
        weight = totals["rows"] if self._weight is None else self._weight.value(by_group)
        totals["weight"] = weight.cpu().to(torch.float64)
        return totals

    def loss_sums(self) -> list[float]:
        """The per-output loss sums of the whole input (without the ``full`` constant)."""
        return self._loss.value()[0].cpu().tolist()

    def _all_sums(self) -> tuple[Sums, ...]:
        weight = () if self._weight is None else (self._weight,)
        return (self._rows, self._loss, self._skipped, self._floored, *weight)

    def _accumulated(self) -> list[Accumulator]:
        """Every accumulator, the whole input's then the groups'."""
        return [*self.scope(False), *self.scope(True)]
