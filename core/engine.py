"""The streaming scorer: file → chunks → device → element-wise loss → sum-only state → Report."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from gaussnll.core.columns import ColumnSpec, Spread
from gaussnll.core.defaults import DEFAULT_CHUNK_ROWS, DEFAULT_EPS, DEFAULT_LEVELS, DEFAULT_PIT_BINS
from gaussnll.core.devices import resolve_device
from gaussnll.core.errors import InputError, NegativeSpreadError, UsageError
from gaussnll.core.loss import HALF_LOG_2PI, REDUCTIONS, elementwise_nll
from gaussnll.core.nonfinite import NAN_POLICIES, SKIP_REASONS, expand_rows, finite_rows
from gaussnll.core.prefetch import prefetched
from gaussnll.core.readers import ReadRequest, count_rows, iter_batches
from gaussnll.core.report import AccuracySummary, CalibrationSummary, OutputScore, Report
from gaussnll.core.sources import Source, resolve_source
from gaussnll.core.state import ScoreState
from gaussnll.core.tensors import Conversion, Location
from gaussnll.core.validation import column_label, raise_first_problem
from gaussnll.core.writers import RowWriter

MAX_PIT_BINS = 1000
DTYPES = {"float64": torch.float64, "float32": torch.float32}
ProgressCallback = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class ScoreOptions:
    """How to score: the columns, torch's loss options, and how to stream."""

    columns: ColumnSpec = field(default_factory=ColumnSpec)
    full: bool = False
    eps: float = DEFAULT_EPS
    reduction: str = "mean"
    chunk_size: int = DEFAULT_CHUNK_ROWS
    device: str = "auto"
    dtype: str = "float64"
    nan_policy: str = "error"
    delimiter: str = ","
    calibration: bool = True
    levels: tuple[float, ...] = DEFAULT_LEVELS
    pit_bins: int = DEFAULT_PIT_BINS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise UsageError(f"--eps must be a finite number >= 0. Got {self.eps!r} instead.")
        if self.reduction not in REDUCTIONS:
            raise UsageError(f"--reduction must be mean, sum or none. Got {self.reduction!r}.")
        if self.chunk_size < 1:
            raise UsageError(f"--chunk-size must be at least 1. Got {self.chunk_size} instead.")
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype must be float64 or float32. Got {self.dtype!r} instead.")
        if len(self.delimiter) != 1 or self.delimiter in '\r\n"':
            raise UsageError(f"--delimiter must be one character. Got {self.delimiter!r} instead.")
        if self.nan_policy not in NAN_POLICIES:
            raise UsageError(
                f"--nan-policy must be error, skip or propagate. Got {self.nan_policy!r} instead."
            )
        if not self.levels or not all(0 < level < 1 for level in self.levels):
            raise UsageError(
                f"--levels must be numbers in (0, 1). Got {list(self.levels)} instead."
            )
        if not 1 <= self.pit_bins <= MAX_PIT_BINS:
            raise UsageError(
                f"--pit-bins must be between 1 and {MAX_PIT_BINS}. Got {self.pit_bins} instead."
            )


@dataclass(frozen=True)
class _Chunk:
    """One batch on the device: the roles as ``(rows, width)`` tensors, and where it came from."""

    mean: Tensor
    target: Tensor
    spread: Tensor
    ids: pa.Array | None
    where: Location

    def rows(self, kept: Tensor) -> _Chunk:
        """The chunk with only the ``kept`` rows (ids and location stay the file's)."""
        return replace(
            self, mean=self.mean[kept], target=self.target[kept], spread=self.spread[kept]
        )


