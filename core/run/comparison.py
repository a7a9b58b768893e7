"""``compare``: two models' predictions of the same targets, scored side by side, and the paired
differences of the per-row scores both have (candidate minus baseline: negative means the
candidate is better), each with its standard error and a normal-approximation confidence
interval. The models may be of different input forms (``compare_plan`` says which scores meet).

Everything is a sum over paired rows (one accumulator, a column per paired score), so it
streams and merges like the score state.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from gaussnll.core.errors import InputError, OptionError, UsageError
from gaussnll.core.io.chunks import Chunk
from gaussnll.core.io.devices import resolve_device
from gaussnll.core.io.sources import resolve_source
from gaussnll.core.io.writers import RowWriter
from gaussnll.core.loss import HALF_LOG_2PI
from gaussnll.core.options import DEFAULT_CONFIDENCE, ScoreOptions, with_settings
from gaussnll.core.report.compare_report import CalibrationDeltas, CompareReport, PairedSummary
from gaussnll.core.report.report import Report
from gaussnll.core.run.compare_plan import ComparisonPlan, plan_comparison
from gaussnll.core.run.engine import ProgressCallback, resolve_quantiles
from gaussnll.core.run.paired_rows import side_scores
from gaussnll.core.run.pairing import ChunkPair, pair_by_id, pair_by_order
from gaussnll.core.run.row_keys import row_keys
from gaussnll.core.run.scored import Scored
from gaussnll.core.run.scorer import Scorer
from gaussnll.core.run.validation import raise_on_overflow
from gaussnll.core.state.bootstrap import paired_intervals
from gaussnll.core.state.nonfinite import expand_rows, finite_rows
from gaussnll.core.state.paired import PairedDifferences, PairedTotals
from gaussnll.core.state.sinks import Placement

# Paired targets must agree this closely (a float32 copy of a float64 target does).
TARGET_RTOL, TARGET_ATOL = 1e-6, 1e-9


def compare(
    baseline: str,
    candidate: str,
    options: ScoreOptions | None = None,
    *,
    candidate_options: ScoreOptions | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    rows_to: RowWriter | None = None,
    on_progress: ProgressCallback | None = None,
    **settings: Any,
) -> CompareReport:
    """Score two prediction files of the same targets and the paired differences of the
    per-row scores both models have (``compare_plan``).

    ``options`` (a ScoreOptions) or keyword settings of one, as ``score`` takes them, say how;
    ``candidate_options``, the candidate's where its input form differs (samples, quantiles: the
    same targets, ids, weights and loss options). Rows pair by order, or by
    ``options.columns.id`` when set. ``rows_to`` receives per row each compared score of both
    models and their difference (``nll_baseline``, ``nll_candidate``, ``delta_nll``, ...; means
    over outputs, the NLL with the constant under ``full``).
    """
    options = with_settings(options, settings)
    sides = (options, _candidate_options(options, candidate_options))
    plan = plan_comparison(*sides)
    if not 0 < confidence < 1:
        raise OptionError("confidence", f"must be in (0, 1). Got {confidence!r} instead.")
    started = time.perf_counter()
    sources = (resolve_source(baseline), resolve_source(candidate))
    if sources[0].is_stdin and sources[1].is_stdin:
        raise UsageError("only one of BASELINE and CANDIDATE can be - (stdin)")
    device = resolve_device(options.device)
    if options.columns.by:  # --by x:qK: the bins' edges from the baseline's values
        options = resolve_quantiles(sources[0], options)
        sides = (options, replace(sides[1], intervals=options.intervals))
    # a recalibration map applies to the candidate only
    scorers = (Scorer(replace(options, recalibration=None)), Scorer(sides[1]))
    group_keys = scorers[0].group_keys  # the baseline's: each pair is in its baseline row's group
    scorers[1].group_keys = group_keys
    pair = pair_by_id if options.columns.id else pair_by_order
    pairing = pair(sources, sides, device, group_keys)
    weighted = options.columns.weight is not None
    differences = PairedDifferences(
        device, scores=len(plan.columns), grouped=group_keys is not None, weighted=weighted
    )
    names = (sources[0].name, sources[1].name)
    advice = "; if the rows are in different orders, pair them by --id-col"
    targets = _Agreement(
        device, "target", names, advice=advice if pairing.method == "order" else ""
    )
    weights = _Agreement(device, "weight", names, column=options.columns.weight)
    skipped = paired = 0
    for chunk_pair in pairing.pairs:
        baseline_chunk = chunk_pair[0].ready()
        chunk_pair = (baseline_chunk, replace(chunk_pair[1].ready(), group=baseline_chunk.group))
        paired += chunk_pair[0].length  # rows of weight 0 included: they were read
        _check_weights(weights, scorers, *chunk_pair)
        if options.ci is not None:  # a pair's rows: one bootstrap key, the baseline row's
            key = row_keys(chunk_pair[0])
            chunk_pair = (replace(chunk_pair[0], key=key), replace(chunk_pair[1], key=key))
        kept, skipped_here, chunk_pair = _scored_rows(chunk_pair, sides)
        skipped += skipped_here
        scored = [scorer.add(chunk) for scorer, chunk in zip(scorers, chunk_pair, strict=True)]
        _check_targets(targets, *chunk_pair)
        _check_outputs(scored, chunk_pair[1], plan)
        rows = [
            side_scores(chunk, done, form, plan)
            for chunk, done, form in zip(chunk_pair, scored, plan.forms, strict=True)
        ]
        if group_keys is not None:
            differences.reserve(len(group_keys.keys))
        at = Placement(chunk_pair[0].group, chunk_pair[0].weight)
        differences.update(rows[0], rows[1], at)
        if rows_to is not None:
            rows_to.write(_row_batch(rows, kept, chunk_pair[0].ids, options, plan))
        if on_progress is not None:
            on_progress(paired, None, None, None)
    if differences.rows == 0:
        reason = "no id appears in both files" if pairing.method == "id" else "no data rows"
        if options.columns.weight is not None:
            reason += ", or every paired row has weight 0"
        raise InputError(reason, path=candidate)
    targets.verify()
    if pairing.scales is not None:
        scorers[1].unseen_rows = pairing.scales.unseen_rows
    reports = [
        scorer.report(source.name, source.format.value)
        for scorer, source in zip(scorers, sources, strict=True)
    ]
    weights.verify()  # after the reports, which refuse a bad weight first (on a GPU)
    if reports[1].ci is not None and pairing.method == "order":  # keyed by the baseline's rows
        reports[1] = replace(reports[1], ci=replace(reports[1].ci, key="baseline values"))
    seconds = time.perf_counter() - started
    (totals,) = differences.totals()
    # the sums each paired statistic stands on (Σw is the reports' weight_sum, checked)
    raise_on_overflow(
        {
            f"delta_{score}{part}": getattr(sums, field)
            for score, sums in zip(plan.scores, totals, strict=False)
            for part, field in (("", "total"), ("_std", "squares"))
        },
        options,
        candidate,
    )

    def summary(sums: list[PairedTotals]) -> PairedSummary:
        return PairedSummary.from_totals(
            sums,
            confidence,
            weighted=weighted,
            compared=plan.scores,
            not_compared=plan.not_compared,
            quantile_levels=None if plan.levels is None else plan.levels.levels,
        )

    whole = CompareReport(
        baseline=_ungrouped(reports[0], seconds),
        candidate=_ungrouped(reports[1], seconds),
        paired=summary(totals),
        unmatched_baseline=pairing.unmatched[0],
        unmatched_candidate=pairing.unmatched[1],
        skipped_rows=skipped,
        pairing=pairing.method,
        id_column=options.columns.id,
        seconds=seconds,
        calibration_ci=_calibration_deltas(scorers, reports, options.full),
    )
    if group_keys is None:
        return whole
    by_group = differences.totals(by_group=True)
    groups = [
        replace(
            whole,
            baseline=base.report,
            candidate=cand.report,
            paired=summary(by_group[base.index]),
            unmatched_baseline=0,
            unmatched_candidate=0,
            skipped_rows=0,  # skipped pairs are counted for the whole comparison only
            calibration_ci=None,  # the whole comparison's only
        )
        for base, cand in zip(reports[0].groups, reports[1].groups, strict=True)
    ]
    keys = [group.key for group in reports[0].groups]
    return whole.with_groups(options.columns.by, keys, groups)


def _calibration_deltas(
    scorers: tuple[Scorer, Scorer], reports: list[Report], full: bool
) -> CalibrationDeltas | None:
    """``candidate - baseline`` of MACE, one-sided MACE and the coverage at each level with
    their bootstrap intervals (None without ``--ci``, or when a model has no replicates)."""
    states = [None if scorer.state is None else scorer.state.bootstrap for scorer in scorers]
    if states[0] is None or states[1] is None:
        return None
    names = ("mace", "quantile_mace", "coverage")
    values = paired_intervals(states[0], states[1], names, full)
    for name in names:
        sides = [getattr(report.calibration, name, None) for report in reports]
        if sides[0] is None or sides[1] is None:
            continue
        if name == "coverage":
            values["delta_coverage"] = [cand - base for base, cand in zip(*sides, strict=True)]
        else:
            values[f"delta_{name}"] = sides[1] - sides[0]
    return CalibrationDeltas(levels=list(states[0].levels), **values)


def _candidate_options(options: ScoreOptions, given: ScoreOptions | None) -> ScoreOptions:
    """The candidate's options: ``options`` unless it is a model of another form, whose
    options then agree with the baseline's on everything but its model's columns and form."""
    if given is None:
        return options
    shared = ("eps", "full", "nan_policy", "dtype", "device", "chunk_size", "delimiter")
    roles = ("target", "id", "weight", "by")
    differ = [name for name in shared if getattr(given, name) != getattr(options, name)]
    differ += [
        f"columns.{r}" for r in roles if getattr(given.columns, r) != getattr(options.columns, r)
    ]
    if differ:
        raise OptionError(
            "candidate_options",
            f"must agree with the baseline's options but for the model's columns and form; "
            f"{', '.join(differ)} differ.",
        )
    return given


def _check_outputs(scored: list[Scored], candidate: Chunk, plan: ComparisonPlan) -> None:
    """Both models predict the same outputs per row (a quantile model: one)."""
    widths = [done.loss.shape[1] for done in scored]
    if plan.levels is None and widths[0] != widths[1]:
        raise InputError(
            f"has {widths[1]} outputs per row and the baseline {widths[0]}; both models must "
            "predict the same outputs",
            path=candidate.where.path,
        )


def _ungrouped(report: Report, seconds: float) -> Report:
    """A model's report of the whole input (its groups are the comparison's)."""
    return replace(report, seconds=seconds, by=(), groups=(), groups_total=0)


def _scored_rows(
    pair: ChunkPair, sides: tuple[ScoreOptions, ScoreOptions]
) -> tuple[Tensor | None, int, ChunkPair]:
    """The rows to score (None: all of them), how many were skipped, and the pair of those rows.

    Rows of weight 0 are left out (as if absent: not counted as skipped); under
    ``--nan-policy skip``, so are the rows not finite in both files. The weights of both files
    decide: on a GPU, weights that differ are only refused at the end, and the rows left in
    must stay paired meanwhile."""
    kept = None
    if pair[0].weight is not None and pair[1].weight is not None:
        kept = ((pair[0].weight > 0) & (pair[1].weight > 0)).squeeze(1)
    skipped = 0
    if sides[0].nan_policy == "skip":
        masks = [
            finite_rows(chunk.mean, chunk.target, chunk.variance(side.columns.spread_kind))[0]
            for chunk, side in zip(pair, sides, strict=True)
        ]
        finite = masks[0] & masks[1]
        skipped = int((~finite if kept is None else kept & ~finite).sum())
        kept = finite if kept is None else kept & finite
    if kept is None or bool(kept.all()):
        return None, skipped, pair
    offsets = kept.nonzero().squeeze(1).cpu().numpy()
    left, right = (replace(c.rows(kept), where=c.where.subset(offsets)) for c in pair)
    return kept, skipped, (left, right)


class _Agreement:
    """Paired rows must hold the same ``what`` (a role read from both files, e.g. the target).
    On the CPU the first difference is reported at once; on a GPU a device flag collects it and
    is read once at the end."""

    def __init__(
        self,
        device: torch.device,
        what: str,
        names: tuple[str, str],
        *,
        column: str | None = None,
        advice: str = "",
    ) -> None:
        self._deferred = device.type != "cpu"
        self._flag = torch.zeros((), dtype=torch.bool, device=device)
        self._what, self._names, self._column, self._advice = what, names, column, advice

    def check(
        self, left: Tensor, right: Tensor, differ: Tensor, baseline: Chunk, candidate: Chunk
    ) -> None:
        """``left`` and ``right``: the role's values of the pair's rows, ``(rows, width)``;
        ``differ``: where they count as different."""
        if self._deferred:
            self._flag |= differ.any()
            return
        hits = differ.nonzero()
        if len(hits):
            row, column = (int(i) for i in hits[0])
            what = self._what
            raise InputError(
                f"the {what} is {right[row, column].item()!r} here and "
                f"{left[row, column].item()!r} in {self._names[0]} "
                f"(row {baseline.where.row(row)}); both files must hold the same {what}s"
                + self._advice,
                path=self._names[1],
                column=self._column,
                row=candidate.where.row(row),
            )

    def verify(self) -> None:
        if bool(self._flag):
            raise InputError(
                f"paired rows have different {self._what}s; rerun with --device cpu to find the "
                "first" + self._advice,
                path=self._names[1],
                column=self._column,
            )


def _check_targets(targets: _Agreement, baseline: Chunk, candidate: Chunk) -> None:
    """The pair's targets agree to ``TARGET_RTOL`` (a float32 copy of a float64 target does)."""
    left, right = torch.broadcast_tensors(baseline.target, candidate.target)
    differ = ~torch.isclose(left, right, rtol=TARGET_RTOL, atol=TARGET_ATOL, equal_nan=True)
    targets.check(left, right, differ, baseline, candidate)


