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
from gaussnll.core.report.fields import PerReport, Shared, json_columns, json_fields
from gaussnll.core.report.quantiles_summary import QuantilesSummaries
from gaussnll.core.report.report import (
    SCORE_METRICS,
    GroupScores,
    IntervalsSummary,
    OutputScore,
    Report,
    reduced,
)
from gaussnll.core.report.samples_summary import SamplesSummaries
from gaussnll.core.report.summary_table import Summaries, SummaryColumns, SummaryTable
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
        # Arrays, read a report (or a batch of them) at a time: 10^6 groups' numbers as
        # Python lists took 0.4 GB.
        sums = (loss + constant * weight.unsqueeze(1)).numpy()
        raw = loss.numpy()  # without the constant: the DSS is twice their mean
        self._summaries = BatchedSummaries(state, weight, loss, by_group, options, order)
        self._rows = rows.numpy().copy()
        self._weights = weight.numpy().copy()  # the denominators: a row each when unweighted
        count = self._weights * self._outputs
        total = _summed(sums)
        self._nll = {  # the NLL of all outputs, and of each (a column each)
            "nll_mean": _ratios(total, count),
            "nll_sum": total,
            "dss": 2 * _ratios(_summed(raw), count),
        }
        self._output_nll = {
            "nll_mean": _ratios(sums, self._weights[:, None]),
            "nll_sum": sums,
            "dss": 2 * _ratios(raw, self._weights[:, None]),
        }
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
        options = self._options
        (calibration, accuracy), each = self._summaries.rows(b)
        return Report(
            **self._own(b),
            reduction=options.reduction,
            full=options.full,
            eps=options.eps,
            outputs=tuple(
                OutputScore(**own, calibration=output_calibration, accuracy=output_accuracy)
                for own, (output_calibration, output_accuracy) in zip(
                    self._outputs_own(b), each, strict=True
                )
            ),
            calibration=calibration,
            accuracy=accuracy,
            ensemble=None if self._ensemble is None else self._ensemble[b],
            samples=None if self._samples is None else self._samples[b],
            quantiles=None if self._quantiles is None else self._quantiles[b],
            ci=self._ci,
            nan_policy=options.nan_policy,
            dtype=options.dtype,
            chunk_size=options.chunk_size,
            **self._common,
        )

    def metric_column(self, metric: str, order: np.ndarray) -> np.ndarray | None:
        """The value of ``metric`` for each report of ``order`` (NaN: null), from their
        entries' columns a batch at a time, without a Report each (10^5 groups sorted by a
        metric built 10^5 Reports); None where the columns cannot say (``column``)."""
        entry = SCORE_METRICS.find(metric)
        sections = entry is None or entry.section is not None  # nll, rows: no summaries
        parts = []
        for start in range(0, len(order), SUMMARY_BATCH):
            chosen = order[start : start + SUMMARY_BATCH]
            columns = self.entry_columns(chosen.tolist(), sections=sections)
            part = SCORE_METRICS.column(columns, metric, len(chosen))
            if part is None:
                return None
            parts.append(part)
        return np.concatenate(parts) if parts else np.empty(0)

    def entry_columns(self, indices: Sequence[int], sections: bool = True) -> dict[str, Any]:
        """The group entries (``Report.group_entry``) of reports ``indices`` by column
        (``json_columns``), holding the numbers ``self[b]`` holds, without a Report each
        (``sections`` False: their own numbers only, the sections null: none derived)."""
        at = np.asarray(indices, dtype=np.int64)
        own = self._own(at)
        (calibration, accuracy), each = (
            self._summaries.columns(indices) if sections else _no_summaries(self._outputs)
        )
        fields = {
            **own,
            "nll": reduced(self._options.reduction, own["nll_mean"], own["nll_sum"]),
            "calibration": calibration,
            "accuracy": accuracy,
            "ensemble": _each(self._ensemble, indices) if sections else None,
            "samples": _each(self._samples, indices) if sections else None,
            "quantiles": _each(self._quantiles, indices) if sections else None,
        }
        entry = json_columns(Report, _as_columns(fields), groups_only=True)
        if self._outputs > 1:
            entry["outputs"] = [
                json_columns(
                    OutputScore,
                    _as_columns(
                        {**output, "calibration": output_calibration, "accuracy": output_accuracy}
                    ),
                )
                for output, (output_calibration, output_accuracy) in zip(
                    self._outputs_own(at), each, strict=True
                )
            ]
        return entry

    def _own(self, at: int | np.ndarray) -> dict[str, Any]:
        """Report ``at``'s own fields (its sections and outputs apart) by name; given an
        array of reports, a list of their values a field."""
        rows = self._rows[at]
        nll = self._density  # a quantile model's NLL is null
        return {
            "rows": rows.tolist(),
            "elements": (rows * self._outputs).tolist(),
            "weight_sum": self._weights[at].tolist() if self._weighted else None,
            **{name: column[at].tolist() if nll else None for name, column in self._nll.items()},
            "skipped_rows": self._skipped[at, 0].tolist(),
            "skipped_reasons": {
                reason: self._skipped[at, k].tolist()
                for k, reason in enumerate(SKIP_REASONS, start=1)
            },
            "eps_floored": self._floored[at].tolist(),
        }

    def _outputs_own(self, at: int | np.ndarray) -> list[dict[str, Any]]:
        """The own fields of each output of report ``at`` (or of an array of reports)."""
        rows, nll = self._rows[at].tolist(), self._density
        return [
            {
                "column": name,
                "elements": rows,
                **{
                    field: column[at, d].tolist() if nll else None
                    for field, column in self._output_nll.items()
                },
            }
            for d, name in enumerate(self._names)
        ]