def score(
    path: str,
    options: ScoreOptions = ScoreOptions(),
    *,
    rows_to: RowWriter | None = None,
    on_progress: ProgressCallback | None = None,
) -> Report:
    """Stream ``path`` through the Gaussian NLL and return the report.

    ``rows_to`` receives the per-row losses (with the ``full`` constant when set) as record
    batches; ``on_progress(rows_done, total_rows_or_None)`` is called after every chunk.
    """
    started = time.perf_counter()
    source = resolve_source(path)
    device = resolve_device(options.device)
    spec = options.columns
    total_rows = count_rows(source)
    state: ScoreState | None = None
    levels = options.levels if options.calibration else None
    validity = _Validity(device)
    chunks = prefetched(_chunks(source, spec, options, device))
    for chunk in chunks:
        if state is None:
            state = ScoreState(
                chunk.mean.shape[1], device, levels=levels, pit_bins=options.pit_bins
            )
        _check_widths(chunk, spec, state.outputs)
        var = _variance(chunk.spread, spec.spread_kind)
        scored, scored_var, kept = chunk, var, None
        if options.nan_policy == "skip":
            kept, reasons = finite_rows(chunk.mean, chunk.target, var)
            state.count_skipped(kept, reasons)
            if bool(kept.all()):
                kept = None
            else:
                scored, scored_var = chunk.rows(kept), var[kept]
        state.count_floored(scored_var, options.eps)
        floored = scored_var.clamp(min=options.eps)
        loss = elementwise_nll(scored.mean, scored.target, floored)
        chunk_sums = state.update(loss, scored.mean, scored.target, floored)
        if validity.bad_here(scored, spec, chunk_sums, options.nan_policy):
            aligned = loss if kept is None else expand_rows(loss, kept, 0.0)
            try:
                _explain(chunk, spec, var, aligned, options.nan_policy)
            except NegativeSpreadError as first:
                raise _with_negative_count(first, [chunk], chunks) from None
        if rows_to is not None:
            rows_to.write(_row_batch(loss, options.full, spec, chunk.ids, kept))
        if on_progress is not None:
            on_progress(state.rows, total_rows)
    if state is None:
        raise InputError("no data rows", path=source.name)
    if state.rows == 0:
        raise InputError("every row has a NaN or infinite value: nothing to score", path=path)
    if validity.failed():
        _locate_invalid_value(source, path, options)
    return _report(state, path, source.format.value, options, device, started)


class _Validity:
    """Is every chunk valid? On the CPU a bad chunk is reported at once; on a GPU a device flag
    collects the verdicts and is read once at the end, so the pass never synchronises."""

    def __init__(self, device: torch.device) -> None:
        self._deferred = device.type != "cpu"
        self._flag = torch.zeros((), dtype=torch.bool, device=device)

    def bad_here(self, chunk: _Chunk, spec: ColumnSpec, loss_sums: Tensor, policy: str) -> bool:
        """True when this chunk is invalid and must be explained now (CPU only).

        A negative spread is always invalid (torch raises); a non-finite loss unless the
        policy is ``propagate``.
        """
        bad = torch.zeros((), dtype=torch.bool, device=loss_sums.device)
        if policy != "propagate":
            bad |= ~torch.isfinite(loss_sums).all()
        if spec.spread_kind is not Spread.LOG_VAR:
            bad |= (chunk.spread < 0).any()
        if self._deferred:
            self._flag |= bad
            return False
        return bool(bad)

    def failed(self) -> bool:
        return bool(self._flag)


def _explain(chunk: _Chunk, spec: ColumnSpec, var: Tensor, loss: Tensor, policy: str) -> None:
    roles = [(chunk.mean, spec.mean), (chunk.target, spec.target), (chunk.spread, spec.spread)]
    raise_first_problem(roles, spec.spread_kind, var, loss, chunk.where, policy)


def _with_negative_count(
    first: NegativeSpreadError, seen: list[_Chunk], rest: Iterator[_Chunk]
) -> NegativeSpreadError:
    """The first negative spread, with how many the whole input holds (read to the end)."""
    total = sum(int((chunk.spread < 0).sum()) for chunk in seen)
    bound = "in all"
    try:
        for chunk in rest:
            total += int((chunk.spread < 0).sum())
    except InputError:
        bound = "at least, before another error"
    noun = "value" if total == 1 else "values"
    return NegativeSpreadError(
        f"{first.detail} ({total:,} negative {noun} {bound})",
        path=first.path,
        column=first.column,
        row=first.row,
    )


def _locate_invalid_value(source: Source, path: str, options: ScoreOptions) -> None:
    """After a GPU pass found a bad chunk: find and raise the first bad row with a CPU pass."""
    if source.is_stdin:
        raise InputError(
            "holds a negative spread, a NaN or an infinity; stdin cannot be read again to find "
            "the row: rerun with --device cpu",
            path=source.name,
        )
    score(path, replace(options, device="cpu", calibration=False))
    raise InputError("invalid values found on the device but not on the CPU", path=path)


def _chunks(
    source: Source, spec: ColumnSpec, options: ScoreOptions, device: torch.device
) -> Iterator[_Chunk]:
    dtype = DTYPES[options.dtype]
    current_path, first_row = None, 1
    request = ReadRequest(spec.needed, spec.numeric, options.chunk_size, options.delimiter)
    for path, batch in iter_batches(source, request):
        if path != current_path:
            current_path, first_row = path, 1
        where = Location(path, first_row)
        convert = Conversion(dtype, where, nulls_as_nan=options.nan_policy != "error")
        first_row += batch.num_rows
        yield _Chunk(
            mean=convert.role(batch, spec.mean).to(device, non_blocking=True),
            target=convert.role(batch, spec.target).to(device, non_blocking=True),
            spread=convert.role(batch, spec.spread).to(device, non_blocking=True),
            ids=batch.column(spec.id) if spec.id else None,
            where=where,
        )


