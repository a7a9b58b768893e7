"""The file engine: files → record batches → chunks on the device → Scorer → Report.

Reading runs one chunk ahead on a background thread; per-row losses stream to a writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pyarrow as pa
from torch import Tensor

from gaussnll.core.errors import InputError, NegativeSpreadError, UsageError
from gaussnll.core.io.chunks import Chunk, to_chunks
from gaussnll.core.io.prefetch import prefetched
from gaussnll.core.io.readers import (
    ReadProgress,
    ReadRequest,
    count_rows,
    iter_batches,
    read_progress,
    scoring_request,
)
from gaussnll.core.io.scales import ScaleLookup
from gaussnll.core.io.sources import FileFormat, Source, resolve_source
from gaussnll.core.io.writers import RowWriter
from gaussnll.core.options import ScoreOptions
from gaussnll.core.report.report import Report
from gaussnll.core.run.intervals import needs_quantiles, with_quantile_edges
from gaussnll.core.run.merging import save_state
from gaussnll.core.run.scored import Scored
from gaussnll.core.run.scorer import Scorer
from gaussnll.core.run.state_document import identified
from gaussnll.core.run.workers import ScorerPool, auto_workers

ProgressCallback = Callable[[int, "int | None", "int | None", "int | None"], None]
"""``on_progress(rows_done, total_rows, bytes_read, bytes_total)``: each None where unknown.
CSV files do not record their rows; their bytes tell how far the reading is."""


def score_path(
    path: str,
    options: ScoreOptions | None = None,
    *,
    rows_to: RowWriter | None = None,
    on_progress: ProgressCallback | None = None,
    state_to: str | None = None,
    state_format: str | None = None,
) -> Report:
    """Stream ``path`` through the Gaussian NLL and return the report.

    ``rows_to`` receives the per-row losses (with the ``full`` constant when set) as record
    batches; ``on_progress`` (``ProgressCallback``) is called after every chunk.
    """
    return score_source(
        resolve_source(path),
        options or ScoreOptions(),
        label=path,
        rows_to=rows_to,
        on_progress=on_progress,
        state_to=state_to,
        state_format=state_format,
    )


def score_source(
    source: Source,
    options: ScoreOptions,
    *,
    label: str,
    rows_to: RowWriter | None = None,
    on_progress: ProgressCallback | None = None,
    state_to: str | None = None,
    state_format: str | None = None,
) -> Report:
    """``score_path`` of resolved files (one path's, or several paths' together), the report
    named ``label``."""
    options = resolve_quantiles(source, options)
    progress = read_progress(source)
    return score_batches(
        iter_batches(source, scoring_request(source, options), progress),
        options,
        label=label,
        file_format=source.format.value,
        total_rows=count_rows(source),
        rows_to=rows_to,
        on_progress=on_progress,
        read=progress,
        relocate=lambda: _locate_invalid_value(source, label, options),
        state_to=state_to,
        state_format=state_format,
    )


def resolve_quantiles(source: Source, options: ScoreOptions) -> ScoreOptions:
    """``options`` with quantile bins turned into edges, from a first pass over their columns."""
    names = needs_quantiles(options)
    if not names:
        return options
    if source.is_stdin:
        raise UsageError("quantile bins read the input twice, which stdin cannot be: give edges")
    weight = (options.columns.weight,) if options.columns.weight else ()
    columns = tuple(dict.fromkeys((*names, *weight)))  # the weight may be binned too
    request = ReadRequest(columns, weight, options.chunk_size, options.delimiter)
    return with_quantile_edges(options, iter_batches(source, request))


def score_batches(
    batches: Iterator[tuple[str, pa.RecordBatch]],
    options: ScoreOptions,
    *,
    label: str,
    file_format: str,
    total_rows: int | None = None,
    rows_to: RowWriter | None = None,
    on_progress: ProgressCallback | None = None,
    relocate: Callable[[], None] | None = None,
    read: ReadProgress | None = None,
    state_to: str | None = None,
    state_format: str | None = None,
) -> Report:
    """Score ``(source name, record batch)`` pairs holding the options' columns.

    ``read``: the reader's byte counter, passed on to ``on_progress`` where it has a total.
    ``relocate`` is called when a GPU pass found an invalid chunk, to raise the precise error;
    ``state_to`` names a state file to write, as ``state_format`` (``merging.save_state``).
    """
    started = time.perf_counter()
    scales = None if options.recalibration is None else ScaleLookup(options.recalibration)
    scorer = accumulate(
        batches,
        options,
        file_format,
        total_rows=total_rows,
        rows_to=rows_to,
        on_progress=on_progress,
        read=read,
        scales=scales,
    )
    if scorer.failed() and relocate is not None:
        relocate()
    # an empty shard leaves its (empty) state, for a merge of every shard
    report = scorer.report(label, file_format, allow_empty=state_to is not None)
    if state_to is not None:
        save_state(identified(scorer.state_dict(), report), state_to, state_format)
    return replace(report, seconds=time.perf_counter() - started)


def accumulate(
    batches: Iterator[tuple[str, pa.RecordBatch]],
    options: ScoreOptions,
    file_format: str,
    *,
    total_rows: int | None = None,
    rows_to: RowWriter | None = None,
    on_progress: ProgressCallback | None = None,
    read: ReadProgress | None = None,
    scales: ScaleLookup | None = None,
    first_row: int = 1,
) -> Scorer:
    """A scorer holding the sums of ``batches`` (``score_batches``' first part); rows are
    numbered from ``first_row`` in each file."""
    first = Scorer(options)
    grouped = first.group_keys is not None
    # Parsing CSV takes longer than the calibration: a second worker would only add memory.
    compute_bound = options.calibration and file_format != FileFormat.CSV
    workers = options.workers or auto_workers(first.device, grouped, compute_bound)
    pool = ScorerPool(first, workers)
    chunks = prefetched(
        to_chunks(batches, options, first.device, first.group_keys, scales, first_row)
    )
    results = pool.scored(chunks)
    rows_done = 0
    try:
        for chunk, scored in results:
            if rows_to is not None:
                rows_to.write(_row_batch(scored, options, chunk.ids))
            rows_done += chunk.length
            if on_progress is not None:
                bytes_total = None if read is None else read.bytes_total
                bytes_read = None if read is None or bytes_total is None else read.bytes_read
                on_progress(rows_done, total_rows, bytes_read, bytes_total)
    except NegativeSpreadError as first_negative:
        raise _with_negative_count(first_negative, pool.unfinished(), chunks) from None
    finally:  # stop the worker and reader threads now, not when the generators are collected
        results.close()
        chunks.close()
    scorer = pool.scorer
    if scales is not None:
        scorer.unseen_rows = scales.unseen_rows
    return scorer


def _with_negative_count(
    first: NegativeSpreadError, seen: list[Chunk], rest: Iterator[Chunk]
) -> NegativeSpreadError:
    """The first negative spread, with how many the whole input holds (read to the end)."""
    total = sum(int((chunk.ready().spread < 0).sum()) for chunk in seen)
    complete = True
    try:
        for chunk in rest:
            total += int((chunk.ready().spread < 0).sum())
    except InputError:
        complete = False
    return NegativeSpreadError.counted(first, total, complete=complete)


def _locate_invalid_value(source: Source, label: str, options: ScoreOptions) -> None:
    """After a GPU pass found a bad chunk: find and raise the first bad row with a CPU pass."""
    if source.is_stdin:
        raise InputError(
            "holds a negative spread, a NaN or an infinity; stdin cannot be read again to find "
            "the row: rerun with --device cpu",
            path=source.name,
        )
    score_source(source, replace(options, device="cpu", calibration=False), label=label)
    raise InputError("invalid values found on the device but not on the CPU", path=label)


def _row_batch(scored: Scored, options: ScoreOptions, ids: pa.Array | None) -> pa.RecordBatch:
    """Per-row losses of one chunk (an ensemble's mixture losses too, ``mixture_nll``; samples'
    CRPS, ``crps``); rows skipped for non-finite values get nulls."""
    spec = options.columns
    skipped = None if scored.kept is None else (~scored.kept).cpu().numpy()

    def arrays(values: Tensor) -> list[pa.Array]:
        """One array per output of ``values`` ``(rows, D)``, skipped rows null."""
        table = values.cpu().numpy()
        return [
            pa.array(np.ascontiguousarray(table[:, j]), mask=skipped) for j in range(table.shape[1])
        ]

    columns = arrays(scored.per_row(options.full))
    names = spec.output_names(len(columns))
    labels = [scored.name] if len(names) == 1 else [f"{scored.name}_{name}" for name in names]
    mixture = scored.mixture_per_row(options.full)
    if mixture is not None:  # an ensemble: its mixture's losses beside the matched Gaussian's
        columns += arrays(mixture)
        labels += [f"mixture_{label}" for label in labels]
    crps = scored.crps_per_row()
    if crps is not None:  # samples: each element's CRPS (energy form) beside its NLL
        columns += arrays(crps)
        labels += ["crps"] if len(names) == 1 else [f"crps_{name}" for name in names]
    if ids is not None and spec.id is not None:
        columns.insert(0, ids)
        labels.insert(0, spec.id)
    return pa.RecordBatch.from_arrays(columns, names=labels)
