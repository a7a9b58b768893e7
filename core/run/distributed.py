"""Score a dataset on a Dask cluster (``dask.distributed``), with the single process's numbers.

The client only lists the partitions — each Parquet row group, each CSV or Arrow file — from
the files' footers; every task reads its own partition on a worker, streams it through a
``Scorer`` (one torch thread) and returns its state as plain numbers (``Scorer.state_dict``,
never tensors, never pickled code). The states are merged by a tree reduction, ``TREE_WIDTH``
at a time, on the workers; the client derives the report from the last one. A task's bad input
comes back as data — the single process's error (file, column, row) — and the first bad
partition in file order is raised on the client, never a worker's traceback. A task whose
worker dies is run again by Dask on another; its result replaces nothing, so no partition is
counted twice.

Dask is imported when a cluster is asked for, never by plain scoring.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from gaussnll.core.errors import (
    GaussnllError,
    InputError,
    NegativeSpreadError,
    OptionError,
    UsageError,
)
from gaussnll.core.io.readers import iter_file_batches, parquet_row_groups, scoring_request
from gaussnll.core.io.scales import ScaleLookup
from gaussnll.core.io.sources import STDIN, FileFormat, Source, resolve_source
from gaussnll.core.io.writers import RowWriter
from gaussnll.core.options import ScoreOptions
from gaussnll.core.report.report import Report
from gaussnll.core.run.allocator import keep_freed_memory
from gaussnll.core.run.engine import ProgressCallback, accumulate
from gaussnll.core.run.intervals import needs_quantiles
from gaussnll.core.run.merging import merge_states, save_state
from gaussnll.core.run.scorer import Scorer
from gaussnll.core.run.state_document import options_document, options_from_document

TREE_WIDTH = 16  # states merged by one reduction task
CONNECT_TIMEOUT_S = 10  # to reach a running scheduler
LOCAL = "local"


@dataclass(frozen=True)
class Partition:
    """What one task reads: a file (``path``, absolute, as a worker's working directory may
    differ; ``name``, as the user named it, for messages), or some row groups of a Parquet
    file, whose first row is row ``first_row`` of the file; ``rows`` if the file records it."""

    index: int
    path: str
    name: str
    format: str
    row_groups: tuple[int, ...] | None = None
    first_row: int = 1
    rows: int | None = None


def partitions(path: str) -> list[Partition]:
    """The partitions of ``path`` (a file, directory or glob) in file order."""
    source = resolve_source(path)
    if source.files == (STDIN,):
        raise OptionError("dask_address", "cannot split stdin among workers: give files.")
    found: list[Partition] = []
    for file in source.files:
        where = (os.path.abspath(file), file, source.format.value)
        if source.format is not FileFormat.PARQUET:
            found.append(Partition(len(found), *where))
            continue
        first_row = 1
        for group, rows in enumerate(parquet_row_groups(file)):
            found.append(Partition(len(found), *where, (group,), first_row, rows))
            first_row += rows
    return found


def score_on_dask(
    path: str,
    options: ScoreOptions,
    *,
    address: str,
    workers: int = 0,
    state_to: str | None = None,
    state_format: str | None = None,
    on_progress: ProgressCallback | None = None,
    rows_to_directory: str | None = None,
) -> Report:
    """Score ``path`` on the Dask cluster at ``address`` (``local``: a ``LocalCluster`` of
    ``workers`` processes on 127.0.0.1, 0: one per core); ``state_to``, ``state_format`` and
    ``on_progress`` as for ``score`` (progress advances by partition as each finishes).
    ``rows_to_directory``: an existing directory, reachable by the workers, to get the per-row
    losses, one Parquet part per partition (``part-00000.parquet``...) written by the workers
    (the CLI gives a temporary directory of ``PlannedOutputs``, renamed when the run
    completes)."""
    rows_directory = None if rows_to_directory is None else os.path.abspath(rows_to_directory)
    return _score_on_dask(
        path, options, address, workers, state_to, state_format, on_progress, rows_directory
    )


def _score_on_dask(
    path: str,
    options: ScoreOptions,
    address: str,
    workers: int,
    state_to: str | None,
    state_format: str | None,
    on_progress: ProgressCallback | None,
    rows_directory: str | None,
) -> Report:
    if needs_quantiles(options):
        raise OptionError(
            "dask_address",
            "scores without a first pass over the data, which quantile bins need: give the "
            "intervals' edges.",
        )
    parts = partitions(path)
    if not parts:
        raise InputError("no data rows", path=path)
    settings = {**_task_settings(options), "rows_directory": rows_directory}
    with dask_client(address, workers) as client:
        leaves = client.map(
            score_partition, [asdict(part) for part in parts], settings=settings, pure=False
        )
        root = tree_reduced(client, leaves, merged_results)
        if on_progress is not None:
            _report_progress(leaves, parts, on_progress)
        result = root.result()
    if "errors" in result:
        raise _first_error(result["errors"])
    scorer = Scorer.from_state(result["state"], path=path)
    report = scorer.report(path, parts[0].format)
    if options.recalibration is not None:
        scales = ScaleLookup(options.recalibration)
        scales.unseen_rows = result["unseen_rows"]
        report = replace(report, recalibration=scales.record())
    if state_to is not None:
        save_state(result["state"], state_to, state_format)
    return report


def tree_reduced(client: Any, futures: list[Any], combine: Any, **arguments: Any) -> Any:
    """The future of ``futures`` (task results) combined by ``combine(results, **arguments)``,
    ``TREE_WIDTH`` at a time, level by level, on the workers."""
    while len(futures) > 1:
        groups = [futures[k : k + TREE_WIDTH] for k in range(0, len(futures), TREE_WIDTH)]
        futures = [client.submit(combine, group, **arguments, pure=False) for group in groups]
    return futures[0]


def _report_progress(
    leaves: list[Any], parts: list[Partition], on_progress: ProgressCallback
) -> None:
    """Call ``on_progress`` as each partition's task finishes (its rows, or 1 per partition when
    a file does not record its rows), without fetching the results."""
    from distributed import as_completed

    known = all(part.rows is not None for part in parts)
    size = {
        leaf.key: (part.rows or 0) if known else 1 for leaf, part in zip(leaves, parts, strict=True)
    }
    total = sum(size.values())
    done = 0
    for finished in as_completed(leaves):
        done += size[finished.key]
        on_progress(done, total, None, None)


def score_partition(partition: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Run on a worker: the state of one partition, or the error it raised, as plain data."""
    torch.set_num_threads(1)
    keep_freed_memory()  # as the CLI: the chunks' temporaries reuse the heap
    part = Partition(**partition)
    writer: RowWriter | None = None
    try:
        options = _task_options(settings)
        file_format = FileFormat(part.format)
        request = scoring_request(Source(part.name, file_format, (part.path,)), options)
        read = iter_file_batches(part.path, file_format, request, part.row_groups)
        batches = ((part.name, batch) for _, batch in read)
        scales = None if options.recalibration is None else ScaleLookup(options.recalibration)
        if settings["rows_directory"] is not None:
            rows_path = os.path.join(settings["rows_directory"], f"part-{part.index:05d}.parquet")
            writer = RowWriter(rows_path, FileFormat.PARQUET)
        with _closing(writer):
            scorer = accumulate(
                batches,
                options,
                file_format,
                rows_to=writer,
                scales=scales,
                first_row=part.first_row,
            )
        state = scorer.state_dict()
    except GaussnllError as error:
        return {"partition": part.index, "errors": [_error_record(error, part)]}
    unseen = 0 if scales is None else scales.unseen_rows
    return {"partition": part.index, "state": state, "unseen_rows": unseen}


