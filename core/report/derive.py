"""Reports derived from a score state: the whole input's, and each group's on demand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from torch import Tensor

from gaussnll.core.io.grouping import GroupKeys, sort_key
from gaussnll.core.loss import HALF_LOG_2PI
from gaussnll.core.options import ScoreOptions
from gaussnll.core.report.ensemble_summary import EnsembleSummaries
from gaussnll.core.report.quantiles_summary import QuantilesSummaries
from gaussnll.core.report.report import GroupScore, OutputScore, Report
from gaussnll.core.report.samples_summary import SamplesSummaries
from gaussnll.core.report.summary_table import Summaries, SummaryTable
from gaussnll.core.state.calibration import CalibrationState
from gaussnll.core.state.mixture import MixtureState
from gaussnll.core.state.nonfinite import SKIP_REASONS
from gaussnll.core.state.quantiles import QuantileState
from gaussnll.core.state.samples import SamplesState
from gaussnll.core.state.score_state import ScoreState
from gaussnll.core.state.uncertainty import summaries as uncertainty_summaries

SUMMARY_BATCH = 2048  # groups whose summaries are derived together


def derive_report(
    state: ScoreState,
    options: ScoreOptions,
    group_keys: GroupKeys | None,
    **common: Any,
) -> Report:
    """The report of the whole input and, given ``group_keys``, of each group that saw a row
    (built when read; a group of rows of weight 0 only is absent, as its rows are);
    ``common`` holds the fields every report shares (path, format, device, seconds)."""
    report = Reports(state, options, by_group=False, **common)[0]
    if group_keys is None:
        return report
    if not group_keys.keys:  # no row yet (an empty shard's report)
        return replace(report, by=group_keys.columns)
    group_reports = Reports(state, options, by_group=True, **common)
    groups = sorted(
        (
            GroupScore(key, group_reports, b)
            for b, key in enumerate(group_keys.key_values())
            if group_reports.saw_rows(b)
        ),
        key=lambda group: sort_key(group.key),
    )
    return replace(report, by=group_keys.columns, groups=tuple(groups), groups_total=len(groups))


class Reports(Sequence[Report]):
    """The report of the whole input (one), or of each group, built when indexed from the sums
    read once from the state: 10^5 groups keep columns of numbers, not 10^5 Report objects.
    ``common`` holds the fields every report shares (path, format, device, seconds)."""

    def __init__(
        self, state: ScoreState, options: ScoreOptions, by_group: bool, **common: Any
    ) -> None:
        totals = state.totals(by_group)
        rows, loss, weight = totals["rows"], totals["loss"], totals["weight"]
        self._outputs = loss.shape[1]
        constant = HALF_LOG_2PI if options.full else 0.0
        self._sums = (loss + constant * weight.unsqueeze(1)).tolist()
        self._raw_sums = loss.tolist()  # without the constant: the DSS is twice their mean
        self._summaries = _calibration_summaries(state, weight, loss, by_group, options)
        self._rows = rows.tolist()
        self._weights = weight.tolist()  # the denominators: a row each when unweighted
        self._weighted = state.weighted
        self._ensemble = None
        mixture = state.group_mixture if by_group else state.mixture
        if mixture is not None:
            self._ensemble = EnsembleSummaries(
                mixture, weight * self._outputs, by_group=by_group, full=options.full
            )
        samples = state.group_samples if by_group else state.samples
        self._samples = (
            None
            if samples is None
            else SamplesSummaries(samples, weight * self._outputs, by_group=by_group)
        )
        quantiles = state.group_quantiles if by_group else state.quantiles
        self._quantiles = (
            None if quantiles is None else QuantilesSummaries(quantiles, weight, by_group=by_group)
        )
        self._density = options.quantiles is None  # a quantile model's NLL is null
        self._skipped, self._floored = totals["skipped"].tolist(), totals["floored"].tolist()
        self._names = options.columns.output_names(self._outputs)
        self._options = options
        spec = options.columns
        predicted = (
            {"samples": list(spec.mean)}
            if options.samples
            else {"quantiles": list(spec.quantiles)}
            if spec.quantiles
            else {"mean": list(spec.mean), spec.spread_kind.value: list(spec.spread)}
        )
        self._common = {
            "columns": {
                **predicted,
                "target": list(spec.target),
                "id": spec.id,
                "weight": spec.weight,
            },
            **common,
        }

    def __len__(self) -> int:
        return len(self._rows)

    def saw_rows(self, b: int) -> bool:
        """Whether report ``b`` saw a row, scored or skipped (rows of weight 0 are unseen)."""
        return bool(self._rows[b] or self._skipped[b][0])

    def __getitem__(self, b: int) -> Report:  # type: ignore[override]
        options, outputs, n, sums = self._options, self._outputs, self._rows[b], self._sums[b]
        weight = self._weights[b]
        overall, per_output = self._summaries
        calibration, accuracy = _row(overall, b)
        if outputs == 1:  # the output's summaries are the whole row's
            each = [(calibration, accuracy)]
        else:
            each = [_row(per_output, b * outputs + d) for d in range(outputs)]
        total = sum(sums)
        raw = self._raw_sums[b]
        nll = self._density
        return Report(
            rows=n,
            elements=n * outputs,
            weight_sum=weight if self._weighted else None,
            reduction=options.reduction,
            full=options.full,
            eps=options.eps,
            nll_mean=_ratio(total, weight * outputs) if nll else None,
            nll_sum=total if nll else None,
            dss=2 * _ratio(sum(raw), weight * outputs) if nll else None,
            outputs=tuple(
                OutputScore(
                    column=name,
                    elements=n,
                    nll_mean=_ratio(s, weight) if nll else None,
                    nll_sum=s if nll else None,
                    dss=2 * _ratio(r, weight) if nll else None,
                    calibration=output_calibration,
                    accuracy=output_accuracy,
                )
                for name, s, r, (output_calibration, output_accuracy) in zip(
                    self._names, sums, raw, each, strict=True
                )
            ),
            calibration=calibration,
            accuracy=accuracy,
            ensemble=None if self._ensemble is None else self._ensemble[b],
            samples=None if self._samples is None else self._samples[b],
            quantiles=None if self._quantiles is None else self._quantiles[b],
            nan_policy=options.nan_policy,
            skipped_rows=self._skipped[b][0],
            skipped_reasons=dict(zip(SKIP_REASONS, self._skipped[b][1:], strict=True)),
            eps_floored=self._floored[b],
            dtype=options.dtype,
            chunk_size=options.chunk_size,
            **self._common,
        )


def _row(table: SummaryTable | None, index: int) -> Summaries | tuple[None, None]:
    return (None, None) if table is None else table.row(index)


def _ratio(total: float, count: float) -> float:
    return total / count if count else float("nan")


def _calibration_summaries(
    state: ScoreState, weight: Tensor, loss: Tensor, by_group: bool, options: ScoreOptions
) -> tuple[SummaryTable | None, SummaryTable | None]:
    """Calibration and accuracy of each report over all its outputs, and of each (report,
    output) pair, flattened; None without calibration. ``weight``: each report's sum of row
    weights (its row count when unweighted). Derived for ``SUMMARY_BATCH`` groups at a time,
    which bounds the temporaries however many groups there are."""
    batch, outputs = loss.shape
    # The scope's accumulators of calibration and accuracy (the mixture, the samples and the
    # quantiles have their own sections).
    own = (MixtureState, SamplesState, QuantileState)
    parts = [part for part in state.scope(by_group) if not isinstance(part, own)]
    if not parts:
        return None, None
    levels, pit_bins = options.levels, options.pit_bins
    totals = [part.totals(by_group) for part in parts]

    def table(sums: list[dict[str, Tensor]], elements: Tensor, loss_sums: Tensor) -> SummaryTable:
        columns: dict[str, np.ndarray] = {}
        for part, part_sums in zip(parts, sums, strict=True):
            if isinstance(part, CalibrationState):
                columns.update(part.summaries(part_sums, elements, loss_sums, options.full))
            else:
                columns.update(uncertainty_summaries(part_sums, options.uncertainty_bins))
        families = frozenset[str]().union(*(part.families for part in parts))
        return SummaryTable.of_columns(levels, pit_bins, columns, len(elements), families)

    overall, per_output = [], []
    for start in range(0, batch, SUMMARY_BATCH):
        rows = slice(start, start + SUMMARY_BATCH)
        sums = [{name: values[rows] for name, values in each.items()} for each in totals]
        overall.append(
            table(
                [{name: values.sum(dim=1) for name, values in each.items()} for each in sums],
                weight[rows] * outputs,
                loss[rows].sum(dim=1),
            )
        )
        if outputs > 1:
            per_output.append(
                table(
                    [
                        {name: values.flatten(0, 1) for name, values in each.items()}
                        for each in sums
                    ],
                    weight[rows].repeat_interleave(outputs),
                    loss[rows].flatten(),
                )
            )
    whole = SummaryTable.concatenated(overall)
    return whole, SummaryTable.concatenated(per_output) if outputs > 1 else whole
