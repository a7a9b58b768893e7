"""``score(source)``: one entry point for every kind of input a Python user holds.

A path (file, directory, glob), a list of paths, a pandas DataFrame, a pyarrow Table or
RecordBatchReader, or an iterable of ``(mean, target, var)`` tensor chunks. Files and tables go
through the same pipeline as the CLI, so the numbers are the CLI's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from gaussnll.core.errors import InputError, UsageError
from gaussnll.core.io.readers import require_columns
from gaussnll.core.io.sources import Source, resolve_source
from gaussnll.core.io.writers import RowWriter
from gaussnll.core.options import ScoreOptions, with_settings
from gaussnll.core.recalibration import RecalibrationMap
from gaussnll.core.report.recalibrate import fit_recalibration
from gaussnll.core.report.report import Report
from gaussnll.core.run import engine
from gaussnll.core.run.distributed import score_on_dask
from gaussnll.core.run.distributed_merge import merge_on_dask
from gaussnll.core.run.engine import ProgressCallback
from gaussnll.core.run.executors import Executor, OnDask
from gaussnll.core.run.intervals import needs_quantiles, with_quantile_edges
from gaussnll.core.run.merging import merge_state_files, save_state
from gaussnll.core.run.scorer import Scorer
from gaussnll.core.run.state_document import identified

TABLE = "<table>"


def score(
    source: Any,
    options: ScoreOptions | None = None,
    *,
    executor: Executor | None = None,
    rows_to: RowWriter | str | None = None,
    on_progress: ProgressCallback | None = None,
    state_to: str | None = None,
    state_format: str | None = None,
    **settings: Any,
) -> Report:
    """Score ``source`` with ``options`` (a ScoreOptions), or keyword settings of one; the
    columns may be given by the command line's names (``mean_col="mu", std_col="sd"``: see
    ``options.with_settings``).

    ``executor`` says where: ``InProcess()`` (the default) or ``OnDask(address)`` (a path
    only; see ``run.executors``). ``rows_to`` and ``on_progress`` are as for the file engine
    (files and tables only; tensor chunks get their per-element losses back from
    ``Scorer.update``; on Dask ``rows_to`` is a directory). ``state_to`` names a state file to
    write, for ``merge_states``, as ``state_format`` (``json`` or ``arrow``; None: by its name,
    see ``merging.save_state``).

    >>> score("preds.parquet", full=True).nll            # doctest: +SKIP
    >>> score("s3://bucket/preds/", executor=OnDask("local")).nll   # doctest: +SKIP
    >>> score(frame, mean_col="mu", std_col="sd").to_frame()        # doctest: +SKIP
    """
    options = with_settings(options, settings)
    if isinstance(executor, OnDask):
        return _score_on_dask(
            source, options, executor, rows_to, on_progress, state_to, state_format
        )
    if isinstance(rows_to, str):
        raise UsageError("rows_to is a RowWriter in this process (a directory on Dask)")
    streams: dict[str, Any] = {
        "rows_to": rows_to,
        "on_progress": on_progress,
        "state_to": state_to,
        "state_format": state_format,
    }
    if isinstance(source, str | os.PathLike):
        return engine.score_path(os.fspath(source), options, **streams)
    if (
        isinstance(source, list | tuple)
        and source
        and all(isinstance(item, str | os.PathLike) for item in source)
    ):
        return _score_files([os.fspath(item) for item in source], options, streams)
    if _is_dataframe(source):
        source = pa.Table.from_pandas(source, preserve_index=False)
    if isinstance(source, pa.Table):
        if needs_quantiles(options):
            pairs = ((TABLE, batch) for batch in source.to_batches(options.chunk_size))
            options = with_quantile_edges(options, pairs)
        batches = source.to_batches(options.chunk_size)
        return _score_arrow(source.schema, batches, options, streams)
    if isinstance(source, pa.RecordBatchReader):
        if needs_quantiles(options):
            raise UsageError("quantile bins read the input twice, which a reader cannot be")
        return _score_arrow(source.schema, source, options, streams)
    if isinstance(source, Iterable):
        if rows_to is not None or on_progress is not None:
            raise UsageError("tensor chunks return their losses from Scorer.update instead")
        return _score_tensors(source, options, state_to, state_format)
    raise UsageError(
        "score() takes a path, a list of paths, a pandas DataFrame, a pyarrow Table or "
        f"RecordBatchReader, or an iterable of (mean, target, var). Got {type(source).__name__}."
    )


def _score_on_dask(
    source: Any,
    options: ScoreOptions,
    executor: OnDask,
    rows_to: RowWriter | str | None,
    on_progress: ProgressCallback | None,
    state_to: str | None,
    state_format: str | None,
) -> Report:
    """``score`` on a Dask cluster: of a path (its files are the partitions), per-row losses to
    the directory ``rows_to``."""
    if not isinstance(source, str | os.PathLike):
        raise UsageError(f"on Dask, score() takes a path. Got {type(source).__name__}.")
    if isinstance(rows_to, RowWriter):
        raise UsageError("on Dask, per-row losses go to a directory: give rows_to its path")
    return score_on_dask(
        os.fspath(source),
        options,
        **executor.cluster(),
        state_to=state_to,
        state_format=state_format,
        on_progress=on_progress,
        rows_to_directory=rows_to,
    )


def merge(
    paths: Sequence[str],
    *,
    executor: Executor | None = None,
    max_groups: int | None = None,
    allow_duplicates: bool = False,
    on_progress: ProgressCallback | None = None,
) -> Scorer:
    """Merge the state files ``paths`` into one scorer (``merging.merge_state_files``), here
    or, ``executor=OnDask(address)``, on a Dask cluster (``merge_on_dask``); ``max_groups``:
    the limit (None: the largest the states record)."""
    if isinstance(executor, OnDask):
        return merge_on_dask(
            paths,
            **executor.cluster(),
            max_groups=max_groups,
            allow_duplicates=allow_duplicates,
            on_progress=on_progress,
        )
    return merge_state_files(
        paths, max_groups=max_groups, allow_duplicates=allow_duplicates, on_progress=on_progress
    )


def recalibrate(
    source: Any, options: ScoreOptions | None = None, **settings: Any
) -> RecalibrationMap:
    """Fit a variance recalibration map on ``source`` (anything ``score`` takes): each output's
    NLL-minimising variance scale, and each group's with ``columns.by``.

    >>> fitted = recalibrate("cal.parquet", columns=ColumnSpec(by=("region",)))  # doctest: +SKIP
    >>> score("test.parquet", recalibration=fitted).nll                           # doctest: +SKIP
    """
    options = with_settings(options, {**settings, "calibration": True})
    return fit_recalibration(score(source, options))


def _score_files(paths: list[str], options: ScoreOptions, streams: dict[str, Any]) -> Report:
    sources = [resolve_source(path) for path in paths]
    formats = {s.format for s in sources}
    if len(formats) > 1:
        raise InputError("the files mix formats; give files of one format", path=", ".join(paths))
    label = ", ".join(paths)
    combined = Source(label, formats.pop(), tuple(f for s in sources for f in s.files))
    return engine.score_source(combined, options, label=label, **streams)


def _score_arrow(
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    options: ScoreOptions,
    streams: dict[str, Any],
) -> Report:
    columns = list(options.needed)
    require_columns(schema.names, columns, TABLE)
    pairs = _labelled(batches, columns, options.chunk_size)
    return engine.score_batches(pairs, options, label=TABLE, file_format="arrow", **streams)


def _labelled(
    batches: Iterable[pa.RecordBatch], columns: list[str], chunk_size: int
) -> Iterator[tuple[str, pa.RecordBatch]]:
    for batch in batches:
        projected = batch.select(columns)
        for start in range(0, projected.num_rows, chunk_size):
            yield TABLE, projected.slice(start, chunk_size)


def _score_tensors(
    chunks: Iterable[Any], options: ScoreOptions, state_to: str | None, state_format: str | None
) -> Report:
    scorer = Scorer(options)
    for chunk in chunks:
        try:
            mean, target, var = chunk
        except (TypeError, ValueError):
            raise UsageError("each chunk must be a (mean, target, var) tuple of tensors") from None
        scorer.update(mean, target, var)
    report = scorer.report(allow_empty=state_to is not None)
    if state_to is not None:
        save_state(identified(scorer.state_dict(), report), state_to, state_format)
    return report


def _is_dataframe(value: object) -> bool:
    """A pandas DataFrame, recognised without importing pandas."""
    return type(value).__name__ == "DataFrame" and type(value).__module__.startswith("pandas")
