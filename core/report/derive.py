"""Reports derived from a score state: the whole input's, and each group's on demand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gaussnll.core.io.devices import single_threaded_kernels
from gaussnll.core.io.grouping import GroupKeys, key_order
from gaussnll.core.loss import HALF_LOG_2PI
from gaussnll.core.options import ScoreOptions
from gaussnll.core.report.ensemble_summary import EnsembleSummaries
from gaussnll.core.report.quantiles_summary import QuantilesSummaries
from gaussnll.core.report.report import GroupScores, IntervalsSummary, OutputScore, Report
from gaussnll.core.report.samples_summary import SamplesSummaries
from gaussnll.core.report.summary_table import Summaries, SummaryTable
from gaussnll.core.state.bootstrap import BootstrapState
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
    keys = group_keys.key_values()
    order = key_order(keys)
    group_reports = Reports(state, options, by_group=True, order=order, **common)
    groups = GroupScores(keys, group_reports, group_reports.seen(order))
    return replace(report, by=group_keys.columns, groups=groups, groups_total=len(groups))


class Reports(Sequence[Report]):
    """The report of the whole input (one), or of each group, built when indexed from the sums
    read once from the state: 10^5 groups keep columns of numbers, not 10^5 Report objects.
    Their calibration summaries are derived a batch at a time in ``order`` (None: by index),
    the order the reports are read in (see ``BatchedSummaries``).
    ``common`` holds the fields every report shares (path, format, device, seconds)."""

    def __init__(
        self,
        state: ScoreState,
        options: ScoreOptions,
        by_group: bool,
        order: np.ndarray | None = None,
        **common: Any,
    ) -> None:
        totals = state.totals(by_group)
        rows, loss, weight = totals["rows"], totals["loss"], totals["weight"]
        self._outputs = loss.shape[1]
        constant = HALF_LOG_2PI if options.full else 0.0
        # Arrays, read a report at a time: 10^6 groups' numbers as Python lists took 0.4 GB.
        self._sums = (loss + constant * weight.unsqueeze(1)).numpy()
        self._raw_sums = loss.numpy().copy()  # without the constant: the DSS is twice their mean
        self._summaries = BatchedSummaries(state, weight, loss, by_group, options, order)
        self._rows = rows.numpy().copy()
        self._weights = weight.numpy().copy()  # the denominators: a row each when unweighted
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
            else SamplesSummaries(samples, weight, self._outputs, by_group=by_group)
        )
        quantiles = state.group_quantiles if by_group else state.quantiles
        self._quantiles = (
            None if quantiles is None else QuantilesSummaries(quantiles, weight, by_group=by_group)
        )
        bootstrap = None if by_group else state.bootstrap
        self._ci = None if bootstrap is None else _intervals(bootstrap, options)
        self._density = options.quantiles is None  # a quantile model's NLL is null
        self._skipped = totals["skipped"].numpy().copy()
        self._floored = totals["floored"].numpy().copy()
        self._seen = (self._rows > 0) | (self._skipped[:, 0] > 0)
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

    def seen(self, order: np.ndarray) -> np.ndarray:
        """The reports of ``order`` that saw a row, scored or skipped (rows of weight 0 are
        unseen), in that order."""
        return order[self._seen[order]]

    def __getitem__(self, b: int) -> Report:  # type: ignore[override]
        options, outputs = self._options, self._outputs
        n, sums, weight = self._rows[b].item(), self._sums[b].tolist(), self._weights[b].item()
        skipped = self._skipped[b].tolist()
        (calibration, accuracy), each = self._summaries.rows(b)
        total = sum(sums)
        raw = self._raw_sums[b].tolist()
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
            ci=self._ci,
            nan_policy=options.nan_policy,
            skipped_rows=skipped[0],
            skipped_reasons=dict(zip(SKIP_REASONS, skipped[1:], strict=True)),
            eps_floored=self._floored[b].item(),
            dtype=options.dtype,
            chunk_size=options.chunk_size,
            **self._common,
        )


def _intervals(bootstrap: BootstrapState, options: ScoreOptions) -> IntervalsSummary:
    """The whole input's bootstrap intervals."""
    settings, id_column = bootstrap.bootstrap, options.columns.id
    return IntervalsSummary(
        level=settings.level,
        replicates=settings.replicates,
        seed=settings.seed,
        key="values" if id_column is None else f"id column {id_column}",
        levels=list(options.levels),
        **bootstrap.intervals(options.full),
    )


