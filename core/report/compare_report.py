"""The result of comparing two models: both reports and their paired NLL difference."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from gaussnll.core.report.catalogue import CompareMetrics
from gaussnll.core.report.fields import Shape, declared, info, json_fields, metric, section
from gaussnll.core.report.report import SCORE_METRICS, GroupScore, Report
from gaussnll.core.state.paired import PairedTotals

COMPARE_SCHEMA = "gaussnll.compare/1"


@dataclass(frozen=True, kw_only=True)
class PairedSummary:
    """The per-row NLL difference ``d = candidate - baseline`` over the paired rows."""

    rows: int = metric("paired rows", "rows paired and scored")
    weight_sum: float | None = metric(
        "weight sum", "sum of the paired rows' weights (null unweighted)", count=True, default=None
    )
    delta_nll: float = metric("mean NLL difference", "mean of d = candidate - baseline")
    delta_nll_std: float = metric("std of the difference", "sample standard deviation of d")
    delta_nll_se: float = metric("standard error", "standard error of the mean of d")
    delta_nll_ci_low: float = metric("interval low", "lower end of the confidence interval")
    delta_nll_ci_high: float = metric("interval high", "upper end of the confidence interval")
    confidence: float = info("level of the confidence interval")
    candidate_better: float = metric(
        "share of rows: candidate's NLL lower",
        "share of rows (weighted: of weight) with d < 0, where the candidate's NLL is lower",
    )
    baseline_better: float = metric(
        "share of rows: baseline's NLL lower",
        "share of rows (weighted: of weight) with d > 0, where the baseline's NLL is lower",
    )

    @classmethod
    def from_totals(
        cls, totals: PairedTotals, confidence: float, *, weighted: bool = False
    ) -> PairedSummary:
        """Mean, sample standard deviation, standard error and normal interval of ``d``.

        Weights count as frequencies: ``n = Σw`` in every formula, so integer weights give the
        statistics of each row repeated that many times (docs/weights.md)."""
        n = totals.weight
        mean = totals.total / n
        spread = max(totals.squares - totals.total * mean, 0.0) / (n - 1) if n > 1 else math.nan
        std = math.sqrt(spread)
        se = std / math.sqrt(n)
        z = float(torch.special.ndtri(torch.tensor(0.5 + confidence / 2, dtype=torch.float64)))
        return cls(
            rows=totals.rows,
            weight_sum=n if weighted else None,
            delta_nll=mean,
            delta_nll_std=std,
            delta_nll_se=se,
            delta_nll_ci_low=mean - z * se,
            delta_nll_ci_high=mean + z * se,
            confidence=confidence,
            candidate_better=totals.negative / n,
            baseline_better=totals.positive / n,
        )


@dataclass(frozen=True, kw_only=True)
class CompareReport:
    """Both models' reports on the paired rows, and their paired difference; fields in the
    order of the JSON object (``paired`` is spread into it)."""

    pairing: str = info("order or id")
    id_column: str | None = info("the id column rows were paired by")
    verdict: str = info("better, worse or inconclusive", init=False)
    paired: PairedSummary = section(PairedSummary)
    unmatched_baseline: int = metric("unmatched baseline rows", "ids only in the baseline")
    unmatched_candidate: int = metric("unmatched candidate rows", "ids only in the candidate")
    skipped_rows: int = metric("skipped pairs", "pairs dropped for non-finite values")
    seconds: float = info("time of the comparison")
    baseline: Report = info("the baseline's score report on the paired rows")
    candidate: Report = info("the candidate's score report on the paired rows")
    by: tuple[str, ...] = info("the grouping columns (--by, read from the baseline)", default=())
    groups_total: int = info("how many groups there are", default=0)
    groups: tuple[GroupScore, ...] = info(
        "each group's comparison, the worst (largest delta_nll) first", default=()
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
        largest mean NLL difference (a group without one last)."""
        order = sorted(
            range(len(groups)),
            key=lambda k: (math.isnan(d := groups[k].paired.delta_nll), -d if d == d else 0.0),
        )
        ordered = [groups[k] for k in order]
        scores = tuple(GroupScore(keys[k], ordered, at) for at, k in enumerate(order))
        return replace(self, by=by, groups=scores, groups_total=len(scores))

    def group_entry(self) -> dict[str, Any]:
        """A group's JSON entry (beside its key): the paired numbers and the verdict."""
        return {"verdict": self.verdict, **json_fields(self.paired)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``gaussnll compare --json`` (schema ``gaussnll.compare/1``): the
        fields in order, ``paired``'s spread into it, each model's report as its own object;
        with ``--by``, the groups' paired numbers, the worst first."""
        entry: dict[str, Any] = {"schema": COMPARE_SCHEMA}
        for name, spec in declared(CompareReport):
            value = getattr(self, name)
            if name in _GROUPING:
                continue
            if spec.shape is Shape.SECTION:
                entry.update(json_fields(value))
            else:
                entry[name] = value.to_dict() if isinstance(value, Report) else value
        if self.by:
            groups = [group.to_dict(self.by) for group in self.groups]
            entry.update(by=list(self.by), groups_total=self.groups_total, groups=groups)
        return entry


_GROUPING = ("by", "groups_total", "groups")


def _verdict(paired: PairedSummary) -> str:
    """``better`` or ``worse`` when the whole confidence interval of the candidate's NLL
    difference lies below or above 0, else ``inconclusive``."""
    if paired.delta_nll_ci_high < 0:
        return "better"
    if paired.delta_nll_ci_low > 0:
        return "worse"
    return "inconclusive"


# every metric a comparison's check can name
COMPARE_METRICS = CompareMetrics(CompareReport, SCORE_METRICS)
