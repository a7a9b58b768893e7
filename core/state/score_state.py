"""The mergeable scoring state: every field is a sum, so chunking and order do not matter.

Each sum is kept for the whole input and, in a grouped state, for each group as well
(``sinks.Sums``), from one pass over the elements.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from gaussnll.core.loss import NllTerms
from gaussnll.core.state.calibration import CalibrationState
from gaussnll.core.state.mixture import MemberWeights, MixtureState
from gaussnll.core.state.nonfinite import SKIP_REASONS
from gaussnll.core.state.sinks import Sums, weighted
from gaussnll.core.state.uncertainty import UncertaintyState


class ScoreState:
    """Per-output sums of element losses (and, given levels, calibration sums and counts).

    ``update`` adds a chunk, ``merge`` adds another state (e.g. from another worker or file
    partition); nothing is read back from the device until the caller asks. A ``grouped``
    state also keeps every sum per group; ``group`` arguments give each row's group (a dense
    index: call ``reserve`` first with the number of groups). An ensemble's state (its ``members``'
    weights given) also keeps its ``mixture`` sums, which the scorer adds to.

    A ``weighted`` state takes each row's weight (``(rows, 1)``) with every chunk: every sum is
    of weighted values and every count a sum of weights (float64), so integer weights give the
    numbers of each row repeated that many times; ``rows`` still counts rows, and the weights'
    own sum is kept.
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
        weighted: bool = False,
    ) -> None:
        self.outputs = outputs
        self.grouped = grouped
        self.weighted = weighted
        self._rows = Sums((), device, integer=True, grouped=grouped)
        self._weight = Sums((), device, grouped=grouped) if weighted else None
        self._loss = Sums((outputs,), device, grouped=grouped)
        # Rows skipped for non-finite values, then how many had one per role (SKIP_REASONS).
        self._skipped = Sums((1 + len(SKIP_REASONS),), device, integer=True, grouped=grouped)
        self._floored = Sums((), device, integer=True, grouped=grouped)
        self.calibration = (
            CalibrationState(outputs, levels, pit_bins, device, grouped=grouped, weighted=weighted)
            if levels is not None
            else None
        )
        self.uncertainty = (
            UncertaintyState(outputs, device, grouped=grouped, weighted=weighted)
            if levels is not None
            else None
        )
        self.mixture = (
            MixtureState(
                members,
                device,
                levels=levels,
                pit_bins=pit_bins,
                grouped=grouped,
                weighted=weighted,
            )
            if members is not None
            else None
        )

    @property
    def rows(self) -> int:
        """Rows added so far (read from the device)."""
        return int(self._rows.value()[0])

    def reserve(self, groups: int) -> None:
        """Make room for ``groups`` groups (grouped states)."""
        for sums in self._all_sums():
            sums.reserve(groups)
        if self.calibration is not None and self.uncertainty is not None:
            self.calibration.reserve(groups)
            self.uncertainty.reserve(groups)
        if self.mixture is not None:
            self.mixture.reserve(groups)

    @property
    def bytes_per_group(self) -> int:
        """The memory one group's sums take in a grouped state, calibration included."""
        parts = [*self._all_sums(), self.calibration, self.uncertainty, self.mixture]
        return sum(part.bytes_per_group for part in parts if part is not None)

    def count_skipped(self, kept: Tensor, bad: Tensor, group: Tensor | None = None) -> None:
        """Add the rows not ``kept`` for non-finite values; ``bad`` is ``(rows, roles)``: which
        role of each row was non-finite (``SKIP_REASONS``)."""
        self._skipped.add(torch.cat([(~kept).unsqueeze(1), bad], dim=1), group)

    def floored(self, var: Tensor, eps: float, group: Tensor | None = None) -> Tensor:
        """``max(var, eps)``, adding how many values it raised (``var`` is ``(rows, w)``). On
        the CPU a chunk with none to raise, the usual case, costs one ``amin`` instead of a
        count and a copy; on a GPU reading it would synchronise, so both always run."""
        if var.device.type == "cpu" and var.numel() and bool(var.amin() >= eps):
            return var
        self._floored.count_flags(var < eps, group)
        return var.clamp(min=eps)

    def update(
        self,
        terms: NllTerms,
        error: Tensor,
        var: Tensor,
        floored_var: Tensor,
        group: Tensor | None = None,
        weight: Tensor | None = None,
    ) -> Tensor:
        """Add a chunk: the NLL ``terms`` of its elements (``(rows, outputs)`` losses) and what
        they came from, the errors ``target - mean``, the variances as given and floored (as
        ``floored`` returns them: the scoring rules use the former, the NLL the latter), and
        each row's ``weight`` (a weighted state's, ``(rows, 1)``).

        Returns the chunk's per-output (weighted) loss sums, for the caller's validity check.
        """
        weight = self._checked_weight(weight)
        self._rows.count(terms.loss.shape[0], group)
        if self._weight is not None and weight is not None:
            self._weight.add(weight.squeeze(1), group)
        chunk_sums = self._loss.add(weighted(terms.loss, weight), group)
        if self.calibration is not None and self.uncertainty is not None:
            self.calibration.update(terms, error, var, floored_var, group, weight)
            self.uncertainty.update(var, terms.squared_error, group, weight)
        return chunk_sums

    def _checked_weight(self, weight: Tensor | None) -> Tensor | None:
        """``weight``, which a weighted state needs and an unweighted one refuses."""
        if (weight is not None) != self.weighted:
            raise ValueError(
                "a weighted state needs each row's weight"
                if self.weighted
                else "an unweighted state takes no weights"
            )
        return weight

    def merge(self, other: ScoreState, mapping: Tensor | None = None) -> None:
        """Add ``other``, a state of the same outputs and calibration grid, into this one
        (grouped: its group ``i`` into this state's group ``mapping[i]``)."""
        if other.outputs != self.outputs:
            raise ValueError(f"cannot merge states of {other.outputs} and {self.outputs} outputs")
        if (self.calibration is None) != (other.calibration is None):
            raise ValueError("cannot merge a state with calibration into one without")
        if (self.mixture is None) != (other.mixture is None):
            raise ValueError("cannot merge an ensemble's state into one without members")
        if self.weighted != other.weighted:
            raise ValueError("cannot merge a weighted state with an unweighted one")
        for mine, theirs in zip(self._all_sums(), other._all_sums(), strict=True):
            mine.merge(theirs, mapping)
        if self.calibration is not None and other.calibration is not None:
            self.calibration.merge(other.calibration, mapping)
        if self.uncertainty is not None and other.uncertainty is not None:
            self.uncertainty.merge(other.uncertainty, mapping)
        if self.mixture is not None and other.mixture is not None:
            self.mixture.merge(other.mixture, mapping)

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
