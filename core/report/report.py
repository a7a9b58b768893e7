"""The result of scoring: a plain record that renderers and the JSON output read."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gaussnll.core.families import CI, QUANTILES
from gaussnll.core.io.grouping import Interval
from gaussnll.core.report.catalogue import ScoreMetrics
from gaussnll.core.report.fields import (
    PerReport,
    Shape,
    declared,
    info,
    json_fields,
    metric,
    section,
)

SCORE_SCHEMA = "gaussnll.score/1"
_DSS = (
    "Dawid-Sebastiani score: mean of z² + log v over elements (v = max(var, eps)); for a "
    "Gaussian 2 × the NLL without its constant"
)


@dataclass(frozen=True, kw_only=True)
class CalibrationSummary:
    """How well the predicted variances match the errors (definitions in docs/output.md)."""

    levels: list[float] = info("the central-interval levels p (--levels)")
    coverage: list[float] | None = metric(
        "observed coverage",
        "fraction of elements inside the central p-interval",
        per_level=True,
        family="coverage",
        default=None,
    )
    inside_counts: list[int] | None = metric(
        "elements inside",
        "how many elements are inside the central p-interval (weighted: their weight)",
        per_level=True,
        family="coverage",
        default=None,
    )
    interval_width: list[float] | None = metric(
        "mean interval width",
        "mean width of the central p-interval",
        per_level=True,
        family="coverage",
        default=None,
    )
    interval_score: list[float] | None = metric(
        "interval score",
        "mean interval score of the central p-interval",
        per_level=True,
        family="coverage",
        default=None,
    )
    pit_bins: int = info("bins of the PIT histogram")
    pit_counts: list[int] | None = metric(
        "PIT histogram",
        "counts (weighted: weights) of the PIT in equal bins",
        vector=True,
        family="pit",
        default=None,
    )
    mace: float | None = metric(
        "mean absolute calibration error",
        "mean |observed - expected| coverage",
        family="calibration",
        default=None,
    )
    rmsce: float | None = metric(
        "root mean square calibration error",
        "RMS of the same differences",
        family="calibration",
        default=None,
    )
    miscalibration_area: float | None = metric(
        "miscalibration area",
        "area between the calibration curve and the diagonal",
        family="calibration",
        default=None,
    )
    quantile_mace: float | None = metric(
        "one-sided MACE",
        "mean |observed - expected| frequency of target <= the tau-quantile (sees bias)",
        family="one_sided",
        default=None,
    )
    quantile_rmsce: float | None = metric(
        "one-sided RMSCE", "RMS of the same differences", family="one_sided", default=None
    )
    quantile_miscalibration_area: float | None = metric(
        "one-sided miscalibration area",
        "area between the one-sided calibration curve and the diagonal",
        family="one_sided",
        default=None,
    )
    crps: float | None = metric(
        "CRPS", "mean continuous ranked probability score", family="crps", default=None
    )
    check_score: float | None = metric(
        "check score", "mean pinball loss over 99 quantile levels", family="scores", default=None
    )
    interval_score_avg: float | None = metric(
        "interval score (mean over levels)",
        "interval score averaged over 99 levels",
        family="scores",
        default=None,
    )
    nll_full: float | None = metric(
        "NLL with the constant", "mean NLL plus 0.5 log 2π", family="var_scale", default=None
    )
    sharpness: float | None = metric(
        "sharpness",
        "sqrt of the mean variance, as given (not floored)",
        family="var_scale",
        default=None,
    )
    z_mean: float | None = metric(
        "z mean",
        "mean of z = (target - mean) / sqrt(max(var, eps))",
        family="var_scale",
        default=None,
    )
    z_std: float | None = metric(
        "z std", "population standard deviation of z", family="var_scale", default=None
    )
    z2_mean: float | None = metric("z² mean", "mean of z²", family="var_scale", default=None)
    var_scale: float | None = metric(
        "variance scale s* (1 = calibrated)",
        "the factor on every variance that minimises the NLL",
        family="var_scale",
        default=None,
    )
    nll_at_var_scale: float | None = metric(
        "NLL with variance × s*",
        "the mean NLL the model would get with variances × s*",
        family="var_scale",
        default=None,
    )
    calibration_curve: list[float] | None = metric(
        "calibration curve",
        "observed coverage at the expected levels linspace(0, 1, 100)",
        vector=True,
        family="calibration",
        default=None,
    )
    quantile_calibration_curve: list[float] | None = metric(
        "one-sided calibration curve",
        "observed frequency of u <= tau (target at or below the tau-quantile) at the levels "
        "tau in linspace(0, 1, 100)",
        vector=True,
        family="one_sided",
        default=None,
    )
    ence: float | None = metric(
        "ENCE",
        "expected normalised calibration error: mean over σ bins of |RMV - RMSE| / RMV",
        family="uncertainty",
        default=None,
    )
    uncertainty_bins: dict[str, list[float]] | None = info(
        "bins of predicted σ of nearly equal count: edges, counts, rmv, rmse",
        family="uncertainty",
        default=None,
    )
    sigma_histogram: dict[str, list[float]] | None = info(
        "counts of predicted σ in log-spaced bins, four per octave: edges, counts",
        family="uncertainty",
        default=None,
    )


@dataclass(frozen=True, kw_only=True)
class AccuracySummary:
    """How close the predicted means are: errors are ``target - mean``."""

    mae: float | None = metric("MAE", "mean absolute error", family="accuracy", default=None)
    rmse: float | None = metric("RMSE", "root mean squared error", family="accuracy", default=None)
    bias: float | None = metric(
        "bias", "mean error, target - mean", family="accuracy", default=None
    )


@dataclass(frozen=True, kw_only=True)
class EnsembleSummary:
    """An ensemble scored as its mixture of Gaussians (the rest of the report scores its
    moment-matched Gaussian); definitions in docs/ensembles.md."""

    members: int = metric("members", "ensemble members with a nonzero weight")
    weights: list[float] = info("every member's weight, normalised to sum 1", in_groups=True)
    mixture_nll: float = metric("mixture NLL", "mean over elements of the mixture's NLL")
    member_nll: list[float | None] = metric(
        "member NLL", "each member's mean NLL on its own (null: weight 0)", vector=True
    )
    member_nll_mean: float = metric(
        "weighted member NLL", "the members' NLLs weighted by their weights"
    )
    aleatoric_var: float = metric("aleatoric variance", "mean of the weighted member variances")
    epistemic_var: float = metric(
        "epistemic variance", "mean of the weighted squared member deviations from the mean"
    )
    epistemic_fraction: float = metric(
        "epistemic fraction", "epistemic variance / (aleatoric + epistemic)"
    )
    mixture_crps: float | None = metric(
        "mixture CRPS", "mean CRPS of the mixture (null without calibration)", calibrated=True
    )
    mixture_coverage: list[float] = metric(
        "mixture coverage",
        "fraction of elements inside the mixture's central p-interval",
        per_level=True,
        calibrated=True,
    )
    mixture_inside_counts: list[int] = metric(
        "mixture elements inside",
        "elements inside the mixture's central p-interval",
        per_level=True,
        calibrated=True,
    )
    mixture_pit_counts: list[int] = metric(
        "mixture PIT histogram",
        "counts of the mixture's PIT in equal bins",
        vector=True,
        calibrated=True,
    )
    mixture_quantile_mace: float | None = metric(
        "mixture one-sided MACE",
        "one-sided MACE of the mixture's PIT (null without calibration)",
        calibrated=True,
        default=None,
    )
    mixture_quantile_rmsce: float | None = metric(
        "mixture one-sided RMSCE",
        "one-sided RMSCE of the mixture's PIT (null without calibration)",
        calibrated=True,
        default=None,
    )
    mixture_quantile_miscalibration_area: float | None = metric(
        "mixture one-sided miscalibration area",
        "area between the mixture's one-sided curve and the diagonal (null without calibration)",
        calibrated=True,
        default=None,
    )
    mixture_quantile_calibration_curve: list[float] | None = metric(
        "mixture one-sided calibration curve",
        "observed frequency of F(y) <= tau at tau in linspace(0, 1, 100) (null without "
        "calibration)",
        vector=True,
        calibrated=True,
        default=None,
    )


@dataclass(frozen=True, kw_only=True)
class QuantilesSummary:
    """A quantile model's scores (it has no density: the NLL is null); definitions in the
    README's Quantiles section."""

    levels: list[float] = info("the quantile levels τ (--quantiles)", in_groups=True)
    interval_levels: list[float] = info(
        "the central level 1 - 2τ of each symmetric pair (τ, 1 - τ), narrowest first",
        in_groups=True,
    )
    crossing_rows: int = metric(
        "rows with crossing quantiles",
        "rows whose quantiles decrease somewhere (scored as given)",
        family=QUANTILES,
    )
    quantile_score: list[float] = metric(
        "quantile score",
        "mean pinball loss (1{y < q} - τ)(q - y) at level τ",
        per_level=True,
        family=QUANTILES,
    )
    quantile_score_mean: float = metric(
        "quantile score (mean over levels)", "the quantile scores' mean", family=QUANTILES
    )
    wis: float | None = metric(
        "WIS",
        "mean weighted interval score of the pairs and the median (null: no level 0.5)",
        family=QUANTILES,
    )
    interval_coverage: list[float] = metric(
        "interval coverage",
        "fraction of elements inside the pair's interval [q_τ, q_1-τ]",
        per_level=True,
        family=QUANTILES,
        levels="interval_levels",
    )
    quantile_interval_score: list[float] = metric(
        "interval score of the pair",
        "mean interval score of the pair's interval, α = 2τ",
        per_level=True,
        family=QUANTILES,
        levels="interval_levels",
    )
    quantile_coverage: list[float] = metric(
        "quantile coverage",
        "fraction of elements with target <= q_τ",
        per_level=True,
        family=QUANTILES,
    )
    quantile_mace: float = metric(
        "quantile MACE", "mean |quantile coverage - τ| over the levels", family=QUANTILES
    )
    crps_quantile: float = metric(
        "CRPS (quantiles)", "2 × the quantile scores' mean (scoringrules)", family=QUANTILES
    )


