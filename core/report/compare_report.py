"""The result of comparing two models: both reports and the paired differences of the per-row
scores they both have."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch

from gaussnll.core.families import CI
from gaussnll.core.report.catalogue import CompareMetrics
from gaussnll.core.report.fields import Shape, declared, info, json_fields, metric, section
from gaussnll.core.report.report import SCORE_METRICS, GroupScore, Report, interval_end
from gaussnll.core.state.paired import PairedTotals

COMPARE_SCHEMA = "gaussnll.compare/1"


# The per-row scores a comparison can pair, in the order a verdict prefers them (the first
# compared is the headline: its interval gives the verdict), each with its label.
PAIRED_SCORES = {
    "nll": "NLL",
    "crps": "CRPS",
    "dss": "DSS",
    "wis": "WIS",
    "quantile_score": "quantile score",
    "crps_quantile": "quantile CRPS",
}
# Each paired score's numbers: the suffix of ``delta_<score>``, the label and the description.
_DELTA_PARTS = {
    "": ("mean {} difference", "mean of d = candidate - baseline, d the rows' {}"),
    "_std": ("{}: std of the difference", "sample standard deviation of the rows' {} d"),
    "_se": ("{}: standard error", "standard error of the mean of the rows' {} d"),
    "_ci_low": ("{}: interval low", "lower end of the confidence interval of the {} d"),
    "_ci_high": ("{}: interval high", "upper end of the confidence interval of the {} d"),
}


def paired_score_of(metric: str) -> str | None:
    """The paired score a metric's name is a number of (``delta_wis_se``: ``wis``), if any."""
    for score in PAIRED_SCORES:
        if any(metric == f"delta_{score}{suffix}" for suffix in _DELTA_PARTS):
            return score
    return None


class Delta(NamedTuple):
    """One paired score's difference: mean, standard deviation, standard error, interval."""

    mean: float
    std: float
    se: float
    ci_low: float
    ci_high: float


def _with_deltas(cls: type) -> type:
    """Declare the ``delta_<score>`` fields of every paired score but the NLL (declared by
    hand, with the labels it always had) after the NLL's, null where that score was not
    compared."""
    annotations: dict[str, Any] = {}
    for name, annotation in cls.__annotations__.items():
        annotations[name] = annotation
        if name != "delta_nll_ci_high":
            continue
        for score, label in list(PAIRED_SCORES.items())[1:]:
            for suffix, (title, description) in _DELTA_PARTS.items():
                field = f"delta_{score}{suffix}"
                annotations[field] = "float | None"
                setattr(
                    cls, field, metric(title.format(label), description.format(score), default=None)
                )
    cls.__annotations__ = annotations
    return cls


