"""An ensemble's mixture summary of each report (the whole input, or each group), derived from
the mixture sums (``state.mixture``)."""

from __future__ import annotations

import torch
from torch import Tensor

from gaussnll.core.loss import HALF_LOG_2PI
from gaussnll.core.report.report import EnsembleSummary
from gaussnll.core.state.calibration import curve_numbers
from gaussnll.core.state.mixture import MixtureState

_ONE_SIDED = ("mace", "rmsce", "miscalibration_area", "calibration_curve")


class EnsembleSummaries:
    """The summary of each of a batch of reports (``elements``: each one's element count),
    built when indexed from numbers derived once for the whole batch."""

    def __init__(
        self, mixture: MixtureState, elements: Tensor, *, by_group: bool, full: bool
    ) -> None:
        totals = mixture.totals(by_group)
        count = elements.to(torch.float64)
        constant = HALF_LOG_2PI if full else 0.0
        weights = mixture.weights
        kept = torch.tensor([weights.normalised[m] for m in weights.kept], dtype=torch.float64)
        member_nll = totals["member_loss"] / count.unsqueeze(1) + constant
        aleatoric, epistemic = totals["aleatoric"] / count, totals["epistemic"] / count
        self._weights = list(weights.normalised)
        self._kept = weights.kept
        self._columns: dict[str, list] = {
            "mixture_nll": (totals["mixture_loss"] / count + constant).tolist(),
            "member_nll": member_nll.tolist(),
            "member_nll_mean": (member_nll * kept).sum(dim=1).tolist(),
            "aleatoric_var": aleatoric.tolist(),
            "epistemic_var": epistemic.tolist(),
            "epistemic_fraction": (epistemic / (aleatoric + epistemic)).tolist(),
        }
        calibrated = "inside" in totals
        rows = len(count)
        self._columns["mixture_crps"] = (
            (totals["crps"] / count).tolist() if calibrated else [None] * rows
        )
        if calibrated:
            inside = totals["inside"]
            self._columns["mixture_coverage"] = (inside / count.unsqueeze(1)).tolist()
            self._columns["mixture_inside_counts"] = inside.tolist()
            self._columns["mixture_pit_counts"] = totals["pit"].tolist()
            one_sided = curve_numbers("", totals["one_sided"], count.unsqueeze(1))
            for name in _ONE_SIDED:
                self._columns[f"mixture_quantile_{name}"] = one_sided[name].tolist()
        else:
            for name in ("mixture_coverage", "mixture_inside_counts", "mixture_pit_counts"):
                self._columns[name] = [[] for _ in range(rows)]

    def __getitem__(self, index: int) -> EnsembleSummary:
        values = {name: column[index] for name, column in self._columns.items()}
        member_nll: list[float | None] = [None] * len(self._weights)
        for position, member in enumerate(self._kept):
            member_nll[member] = values["member_nll"][position]
        values["member_nll"] = member_nll
        return EnsembleSummary(members=len(self._kept), weights=self._weights, **values)