@dataclass(frozen=True, kw_only=True)
class SamplesSummary:
    """Predictions given as M draws per row, scored as the draws (the rest of the report scores
    their moment-matched Gaussian); definitions in the README's Samples section."""

    sample_members: int | None = metric(
        "draws", "draws per row (null when files differ in it)", family="samples"
    )
    levels: list[float] = info(
        "the central-interval levels p of sample coverage (--levels)",
        in_groups=True,
        family="samples",
    )
    sample_crps: float = metric(
        "sample CRPS", "mean CRPS of the draws, energy form (scoringrules nrg)", family="samples"
    )
    sample_crps_fair: float | None = metric(
        "sample CRPS (fair)",
        "mean fair CRPS of the draws (scoringrules fair; null for one draw)",
        family="samples",
    )
    sample_energy_score: float | None = metric(
        "sample energy score",
        "mean energy score of the draws over the outputs jointly (scoringrules energy_score, "
        "nrg; null for one output)",
        family="samples",
    )
    sample_energy_score_fair: float | None = metric(
        "sample energy score (fair)",
        "mean fair energy score of the draws (scoringrules fair; null for one output or draw)",
        family="samples",
    )
    sample_coverage: list[float] = metric(
        "sample coverage",
        "fraction of elements inside the draws' empirical central p-interval",
        per_level=True,
        family="samples",
    )
    sample_inside_counts: list[int] = metric(
        "sample elements inside",
        "elements inside the draws' empirical central p-interval",
        per_level=True,
        family="samples",
    )
    sample_rank_counts: list[float] | None = metric(
        "rank histogram",
        "elements per rank of the target among the draws, M + 1 bins, ties split evenly "
        "(null when files differ in M)",
        vector=True,
        family="samples",
    )
    sample_pit_counts: list[int] = metric(
        "sample PIT histogram",
        "counts of the draws' empirical CDF at the target (ties at ½) in equal bins",
        vector=True,
        family="samples",
    )
    sample_quantile_mace: float = metric(
        "sample quantile MACE",
        "mean |τ - frequency of PIT ≤ τ| over linspace(0, 1, 100)",
        family="samples",
    )