@dataclass(frozen=True, kw_only=True)
@_with_deltas
class PairedSummary:
    """The per-row score differences ``d = candidate - baseline`` over the paired rows: of
    each score both models have (``compared``), ``delta_<score>`` and its spread and interval
    (null for a score not compared: ``not_compared`` says why)."""

    rows: int = metric("paired rows", "rows paired and scored")
    weight_sum: float | None = metric(
        "weight sum", "sum of the paired rows' weights (null unweighted)", count=True, default=None
    )
    delta_nll: float | None = metric(
        "mean NLL difference", "mean of d = candidate - baseline", default=None
    )
    delta_nll_std: float | None = metric(
        "std of the difference", "sample standard deviation of d", default=None
    )
    delta_nll_se: float | None = metric(
        "standard error", "standard error of the mean of d", default=None
    )
    delta_nll_ci_low: float | None = metric(
        "interval low", "lower end of the confidence interval", default=None
    )
    delta_nll_ci_high: float | None = metric(
        "interval high", "upper end of the confidence interval", default=None
    )
    confidence: float = info("level of the confidence interval")
    candidate_better: float = metric(
        "share of rows: candidate's NLL lower",
        "share of rows (weighted: of weight) with d < 0 in the headline score (the NLL, else "
        "the first compared), where the candidate's is lower",
    )
    baseline_better: float = metric(
        "share of rows: baseline's NLL lower",
        "share of rows (weighted: of weight) with d > 0 in the headline score, where the "
        "baseline's is lower",
    )
    headline: str = info("the score the verdict and the shares of rows read", default="nll")
    compared: tuple[str, ...] = info("the scores both models have, paired", default=("nll",))
    not_compared: dict[str, str] = info("each score not paired, and why", default_factory=dict)
    means: dict[str, dict[str, float]] = info(
        "each compared score's mean for the baseline and for the candidate",
        default_factory=dict,
    )
    quantile_levels: tuple[float, ...] | None = info(
        "the levels the quantile scores were paired at", default=None
    )
    delta_quantile_coverage: list[float] | None = metric(
        "quantile coverage difference",
        "per level of quantile_levels: the mean difference of the indicator y <= q",
        per_level=True,
        levels="quantile_levels",
        default=None,
    )

    @classmethod
    def from_totals(
        cls,
        totals: Sequence[PairedTotals],
        confidence: float,
        *,
        weighted: bool = False,
        compared: tuple[str, ...] = ("nll",),
        not_compared: dict[str, str] | None = None,
        quantile_levels: tuple[float, ...] | None = None,
    ) -> PairedSummary:
        """Mean, sample standard deviation, standard error and normal interval of each
        compared score's ``d`` (``totals``: one per score of ``compared``, then one per level
        of ``quantile_levels``, the coverage indicators').

        Weights count as frequencies: ``n = Σw`` in every formula, so integer weights give the
        statistics of each row repeated that many times (docs/weights.md)."""
        z = float(torch.special.ndtri(torch.tensor(0.5 + confidence / 2, dtype=torch.float64)))
        n = totals[0].weight
        values: dict[str, Any] = {}
        means = {}
        for score, sums in zip(compared, totals, strict=False):
            delta = _delta(sums, z)
            values.update(
                {f"delta_{score}{s}": v for s, v in zip(_DELTA_PARTS, delta, strict=True)}
            )
            means[score] = {
                "baseline": sums.baseline / n,
                "candidate": (sums.baseline + sums.total) / n,
            }
        headline = totals[0]
        if quantile_levels is not None:
            coverage = totals[len(compared) :]
            values["delta_quantile_coverage"] = [sums.total / n for sums in coverage]
        return cls(
            rows=headline.rows,
            weight_sum=n if weighted else None,
            confidence=confidence,
            candidate_better=headline.negative / n,
            baseline_better=headline.positive / n,
            headline=compared[0],
            compared=compared,
            not_compared=dict(not_compared or {}),
            means=means,
            quantile_levels=quantile_levels,
            **values,
        )

    def delta(self, score: str) -> Delta | None:
        """``score``'s paired difference (None: not compared)."""
        if score not in self.compared:
            return None
        return Delta(*(getattr(self, f"delta_{score}{suffix}") for suffix in _DELTA_PARTS))

    @property
    def main(self) -> Delta:
        """The headline score's difference."""
        delta = self.delta(self.headline)
        if delta is None:
            raise ValueError(f"the headline score {self.headline} was not compared")
        return delta


def _delta(totals: PairedTotals, z: float) -> Delta:
    """The mean of ``d``, its sample standard deviation, standard error and normal interval
    (``z``: the interval's quantile)."""
    n = totals.weight
    mean = totals.total / n
    spread = max(totals.squares - totals.total * mean, 0.0) / (n - 1) if n > 1 else math.nan
    std = math.sqrt(spread)
    se = std / math.sqrt(n)
    return Delta(mean, std, se, mean - z * se, mean + z * se)


@dataclass(frozen=True, kw_only=True)
class CalibrationDeltas:
    """The calibration differences ``candidate - baseline`` of the whole comparison with
    bootstrap intervals (``--ci``): the same replicate weights weigh a pair's two rows
    (docs/intervals.md); null where a model lacks the number."""

    delta_mace: float | None = metric(
        "MACE difference", "candidate's mace - baseline's", in_groups=False, family=CI, default=None
    )
    delta_mace_ci_low: float | None = interval_end("delta_mace", "low")
    delta_mace_ci_high: float | None = interval_end("delta_mace", "high")
    delta_quantile_mace: float | None = metric(
        "one-sided MACE difference",
        "candidate's quantile_mace - baseline's",
        in_groups=False,
        family=CI,
        default=None,
    )
    delta_quantile_mace_ci_low: float | None = interval_end("delta_quantile_mace", "low")
    delta_quantile_mace_ci_high: float | None = interval_end("delta_quantile_mace", "high")
    levels: list[float] = info("the central-interval levels p of delta_coverage", default=())
    delta_coverage: list[float] | None = metric(
        "coverage difference",
        "per level: candidate's coverage - baseline's",
        per_level=True,
        in_groups=False,
        family=CI,
        default=None,
    )
    delta_coverage_ci_low: list[float] | None = interval_end(
        "delta_coverage", "low", per_level=True
    )
    delta_coverage_ci_high: list[float] | None = interval_end(
        "delta_coverage", "high", per_level=True
    )


