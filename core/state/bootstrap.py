"""Confidence intervals of the headline metrics by a streamed Poisson bootstrap (``--ci``).

Replicate ``b`` weighs each row by ``W[row, b] ~ Poisson(1)`` (``replicates``: drawn from the
row's key, never its position) times its own weight. A replicate's metrics are those of the
rows so weighted, so each replicate keeps only the sums its interval metrics need, never every
family's: ``ΣW`` and per output ``ΣW·x`` for each moment ``x`` the chosen families read (the
loss; ``z²``; ``(target - mean)²``; the CRPS's three terms), one matrix product ``Wᵀ X`` per
chunk; and the replicate counts per bin of the calibration curve's, one-sided and coverage
levels' grids, one scatter of ``W`` at each element's cell of ``e`` (the lookup the
calibration shares) folded into the grids' bins, so counting costs O(rows × B) whatever the
levels. Every sum adds, so replicates merge like every other state and no order matters. The
interval is the percentile interval of the B replicate metrics (replicates with no weight
are left out). Whole input only: groups keep no replicates.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gaussnll.core.loss import HALF_LOG_2PI
from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.calibration import MOMENTS, Lookup, crps_of, curve_numbers
from gaussnll.core.state.replicates import BLOCK, replicate_weights
from gaussnll.core.state.sinks import Placement, Sums

CI = "ci"  # the metric family (``core.families``)
# The moments kept per replicate, by the family whose interval needs them (the loss always).
_MOMENTS = {
    "var_scale": ("z2",),
    "accuracy": ("squared_error",),
    "crps": ("error_erf", "std_density", "std"),
}
# The grids of ``e`` whose bins each replicate counts, by family.
_GRIDS = {"calibration": "curve", "one_sided": "one_sided", "coverage": "level"}


class Bootstrap(NamedTuple):
    """The interval's level, the replicates B and the generator's seed."""

    level: float
    replicates: int
    seed: int


class BootstrapState:
    """The B replicates' sums for the intervals of ``families``' headline metrics (see the
    module), for the whole input; ``lookup``: the calibration's shared lookup of ``e`` (needed
    when a family counts in its grids). A row's weight in replicate ``b`` is its Poisson weight
    times its own weight: the replicates are weighted sums by construction, reduced over the
    chunk's rows here, so the ``Sums`` they go to add them as they are."""

    grouped = False
    families = frozenset({CI})

    def __init__(
        self,
        outputs: int,
        families: frozenset[str],
        levels: Sequence[float],
        bootstrap: Bootstrap,
        device: torch.device,
        *,
        lookup: Lookup | None = None,
    ) -> None:
        self.outputs = outputs
        self.bootstrap = bootstrap
        self.levels = tuple(levels)
        self._moments = ["loss"] + [
            m for f, names in _MOMENTS.items() if f in families for m in names
        ]
        grids = [grid for family, grid in _GRIDS.items() if family in families]
        if grids and lookup is None:
            raise ValueError("counting replicates in the calibration grids needs their lookup")
        self._lookup = lookup
        self._bins = {} if lookup is None else {g: lookup.cells.bin_of_cell[g] for g in grids}
        self._cells = 0 if lookup is None else lookup.cells.cells
        self._widths = {grid: int(bins.max()) + 1 for grid, bins in self._bins.items()}
        self._width = 1 + outputs * (len(self._moments) + sum(self._widths.values()))
        self._sums = Sums((bootstrap.replicates, self._width), device)

    def update(self, batch: RowBatch) -> None:
        """Add a chunk's rows to every replicate, ``BLOCK`` (row, replicate) pairs at a time."""
        if batch.key is None:
            raise ValueError("bootstrap replicates need each row's key")
        replicates = self.bootstrap.replicates
        moments = torch.stack(
            [
                batch.terms.loss
                if name == "loss"
                else batch.shared(("moment", name), functools.partial(MOMENTS[name].of, batch))
                for name in self._moments
            ],
            dim=2,
        ).flatten(1)  # (rows, outputs · moments)
        cells = None if self._lookup is None else batch.cells(self._lookup.bins)
        device = moments.device
        sums = moments.new_zeros((replicates, 1 + moments.shape[1]), dtype=torch.float64)
        per_cell = moments.new_zeros((self.outputs * self._cells, replicates), dtype=torch.float64)
        step = max(1, BLOCK // replicates)
        weight = batch.at.weight  # a row's weight in replicate b: its Poisson weight times it
        for start in range(0, batch.key.shape[0], step):
            rows = slice(start, start + step)
            w = replicate_weights(batch.key[rows], self.bootstrap.seed, replicates)
            if weight is not None:
                w *= weight[rows]
            sums += torch.cat([w.sum(dim=0).unsqueeze(1), w.t() @ moments[rows].double()], 1)
            if cells is not None:
                index = cells[rows] + torch.arange(self.outputs, device=device) * self._cells
                spread = w.unsqueeze(1).expand(-1, self.outputs, -1).reshape(-1, replicates)
                per_cell.index_add_(0, index.reshape(-1), spread)
        counts = per_cell.view(self.outputs, self._cells, replicates)
        folded = [
            counts.new_zeros((self.outputs, self._widths[grid], replicates))
            .index_add_(1, bins.to(device), counts)
            .flatten(0, 1)
            .t()
            for grid, bins in self._bins.items()
        ]
        self._sums.add(torch.cat([sums, *folded], dim=1).unsqueeze(0), Placement())

    def reserve(self, groups: int) -> None:
        """Groups keep no replicates."""

    @property
    def bytes_per_group(self) -> int:
        return 0

    def merge(self, other: BootstrapState, mapping: Tensor | None = None) -> None:
        """Add the replicates of a state of the same settings."""
        if (other.bootstrap, other._moments, other._widths) != (
            self.bootstrap,
            self._moments,
            self._widths,
        ):
            raise ValueError("cannot merge bootstrap replicates of different settings")
        self._sums.merge(other._sums)

    def totals(self, by_group: bool = False) -> dict[str, Tensor]:
        """The replicates' sums ``(B, width)`` on the CPU."""
        return {"replicates": self._sums.value()[0].cpu()}

    def replicate_metrics(self, full: bool) -> dict[str, Tensor]:
        """Each replicate's metrics ``(B,)`` (per level: ``(B, levels)``), by report name."""
        sums = self.totals()["replicates"]
        weight, rest = sums[:, 0], sums[:, 1:]
        outputs, moments = self.outputs, len(self._moments)
        per_moment = rest[:, : outputs * moments].view(-1, outputs, moments).sum(dim=1)
        elements = weight * outputs
        mean = {name: per_moment[:, k] / elements for k, name in enumerate(self._moments)}
        metrics = {"nll": mean["loss"] + (HALF_LOG_2PI if full else 0.0), "dss": 2 * mean["loss"]}
        if "z2" in mean:
            metrics["var_scale"] = mean["z2"]
        if "squared_error" in mean:
            metrics["rmse"] = torch.sqrt(mean["squared_error"])
        if "std" in mean:
            metrics["crps"] = crps_of(mean["error_erf"], mean["std_density"], mean["std"])
        offset = outputs * moments
        counts: dict[str, Tensor] = {}
        for grid, width in self._widths.items():
            block = rest[:, offset : offset + outputs * width].view(-1, outputs, width)
            counts[grid] = block.sum(dim=1)
            offset += outputs * width
        per_element = elements.unsqueeze(1)
        if "curve" in counts:
            metrics["mace"] = curve_numbers("", counts["curve"], per_element)["mace"]
        if "one_sided" in counts:
            one_sided = curve_numbers("quantile_", counts["one_sided"], per_element)
            metrics["quantile_mace"] = one_sided["quantile_mace"]
        if "level" in counts:
            edges = sorted(set(self.levels))
            columns = [edges.index(level) for level in self.levels]
            metrics["coverage"] = torch.cumsum(counts["level"], dim=1)[:, columns] / per_element
        return metrics

    def intervals(self, full: bool) -> dict[str, Any]:
        """``NAME_ci_low`` and ``NAME_ci_high`` of each metric: the percentile interval of its
        replicates (per level, lists)."""
        found: dict[str, Any] = {}
        for name, values in self.replicate_metrics(full).items():
            found[f"{name}_ci_low"], found[f"{name}_ci_high"] = percentiles(values, self.bootstrap)
        return found


def percentiles(values: Tensor, bootstrap: Bootstrap) -> tuple[Any, Any]:
    """The percentile interval of ``bootstrap.level`` of the replicates ``values`` ``(B,)`` or
    ``(B, levels)`` (NumPy's linear rule; NaN replicates, with no weight, left out)."""
    level = bootstrap.level
    bounds = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.nanquantile(values, bounds, dim=0).tolist()
    return low, high


def paired_intervals(
    baseline: BootstrapState, candidate: BootstrapState, names: Sequence[str], full: bool
) -> dict[str, Any]:
    """``delta_NAME_ci_low`` and ``delta_NAME_ci_high``: the percentile interval of the
    replicates' ``candidate - baseline`` of each of ``names`` that both have. The two states'
    rows must have been keyed alike (a pair's rows one key), so each replicate weighs a pair's
    two rows alike."""
    if baseline.bootstrap != candidate.bootstrap:
        raise ValueError("paired replicates need the same bootstrap settings")
    mine, theirs = baseline.replicate_metrics(full), candidate.replicate_metrics(full)
    found: dict[str, Any] = {}
    for name in names:
        if name in mine and name in theirs:
            ends = percentiles(theirs[name] - mine[name], baseline.bootstrap)
            found[f"delta_{name}_ci_low"], found[f"delta_{name}_ci_high"] = ends
    return found