def _no_summaries(outputs: int) -> tuple[SummaryColumns, list[SummaryColumns]]:
    """``BatchedSummaries.columns`` without calibration: null sections, and for each output."""
    return (None, None), [(None, None)] * outputs


def _summed(sums: np.ndarray) -> np.ndarray:
    """Each row's sum over the outputs, added in order from 0 as ``sum`` adds a list."""
    total = np.zeros(len(sums))
    for d in range(sums.shape[1]):
        total = total + sums[:, d]
    return total


def _ratios(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``total / count``, NaN where ``count`` is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count != 0, total / count, np.nan)


def _as_columns(fields: Any) -> Any:
    """The fields of a batch of reports (lists of their values, values they share, sections
    of columns) as ``json_columns`` takes them: a list as ``PerReport``, a dict field by
    field, any other value as ``Shared``."""
    if isinstance(fields, dict):
        return {name: _as_columns(value) for name, value in fields.items()}
    if isinstance(fields, PerReport | Shared):
        return fields
    return PerReport(fields) if isinstance(fields, list) else Shared(fields)


def _each(summaries: Any, indices: Sequence[int]) -> list[dict[str, Any]] | None:
    """The section of reports ``indices`` from ``summaries`` (None: not computed), each
    report's as ``json_fields`` writes it."""
    if summaries is None:
        return None
    return [json_fields(summaries[b]) for b in indices]


def _output_rows(rows: np.ndarray, outputs: int) -> np.ndarray:
    """The rows of a per-output table (a report's outputs side by side) of reports ``rows``."""
    return (rows[:, None] * outputs + np.arange(outputs)).ravel()


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
        overall, per_output = self._batch(batch)
        whole = overall.row(row)
        if per_output is None:  # the output's summaries are the whole report's
            return whole, [whole]
        return whole, [per_output.row(row * outputs + d) for d in range(outputs)]

    def columns(self, indices: Sequence[int]) -> tuple[SummaryColumns, list[SummaryColumns]]:
        """The summaries of reports ``indices`` by column (``SummaryTable.columns``), over
        all their outputs and of each output: the numbers ``rows`` gives."""
        outputs = self._loss.shape[1]
        if not self._parts:
            return _no_summaries(outputs)
        positions = self._position[torch.tensor(indices, dtype=torch.int64)].numpy()
        batches, rows = np.divmod(positions, SUMMARY_BATCH)
        overall, per_output, places = [], [], []
        for batch in dict.fromkeys(batches.tolist()):  # each batch once, in the order read
            chosen = np.flatnonzero(batches == batch)
            whole, each = self._batch(batch)
            overall.append((whole, rows[chosen]))
            if each is not None:
                per_output.append((each, _output_rows(rows[chosen], outputs)))
            places.append(chosen)
        order = np.argsort(np.concatenate(places))  # back to the order of ``indices``
        whole_columns = SummaryTable.gathered(overall).columns(order)
        if not per_output:  # one output: its summaries are the whole report's
            return whole_columns, [whole_columns]
        flat = SummaryTable.gathered(per_output)
        return whole_columns, [
            flat.columns(_output_rows(order, outputs)[d::outputs]) for d in range(outputs)
        ]

    def _batch(self, batch: int) -> tuple[SummaryTable, SummaryTable | None]:
        """The tables of batch ``batch``, derived when first asked for (see the class)."""
        if batch not in self._kept:
            if self._derivations < self._batches:  # read in order so far: keep one batch
                self._kept.clear()
            self._derivations += 1
            chosen = self._order[batch * SUMMARY_BATCH : (batch + 1) * SUMMARY_BATCH]
            # Batches are derived when read, after ``Scorer.report`` returned: on one thread
            # here too (10^5 groups' JSON: 31 s on two threads against 2 s on one, loaded).
            with single_threaded_kernels():
                self._kept[batch] = self._derived(chosen)
        return self._kept[batch]

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