def _ratio(total: float, count: float) -> float:
    return total / count if count else float("nan")


class BatchedSummaries:
    """The calibration and accuracy summaries of each report over all its outputs, and of
    each of its outputs; ``(None, None)`` without calibration. ``weight``: each report's sum of
    row weights (its row count when unweighted).

    Derived ``SUMMARY_BATCH`` reports at a time, the batches cut in ``order`` (None: by
    index), when a report of the batch is first asked for; only the last batch is kept. Read
    in that order (the groups' key order), each batch is derived once and the summaries of
    10^6 groups (a calibration curve each) are never all in memory. Read in another order
    (sorted by a metric), once the batches were derived as many times as there are, every
    batch is kept: each is derived at most once more.
    """

    def __init__(
        self,
        state: ScoreState,
        weight: Tensor,
        loss: Tensor,
        by_group: bool,
        options: ScoreOptions,
        order: np.ndarray | None,
    ) -> None:
        # The scope's accumulators of calibration and accuracy (the mixture, the samples and
        # the quantiles have their own sections).
        own = (MixtureState, SamplesState, QuantileState, BootstrapState)
        self._parts = [p for p in state.scope(by_group) if not isinstance(p, own)]
        self._totals = [part.totals(by_group) for part in self._parts]
        self._weight, self._loss, self._options = weight, loss, options
        reports = loss.shape[0]
        self._order = torch.arange(reports) if order is None else torch.as_tensor(order)
        self._position = torch.empty_like(self._order)
        self._position[self._order] = torch.arange(reports)
        self._batches = -(-reports // SUMMARY_BATCH)
        self._kept: dict[int, tuple[SummaryTable, SummaryTable | None]] = {}
        self._derivations = 0

    def rows(self, index: int) -> tuple[Summaries, list[Summaries]]:
        """Report ``index``'s summaries over all its outputs, and of each output."""
        outputs = self._loss.shape[1]
        if not self._parts:
            return (None, None), [(None, None)] * outputs
        batch, row = divmod(int(self._position[index]), SUMMARY_BATCH)
        if batch not in self._kept:
            if self._derivations < self._batches:  # read in order so far: keep one batch
                self._kept.clear()
            self._derivations += 1
            chosen = self._order[batch * SUMMARY_BATCH : (batch + 1) * SUMMARY_BATCH]
            # Batches are derived when read, after ``Scorer.report`` returned: on one thread
            # here too (10^5 groups' JSON: 31 s on two threads against 2 s on one, loaded).
            with single_threaded_kernels():
                self._kept[batch] = self._derived(chosen)
        overall, per_output = self._kept[batch]
        whole = overall.row(row)
        if per_output is None:  # the output's summaries are the whole report's
            return whole, [whole]
        return whole, [per_output.row(row * outputs + d) for d in range(outputs)]

    def _derived(self, chosen: Tensor) -> tuple[SummaryTable, SummaryTable | None]:
        """The tables of the reports ``chosen``: over all outputs, and per (report, output)
        pair flattened (None with one output)."""
        weight, loss = self._weight[chosen], self._loss[chosen]
        outputs = loss.shape[1]
        sums = [{name: values[chosen] for name, values in each.items()} for each in self._totals]
        overall = self._table(
            [{name: values.sum(dim=1) for name, values in each.items()} for each in sums],
            weight * outputs,
            loss.sum(dim=1),
        )
        if outputs == 1:
            return overall, None
        flat = [{name: values.flatten(0, 1) for name, values in each.items()} for each in sums]
        return overall, self._table(flat, weight.repeat_interleave(outputs), loss.flatten())

    def _table(
        self, sums: list[dict[str, Tensor]], elements: Tensor, loss_sums: Tensor
    ) -> SummaryTable:
        options = self._options
        columns: dict[str, np.ndarray] = {}
        for part, part_sums in zip(self._parts, sums, strict=True):
            if isinstance(part, CalibrationState):
                columns.update(part.summaries(part_sums, elements, loss_sums, options.full))
            else:
                columns.update(uncertainty_summaries(part_sums, options.uncertainty_bins))
        families = frozenset[str]().union(*(part.families for part in self._parts))
        return SummaryTable.of_columns(
            options.levels, options.pit_bins, columns, len(elements), families
        )