def merged_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Run on a worker: results of partitions merged into one; when any failed, every error
    (the client raises the first, as the single process stops at the first bad row)."""
    errors = [error for result in results for error in result.get("errors", ())]
    first = min(result["partition"] for result in results)
    if errors:
        return {"partition": first, "errors": errors}
    try:
        scorer = merge_states([result["state"] for result in results])
    except OptionError as error:  # the partitions' groups together exceed max_groups
        record = {"partition": first, "kind": "OptionError", "message": error.detail}
        return {"partition": first, "errors": [{**record, "parameter": error.parameter}]}
    return {
        "partition": first,
        "state": scorer.state_dict(),
        "unseen_rows": sum(result["unseen_rows"] for result in results),
    }


def _task_settings(options: ScoreOptions) -> dict[str, Any]:
    """What a task needs to know of the options, as plain data."""
    return {
        "options": options_document(options),
        "chunk_size": options.chunk_size,
        "delimiter": options.delimiter,
        "device": options.device,
        "id": options.columns.id,
        "max_groups": options.max_groups,
    }


def _task_options(settings: dict[str, Any]) -> ScoreOptions:
    options = options_from_document(settings["options"], None)
    return replace(
        options,
        columns=replace(options.columns, id=settings["id"]),
        chunk_size=settings["chunk_size"],
        delimiter=settings["delimiter"],
        device=settings["device"],
        max_groups=settings["max_groups"],
        workers=1,
    )


def _error_record(error: GaussnllError, part: Partition) -> dict[str, Any]:
    """A task's error as plain data: its kind, message and place (the file as the user named
    it; and a negative spread's count, from it to the end of the partition)."""
    if not isinstance(error, InputError):
        return {"partition": part.index, "kind": "UsageError", "message": str(error)}
    record = {
        "partition": part.index,
        "kind": type(error).__name__,
        "message": error.detail,
        "path": part.name if error.path == part.path else error.path,
        "column": error.column,
        "row": error.row,
    }
    if isinstance(error, NegativeSpreadError) and error.first is not None:
        record.update(message=error.first, negatives=error.negatives, complete=error.complete)
    return record


def _first_error(records: list[dict[str, Any]]) -> GaussnllError:
    """The error of the first failed partition, as the single process would raise it: a
    negative spread with how many the partitions from it on hold."""
    records = sorted(records, key=lambda record: record["partition"])
    first = records[0]
    if first["kind"] == "OptionError":
        return OptionError(first["parameter"], first["message"])
    if first["kind"] == "UsageError":
        return UsageError(first["message"])
    place = {key: first[key] for key in ("path", "column", "row")}
    error = InputError(first["message"], **place)
    if "negatives" not in first:
        return error
    negatives = sum(record.get("negatives", 0) for record in records)
    complete = all(record.get("complete", False) for record in records)
    return NegativeSpreadError.counted(error, negatives, complete=complete)


@contextmanager
def _closing(writer: RowWriter | None) -> Iterator[None]:
    """Close ``writer`` (if any) after the block, whether it failed or not."""
    try:
        yield
    finally:
        if writer is not None:
            writer.close()


@contextmanager
def dask_client(address: str, workers: int) -> Iterator[Any]:
    """A client of the cluster at ``address``, or of a new local one; closed afterwards."""
    from distributed import Client, LocalCluster

    if address == LOCAL:
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # None would take port 8787
            silence_logs=logging.ERROR,
        )
        with cluster, Client(cluster) as client:
            yield client
        return
    if workers:
        raise OptionError("dask_workers", "applies to a local cluster only (address 'local').")
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise OptionError(
            "dask_address",
            f"cannot reach a Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s ({reason}).",
        ) from None
    with client:
        yield client
