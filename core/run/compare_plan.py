"""Which per-row scores two models of any input forms are compared on, and why the others not.

A model is a Gaussian (a variance, standard deviation or log-variance; an ensemble, as its
moment-matched Gaussian), samples (M draws per row) or quantiles (K quantiles per row at given
levels). Two models compare on the scores both have exactly:

- Gaussian and Gaussian, samples and samples: ``nll``, ``crps`` and ``dss`` (samples: the CRPS of
  the draws, the NLL and DSS of their moment-matched Gaussian);
- a Gaussian and samples: ``crps`` (closed form against the draws' energy form);
- a quantile model and any model: the quantile scores at the quantile model's levels
  (``wis``, ``quantile_score``, ``crps_quantile`` and each level's coverage), the other's
  quantiles being a Gaussian's exact ``μ + σ Φ⁻¹(τ)`` or the draws' empirical quantiles
  (numpy's linear rule). Two quantile models must have the same levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gaussnll.core.errors import UsageError
from gaussnll.core.options import ScoreOptions
from gaussnll.core.report.compare_report import PAIRED_SCORES, paired_score_of
from gaussnll.core.state.quantiles import QuantileLevels

GAUSSIAN, SAMPLES, QUANTILES = "gaussian", "samples", "quantiles"
_DENSITY = ("nll", "dss")
_QUANTILE_SCORES = ("wis", "quantile_score", "crps_quantile")


def form_of(options: ScoreOptions) -> str:
    """A model's input form: ``gaussian`` (an ensemble too), ``samples`` or ``quantiles``."""
    if options.quantiles is not None:
        return QUANTILES
    return SAMPLES if options.samples else GAUSSIAN


@dataclass(frozen=True)
class ComparisonPlan:
    """The forms of both models, the scores compared (in ``PAIRED_SCORES``' order), the levels
    the quantile scores are compared at (None: none are), and why each other score is not."""

    forms: tuple[str, str]
    scores: tuple[str, ...]
    levels: QuantileLevels | None = None
    not_compared: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        """The accumulator's columns: each score, then each level's coverage indicator."""
        levels = () if self.levels is None else self.levels.levels
        return (*self.scores, *(f"quantile_coverage@{tau:g}" for tau in levels))

    def why_not(self, metric: str) -> str | None:
        """Why the paired score a check's ``metric`` (``delta_wis_se``...) names was not
        compared (None: it was, or ``metric`` names no paired score)."""
        score = paired_score_of(metric)
        if score is None or score not in self.not_compared:
            return None
        return f"{score} was not compared: {self.not_compared[score]}"


def plan_comparison(baseline: ScoreOptions, candidate: ScoreOptions) -> ComparisonPlan:
    """The scores a comparison of these two models pairs (module docstring). Two quantile
    models of different levels raise :class:`UsageError`."""
    forms = (form_of(baseline), form_of(candidate))
    if QUANTILES in forms:
        levels = _common_levels(baseline, candidate)
        scores = [s for s in _QUANTILE_SCORES if s != "wis" or levels.median is not None]
        reasons = {score: "the quantile model has no density" for score in _DENSITY}
        reasons["crps"] = (
            "the quantile model's K quantiles are not a whole distribution (crps_quantile "
            "approximates its CRPS)"
        )
        if levels.median is None:
            reasons["wis"] = "the quantile levels have no median (0.5), which the WIS needs"
        return _plan(forms, scores, reasons, levels)
    reasons = {
        score: "neither model is a quantile model (--quantiles)" for score in _QUANTILE_SCORES
    }
    if forms[0] == forms[1]:
        return _plan(forms, ["nll", "crps", "dss"], reasons, None)
    for score in _DENSITY:
        reasons[score] = (
            "the sample model's is its moment-matched Gaussian's, not a density of its draws"
        )
    return _plan(forms, ["crps"], reasons, None)


def _plan(
    forms: tuple[str, str],
    scores: list[str],
    reasons: dict[str, str],
    levels: QuantileLevels | None,
) -> ComparisonPlan:
    ordered = tuple(score for score in PAIRED_SCORES if score in scores)
    return ComparisonPlan(forms, ordered, levels, reasons)


def _common_levels(baseline: ScoreOptions, candidate: ScoreOptions) -> QuantileLevels:
    """The quantile model's levels (both models': they must be the same)."""
    given = [o.quantiles for o in (baseline, candidate) if o.quantiles is not None]
    first = given[0] or ()
    for other in given[1:]:
        same = len(other) == len(first) and all(map(math.isclose, other, first))
        if not same:
            raise UsageError(
                "the quantile models' levels differ "
                f"({','.join(f'{t:g}' for t in first)} and {','.join(f'{t:g}' for t in other)}): "
                "two quantile models compare at the same levels"
            )
    return QuantileLevels(tuple(first))