def interval_end(name: str, end: str, *, per_level: bool = False) -> Any:
    """A field holding the ``end`` (low or high) of ``name``'s bootstrap interval (``--ci``;
    null without it, or where ``name``'s family is not chosen)."""
    return metric(
        f"{name} interval {end}",
        f"{end} end of the bootstrap percentile interval of {name}",
        per_level=per_level,
        in_groups=False,
        family=CI,
        default=None,
    )


@dataclass(frozen=True, kw_only=True)
class IntervalsSummary:
    """Percentile intervals of the headline metrics by a streamed Poisson bootstrap of the
    rows (``--ci``; whole input only; docs/intervals.md); the interval of a metric whose
    family is not chosen is null."""

    level: float = info("the intervals' level (--ci)")
    replicates: int = info("bootstrap replicates B (--ci-replicates)")
    seed: int = info("the seed of the replicate weights (--ci-seed)")
    key: str = info(
        "what keys each row's weights: its values, its id column, or (a compare candidate's "
        "paired by order) its pair's baseline values"
    )
    levels: list[float] = info("the central-interval levels p of coverage (--levels)")
    nll_ci_low: float | None = interval_end("nll", "low")
    nll_ci_high: float | None = interval_end("nll", "high")
    dss_ci_low: float | None = interval_end("dss", "low")
    dss_ci_high: float | None = interval_end("dss", "high")
    crps_ci_low: float | None = interval_end("crps", "low")
    crps_ci_high: float | None = interval_end("crps", "high")
    mace_ci_low: float | None = interval_end("mace", "low")
    mace_ci_high: float | None = interval_end("mace", "high")
    quantile_mace_ci_low: float | None = interval_end("quantile_mace", "low")
    quantile_mace_ci_high: float | None = interval_end("quantile_mace", "high")
    rmse_ci_low: float | None = interval_end("rmse", "low")
    rmse_ci_high: float | None = interval_end("rmse", "high")
    var_scale_ci_low: float | None = interval_end("var_scale", "low")
    var_scale_ci_high: float | None = interval_end("var_scale", "high")
    coverage_ci_low: list[float] | None = interval_end("coverage", "low", per_level=True)
    coverage_ci_high: list[float] | None = interval_end("coverage", "high", per_level=True)


