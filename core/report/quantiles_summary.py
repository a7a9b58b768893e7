"""A quantile model's summary of each report (the whole input, or each group), derived from the
quantile sums (``state.quantiles``): every number is a ratio of sums, or linear in them."""

from __future__ import annotations

import torch
from torch import Tensor

from gaussnll.core.report.report import QuantilesSummary
from gaussnll.core.state.quantiles import QuantileState


class QuantilesSummaries:
    """The summary of each of a batch of reports (``weight``: each one's sum of row weights),
    built when indexed from numbers derived once for the whole batch."""

    def __init__(self, state: QuantileState, weight: Tensor, *, by_group: bool) -> None:
        totals = state.totals(by_group)
        spec = state.spec
        count = weight.to(torch.float64).unsqueeze(1)
        levels = torch.tensor(spec.levels, dtype=torch.float64)
        score = totals["pinball"] / count
        coverage = totals["below"] / count
        pairs = spec.pairs
        interval = (
            torch.stack(
                [(score[:, low] + score[:, high]) / spec.levels[low] for low, high in pairs], dim=1
            )
            if pairs
            else score[:, :0]
        )
        wis_weights = spec.wis_weights
        rows = len(count)
        self._levels = list(spec.levels)
        self._central = list(spec.central)
        self._columns: dict[str, list] = {
            "crossing_rows": totals["crossing"].tolist(),
            "quantile_score": score.tolist(),
            "quantile_score_mean": score.mean(dim=1).tolist(),
            "wis": [None] * rows if wis_weights is None else (score @ wis_weights).tolist(),
            "interval_coverage": (totals["inside"] / count).tolist(),
            "quantile_interval_score": interval.tolist(),
            "quantile_coverage": coverage.tolist(),
            "quantile_mace": (coverage - levels).abs().mean(dim=1).tolist(),
            "crps_quantile": (2 * score.mean(dim=1)).tolist(),
        }

    def __getitem__(self, index: int) -> QuantilesSummary:
        values = {name: column[index] for name, column in self._columns.items()}
        return QuantilesSummary(levels=self._levels, interval_levels=self._central, **values)