def _check_weights(
    weights: _Agreement, scorers: tuple[Scorer, Scorer], baseline: Chunk, candidate: Chunk
) -> None:
    """Each file's weights are valid (refused by its scorer, with its row) and both files'
    are equal."""
    if baseline.weight is None or candidate.weight is None:
        return
    for scorer, chunk in zip(scorers, (baseline, candidate), strict=True):
        scorer.check_weights(chunk)
    left, right = baseline.weight, candidate.weight
    # NaN in both is the same weight here: the scorers refuse it (on a GPU, at the end)
    differ = (left != right) & ~(left.isnan() & right.isnan())
    weights.check(left, right, differ, baseline, candidate)


def _row_batch(
    rows: list[Tensor],
    kept: Tensor | None,
    ids: pa.Array | None,
    options: ScoreOptions,
    plan: ComparisonPlan,
) -> pa.RecordBatch:
    """Each compared score of each model (the NLL with the constant under ``full``) and
    their difference, per row: ``<score>_baseline``, ``<score>_candidate``, ``delta_<score>``."""
    constant = HALF_LOG_2PI if options.full else 0.0
    columns, names = [], []
    for k, score in enumerate(plan.scores):
        shift = constant if score == "nll" else 0.0
        columns += [rows[0][:, k] + shift, rows[1][:, k] + shift, rows[1][:, k] - rows[0][:, k]]
        names += [f"{score}_baseline", f"{score}_candidate", f"delta_{score}"]
    values = torch.stack(columns, dim=1)
    if kept is not None:
        values = expand_rows(values, kept, float("nan"))
    array = values.cpu().numpy()
    skipped = None if kept is None else (~kept).cpu().numpy()
    arrays = [pa.array(np.ascontiguousarray(array[:, j]), mask=skipped) for j in range(len(names))]
    if ids is not None and options.columns.id is not None:
        arrays.insert(0, ids)
        names.insert(0, options.columns.id)
    return pa.RecordBatch.from_arrays(arrays, names=names)