@dataclass(frozen=True, kw_only=True)
class OutputScore:
    """The scores of one output column (one of the ``D`` in a multi-output prediction)."""

    column: str = info("the output's column (name[i] inside a list column)")
    elements: int = metric("elements", "loss elements of this output")
    nll_mean: float | None = metric("NLL mean", "mean of the element losses (null: no density)")
    nll_sum: float | None = metric("NLL sum", "sum of the element losses (null: no density)")
    dss: float | None = metric("DSS", _DSS, family="nll")
    calibration: CalibrationSummary | None = section(CalibrationSummary, default=None)
    accuracy: AccuracySummary | None = section(AccuracySummary, default=None)

    def to_dict(self) -> dict[str, Any]:
        return json_fields(self)


@dataclass(frozen=True, kw_only=True)
class Report:
    """Everything ``gaussnll score`` reports; ``nll`` is the value under ``reduction``.

    Fields are in the order of the JSON object; each declares what it is (``fields``).
    """

    path: str = info("the input as given")
    format: str = info("the input's format")
    rows: int = metric("rows", "rows read", in_groups=True)
    elements: int = metric("elements", "loss elements (rows × outputs)", in_groups=True)
    weight_sum: float | None = metric(
        "weight sum",
        "sum of the rows' weights (--weight-col), which every mean divides by; null unweighted",
        count=True,
        default=None,
    )
    reduction: str = info("the loss reduction")
    full: bool = info("whether the constant 0.5 log 2π is added")
    eps: float = info("the variance floor")
    nll: float | None = metric(
        "NLL", "the reduced loss torch returns (null for reduction none)", init=False
    )
    nll_mean: float | None = metric("NLL mean", "mean of the element losses (null: no density)")
    nll_sum: float | None = metric("NLL sum", "sum of the element losses (null: no density)")
    dss: float | None = metric("DSS", _DSS, family="nll")
    calibration: CalibrationSummary | None = section(CalibrationSummary, default=None)
    accuracy: AccuracySummary | None = section(AccuracySummary, default=None)
    ensemble: EnsembleSummary | None = section(EnsembleSummary, default=None)
    samples: SamplesSummary | None = section(SamplesSummary, default=None)
    quantiles: QuantilesSummary | None = section(QuantilesSummary, default=None)
    ci: IntervalsSummary | None = section(IntervalsSummary, in_groups=False, default=None)
    skipped_rows: int = metric("skipped rows", "rows dropped for non-finite values", default=0)
    skipped_reasons: dict[str, int] = info(
        "per role, dropped rows with a non-finite value there",
        in_groups=True,
        default_factory=dict,
    )
    eps_floored: int = metric("variances floored to eps", "variances raised to eps", default=0)
    outputs: tuple[OutputScore, ...] = info("per output column")
    columns: dict[str, Any] = info("the columns read, by role", default_factory=dict)
    nan_policy: str = info("the non-finite policy", default="error")
    recalibration: dict[str, Any] | None = info(
        "the recalibration map applied (its file, scales, and rows whose key it had not seen)",
        default=None,
    )
    device: str = info("the device scored on")
    dtype: str = info("the computation dtype")
    chunk_size: int = info("rows per chunk")
    seconds: float = metric(
        "seconds", "wall time of the whole run (of the merge for merged states)", in_groups=False
    )
    rows_per_second: float = info("rows / seconds", init=False)
    by: tuple[str, ...] = info("the grouping columns", default=())
    groups_total: int = info("how many groups there are", default=0)
    groups: Sequence[GroupScore] = info("the groups shown", default=())

    def __post_init__(self) -> None:
        nll = reduced(self.reduction, self.nll_mean, self.nll_sum)
        speed = self.rows / self.seconds if self.seconds > 0 else float("inf")
        object.__setattr__(self, "nll", nll)
        object.__setattr__(self, "rows_per_second", speed)

    def metric(self, name: str) -> float | None:
        """The value of a check's metric (``nll``, ``mace``, ``coverage@0.9``...), or None."""
        return SCORE_METRICS.value(self, name)

    def with_groups(self, sort_by: str | None = None, top: int | None = None) -> Report:
        """The report with its groups sorted by a metric (largest first; ``NAME:asc`` for
        smallest first; groups without the value last) instead of by key, and only the first
        ``top`` of them kept (``groups_total`` still counts them all)."""
        if sort_by is None:  # key order: only the groups kept are built
            return replace(self, groups=self.groups[:top])
        metric, _, direction = sort_by.partition(":")
        sign = 1.0 if direction == "asc" else -1.0
        ranked = self.groups.ranked(metric, sign) if isinstance(self.groups, GroupScores) else None
        if ranked is not None:  # every group's value read at once: the order below
            return replace(self, groups=ranked[:top])

        def order(group: GroupScore) -> tuple[bool, float]:
            value = group.report.metric(metric)
            if value is None or math.isnan(value):
                return True, 0.0
            return False, sign * value

        # The first ``top`` by a partial selection (as stable as a sort): 10^5 groups
        # are not all sorted for a table of 10.
        if top is None:
            groups = sorted(self.groups, key=order)
        else:
            groups = heapq.nsmallest(top, self.groups, key=order)
        return replace(self, groups=tuple(groups))

    def to_frame(self) -> Any:
        """A pandas DataFrame of every scalar of the report, calibration and accuracy included
        (per-level values as ``coverage@0.9`` columns): one row, or one row per group (its key
        columns first) when grouped."""
        import pandas as pd

        if not self.by:
            return pd.DataFrame([self._scalars()])
        return pd.DataFrame(
            [
                {**dict(zip(self.by, group.key, strict=True)), **group.report._scalars()}
                for group in self.groups
            ]
        )

    def _scalars(self) -> dict[str, Any]:
        """Every number of the report by its metric name (``coverage@0.9`` per level), then
        what was scored and how; counts (``rows``, ``inside_counts@0.9``) as integers when
        whole (a weighted count need not be)."""
        row: dict[str, Any] = {"schema": SCORE_SCHEMA}
        for name, spec in declared(Report):
            value = getattr(self, name)
            if spec.shape is Shape.INFO and isinstance(value, int | float | str):
                row[name] = value
        for name, number in SCORE_METRICS.numbers(self).items():
            whole = SCORE_METRICS.integer(name) and number.is_integer()
            row[name] = int(number) if whole else number
        return row

    def to_dict(self, *, groups: bool = True) -> dict[str, Any]:
        """The JSON object of ``gaussnll score --json`` (schema ``gaussnll.score/1``);
        ``groups=False`` leaves the group entries out (to stream them one by one)."""
        entry = {"schema": SCORE_SCHEMA, **json_fields(self, skip=_GROUPING)}
        if self.by:
            listed = [group.to_dict(self.by) for group in self.groups] if groups else []
            entry.update(by=list(self.by), groups_total=self.groups_total, groups=listed)
        return entry

    def scores_dict(self) -> dict[str, Any]:
        """The scores a whole report and a group's JSON entry share."""
        return json_fields(self, groups_only=True)

    def group_entry(self) -> dict[str, Any]:
        """A group's JSON entry (beside its key): its scores; per output only with several."""
        entry = self.scores_dict()
        if len(self.outputs) > 1:
            entry["outputs"] = [output.to_dict() for output in self.outputs]
        return entry