def _check_widths(chunk: _Chunk, spec: ColumnSpec, outputs: int) -> None:
    """Mean fixes the width D; target and spread must have width D or 1 (broadcast)."""
    for role, names, values in (
        ("mean", spec.mean, chunk.mean),
        ("target", spec.target, chunk.target),
        ("spread", spec.spread, chunk.spread),
    ):
        width = values.shape[1]
        allowed = (outputs,) if role == "mean" else (outputs, 1)
        if width not in allowed:
            raise InputError(
                f"{role} has {width} values per row; expected "
                + " or ".join(str(n) for n in dict.fromkeys(allowed))
                + f" to match the mean's {outputs}",
                path=chunk.where.path,
                column=",".join(names),
                row=chunk.where.first_row,
            )


def _variance(spread: Tensor, kind: Spread) -> Tensor:
    if kind is Spread.STD:
        return spread * spread
    if kind is Spread.LOG_VAR:
        return torch.exp(spread)
    return spread


def _row_batch(
    loss: Tensor, full: bool, spec: ColumnSpec, ids: pa.Array | None, kept: Tensor | None
) -> pa.RecordBatch:
    """Per-row losses of one chunk; rows skipped for non-finite values get nulls."""
    values = loss + HALF_LOG_2PI if full else loss
    skipped = None
    if kept is not None:
        values = expand_rows(values, kept, float("nan"))
        skipped = (~kept).cpu().numpy()
    values = values.cpu().numpy()
    names = output_names(spec, values.shape[1])
    columns = [
        pa.array(np.ascontiguousarray(values[:, j]), mask=skipped) for j in range(values.shape[1])
    ]
    labels = ["nll"] if len(names) == 1 else [f"nll_{name}" for name in names]
    if ids is not None:
        columns.insert(0, ids)
        labels.insert(0, spec.id)
    return pa.RecordBatch.from_arrays(columns, names=labels)


def output_names(spec: ColumnSpec, width: int) -> list[str]:
    """One name per output: the mean columns, or ``name[i]`` inside a list column."""
    return [column_label(spec.mean, j, width) for j in range(width)]


def _report(
    state: ScoreState,
    path: str,
    file_format: str,
    options: ScoreOptions,
    device: torch.device,
    started: float,
) -> Report:
    constant = HALF_LOG_2PI if options.full else 0.0
    loss_sums = state.loss_sums()
    sums = [total + constant * state.rows for total in loss_sums]
    names = output_names(options.columns, state.outputs)
    elements = state.rows * state.outputs
    spec = options.columns
    overall, per_output = _calibration_summaries(state, loss_sums, options.full)
    return Report(
        path=path,
        format=file_format,
        rows=state.rows,
        elements=elements,
        reduction=options.reduction,
        full=options.full,
        eps=options.eps,
        nll_mean=sum(sums) / elements,
        nll_sum=sum(sums),
        outputs=tuple(
            OutputScore(name, state.rows, total / state.rows, total, *summaries)
            for name, total, summaries in zip(names, sums, per_output, strict=True)
        ),
        calibration=overall[0],
        accuracy=overall[1],
        nan_policy=options.nan_policy,
        skipped_rows=int(state.skipped_rows),
        skipped_reasons=dict(zip(SKIP_REASONS, state.skipped_reasons.tolist(), strict=True)),
        eps_floored=int(state.eps_floored),
        device=str(device),
        dtype=options.dtype,
        chunk_size=options.chunk_size,
        seconds=time.perf_counter() - started,
        columns={
            "mean": list(spec.mean),
            "target": list(spec.target),
            spec.spread_kind.value: list(spec.spread),
            "id": spec.id,
        },
    )


def _calibration_summaries(
    state: ScoreState, loss_sums: list[float], full: bool
) -> tuple[Summaries, list[Summaries]]:
    """Calibration and accuracy over all elements and per output column; None without."""
    if state.calibration is None:
        return (None, None), [(None, None)] * state.outputs
    return state.calibration.summaries(state.rows, loss_sums, full)


Summaries = tuple["CalibrationSummary | None", "AccuracySummary | None"]