@dataclass(frozen=True, kw_only=True)
class CompareReport:
    """Both models' reports on the paired rows, and their paired difference; fields in the
    order of the JSON object (``paired`` is spread into it)."""

    pairing: str = info("order or id")
    id_column: str | None = info("the id column rows were paired by")
    verdict: str = info("better, worse or inconclusive", init=False)
    paired: PairedSummary = section(PairedSummary)
    calibration_ci: CalibrationDeltas | None = section(
        CalibrationDeltas, in_groups=False, default=None
    )
    unmatched_baseline: int = metric("unmatched baseline rows", "ids only in the baseline")
    unmatched_candidate: int = metric("unmatched candidate rows", "ids only in the candidate")
    skipped_rows: int = metric("skipped pairs", "pairs dropped for non-finite values")
    seconds: float = info("time of the comparison")
    baseline: Report = info("the baseline's score report on the paired rows")
    candidate: Report = info("the candidate's score report on the paired rows")
    by: tuple[str, ...] = info("the grouping columns (--by, read from the baseline)", default=())
    groups_total: int = info("how many groups there are", default=0)
    groups: tuple[GroupScore, ...] = info(
        "each group's comparison, the worst (largest headline delta, e.g. delta_nll) first",
        default=(),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", _verdict(self.paired))

    @property
    def label(self) -> str:
        return f"{self.baseline.path} vs {self.candidate.path}"

    def metric(self, name: str) -> float | None:
        """The value of a check's metric (``delta_nll``, ``candidate.crps``...), or None."""
        return COMPARE_METRICS.value(self, name)

    def with_groups(
        self, by: tuple[str, ...], keys: Sequence[tuple[Any, ...]], groups: Sequence[CompareReport]
    ) -> CompareReport:
        """The comparison with each group's (``groups``, of ``keys``), the worst first: the
        largest mean difference of the headline score (a group without one last)."""
        order = sorted(
            range(len(groups)),
            key=lambda k: (math.isnan(d := groups[k].paired.main.mean), -d if d == d else 0.0),
        )
        ordered = [groups[k] for k in order]
        scores = tuple(GroupScore(keys[k], ordered, at) for at, k in enumerate(order))
        return replace(self, by=by, groups=scores, groups_total=len(scores))

    def group_entry(self) -> dict[str, Any]:
        """A group's JSON entry (beside its key): the paired numbers and the verdict (what was
        compared is the whole comparison's)."""
        return {"verdict": self.verdict, **json_fields(self.paired, skip=_PLAN)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``gaussnll compare --json`` (schema ``gaussnll.compare/1``): the
        fields in order, ``paired``'s spread into it, each model's report as its own object;
        with ``--by``, the groups' paired numbers, the worst first."""
        entry: dict[str, Any] = {"schema": COMPARE_SCHEMA}
        for name, spec in declared(CompareReport):
            value = getattr(self, name)
            if name in _GROUPING:
                continue
            if spec.shape is Shape.SECTION and value is None:  # its keys, null
                entry.update(dict.fromkeys(field for field, _ in declared(spec.of or object)))
            elif spec.shape is Shape.SECTION:
                entry.update(json_fields(value))
            else:
                entry[name] = value.to_dict() if isinstance(value, Report) else value
        if self.by:
            groups = [group.to_dict(self.by) for group in self.groups]
            entry.update(by=list(self.by), groups_total=self.groups_total, groups=groups)
        return entry


_GROUPING = ("by", "groups_total", "groups")
_PLAN = ("headline", "compared", "not_compared", "quantile_levels")  # the whole comparison's


def _verdict(paired: PairedSummary) -> str:
    """``better`` or ``worse`` when the whole confidence interval of the candidate's
    difference in the headline score (the NLL, else the first compared) lies below or above
    0, else ``inconclusive``."""
    main = paired.main
    if main.ci_high < 0:
        return "better"
    if main.ci_low > 0:
        return "worse"
    return "inconclusive"


# every metric a comparison's check can name
COMPARE_METRICS = CompareMetrics(CompareReport, SCORE_METRICS)