_GROUPING = ("by", "groups_total", "groups")


def reduced(reduction: str, mean: Any, total: Any) -> Any:
    """``nll``: the mean or the sum by ``reduction`` (None for ``none``)."""
    return {"mean": mean, "sum": total}.get(reduction)


@dataclass(frozen=True)
class GroupScore:
    """One group of a ``--by`` breakdown: its key values and its report, built on demand from
    ``reports[index]`` (so many groups hold no Report objects)."""

    key: tuple[Any, ...]
    reports: Sequence[Any] = field(repr=False)  # score Reports, or a comparison's reports
    index: int = 0

    @property
    def report(self) -> Any:
        return self.reports[self.index]

    def to_dict(self, by: tuple[str, ...]) -> dict[str, Any]:
        """The group's JSON entry: its key and its report's entry."""
        key = {name: _plain(value) for name, value in zip(by, self.key, strict=True)}
        return {"key": key, **self.report.group_entry()}

    @staticmethod
    def columns(groups: Sequence[GroupScore], by: tuple[str, ...]) -> dict[str, Any] | None:
        """The JSON entries (``to_dict``) of ``groups``, all of one ``reports``, by column
        (``json_columns``); None where those reports cannot give columns (a comparison's)."""
        entry_columns = getattr(groups[0].reports, "entry_columns", None)
        if entry_columns is None:
            return None
        key = {
            name: PerReport([_plain(group.key[at]) for group in groups])
            for at, name in enumerate(by)
        }
        return {"key": key, **entry_columns([group.index for group in groups])}

    def key_cells(self) -> list[str]:
        """The key values as text, ``null`` for a missing one."""
        return ["null" if value is None else str(value) for value in self.key]

    def label(self) -> str:
        return ", ".join(self.key_cells())


