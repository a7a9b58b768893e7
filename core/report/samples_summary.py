"""The samples summary of each report (the whole input, or each group), derived from the
samples sums (``state.samples``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gaussnll.core.report.report import SamplesSummary
from gaussnll.core.state.samples import QUANTILE_LEVELS, SamplesState


class SamplesSummaries:
    """The summary of each of a batch of reports (``weight``: each one's row count, a sum of
    weights when weighted; ``outputs``: D, each row's elements), built when indexed from
    numbers derived once for the batch."""

    def __init__(
        self, samples: SamplesState, weight: Tensor, outputs: int, *, by_group: bool
    ) -> None:
        totals = samples.totals(by_group)
        rows = weight.to(torch.float64)
        count = rows * outputs
        levels = torch.linspace(0, 1, QUANTILE_LEVELS, dtype=torch.float64)
        observed = totals["under"].to(torch.float64) / count.unsqueeze(1)
        mixed = (totals["other_members"] > 0).tolist()
        self._members = samples.members
        self._levels = list(samples.levels)
        self._outputs = outputs
        self._mixed = mixed
        self._columns: dict[str, list] = {
            "sample_crps": (totals["crps"] / count).tolist(),
            "sample_crps_fair": (totals["crps_fair"] / count).tolist(),
            "sample_energy_score": (totals["energy_score"] / rows).tolist(),
            "sample_energy_score_fair": (totals["energy_score_fair"] / rows).tolist(),
            "sample_coverage": (totals["inside"] / count.unsqueeze(1)).tolist(),
            "sample_inside_counts": totals["inside"].tolist(),
            "sample_rank_counts": totals["ranks"].tolist(),
            "sample_pit_counts": totals["pit"].tolist(),
            "sample_quantile_mace": (observed - levels).abs().mean(dim=1).tolist(),
        }

    def __getitem__(self, index: int) -> SamplesSummary:
        values = {name: column[index] for name, column in self._columns.items()}
        for name in ("sample_crps_fair", "sample_energy_score_fair"):  # NaN for one draw
            values[name] = values[name] if math.isfinite(values[name]) else None
        if self._outputs == 1:  # the energy score of one output is its CRPS
            values["sample_energy_score"] = values["sample_energy_score_fair"] = None
        mixed = self._mixed[index]
        if mixed:
            values["sample_rank_counts"] = None
        members = None if mixed else self._members
        return SamplesSummary(levels=self._levels, sample_members=members, **values)