class GroupScores(Sequence[GroupScore]):
    """Groups ``order`` (indices into ``keys`` and ``reports``) as a sequence of
    ``GroupScore``, each built when read: a table of the first 10 of 10^6 groups builds 10."""

    def __init__(
        self, keys: Sequence[tuple[Any, ...]], reports: Sequence[Any], order: np.ndarray
    ) -> None:
        self._keys, self._reports, self._order = keys, reports, order

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, at: Any) -> Any:
        if isinstance(at, slice):
            return GroupScores(self._keys, self._reports, self._order[at])
        b = int(self._order[at])
        return GroupScore(self._keys[b], self._reports, b)

    def ranked(self, metric: str, sign: float) -> GroupScores | None:
        """The groups by ``sign`` × ``metric``, smallest first, those without a value last and
        ties in this order (as ``Report.with_groups`` sorts), from every group's value read at
        once; None where the reports cannot give them so (``Reports.metric_column``)."""
        column = getattr(self._reports, "metric_column", None)
        values = None if column is None else column(metric, self._order)
        if values is None:
            return None
        keys = sign * values
        missing = np.isnan(keys)
        positions = np.lexsort((np.where(missing, 0.0, keys), missing))  # stable
        return GroupScores(self._keys, self._reports, self._order[positions])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return f"GroupScores({len(self)} groups)"


def _plain(value: Any) -> Any:
    """A key value as JSON can hold it (dates and other values as text; an interval with its
    exact edges)."""
    if isinstance(value, Interval):
        return value.exact
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


SCORE_METRICS = ScoreMetrics(Report)  # every metric a check, a sort or a renderer can name
