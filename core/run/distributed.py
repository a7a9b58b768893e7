"""Score a dataset on a Dask cluster (``dask.distributed``), with the single process's numbers.

The client only lists the partitions — each Parquet row group, each CSV or Arrow file — from
the files' footers, and cuts a plain CSV file larger than ``CSV_PARTITION_BYTES`` into byte
ranges from its size alone; every task reads its own partition on a worker, streams it through a
``Scorer`` (one torch thread) and returns its state as plain numbers (``Scorer.state_dict``,
never tensors, never pickled code). The states are merged by a tree reduction, ``TREE_WIDTH``
at a time, on the workers; the client derives the report from the last one. A task's bad input
comes back as data — the single process's error (file, column, row) — and the first bad
partition in file order is raised on the client, never a worker's traceback. A task whose
worker dies is run again by Dask on another; its result replaces nothing, so no partition is
counted twice.

A byte range holds the lines that start in it (its task moves both ends to the next line start
with the single process's cut, so no line is read twice or lost; like the single process, it
assumes no quoted value spans lines). Its task does not know how many rows the ranges before it
hold: it numbers its rows from 1 and returns how many it read, and the client adds the rows of
the file's earlier ranges to an error's row, so an error names the file's row as the single
process does, without a pass over the earlier bytes. One task per split file first infers the
column types of its first range, as the single process does, and its ranges are read with them.

Partitions are handed to tasks in batches of consecutive ones (``batched``): about
``TASKS_PER_WORKER`` tasks per worker thread, a task never more than ``TASK_ROWS`` rows (or
``CSV_PARTITION_BYTES`` bytes) unless one partition is larger, so ten thousand tiny files are a
few dozen tasks, not ten thousand (whose bookkeeping starves the scheduler's heartbeats).

The client lists each file with its size and modification time (a stamp); each task checks its
file's stamp, and a Parquet partition's rows, against the listing once it has read it, so a
file replaced between listing and reading is an error naming it, never a score of part of it.

A scheduler is given ``--timeout`` (``timeouts``) to answer and to have a worker; one that goes
away during the run is one line too. Dask's own log lines, and the stderr of a local cluster's
workers (which ignore Ctrl-C: the client stops them), are silenced unless ``verbose``.

Dask is imported when a cluster is asked for, never by plain scoring.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import torch
from pyarrow.fs import FileType

from gaussnll.core.errors import (
    GaussnllError,
    InputError,
    NegativeSpreadError,
    OptionError,
    UsageError,
)
from gaussnll.core.io.csv_input import ByteRange, is_compressed, range_blocks
from gaussnll.core.io.filesystems import file_info, is_uri
from gaussnll.core.io.readers import (
    csv_part_types,
    iter_file_batches,
    parquet_row_groups,
    scoring_request,
)
from gaussnll.core.io.scales import ScaleLookup
from gaussnll.core.io.sources import STDIN, FileFormat, Source, resolve_source
from gaussnll.core.io.timeouts import answer_timeout, answered, timeout_seconds
from gaussnll.core.io.writers import RowWriter
from gaussnll.core.options import ScoreOptions
from gaussnll.core.report.report import Report
from gaussnll.core.run.allocator import keep_freed_memory
from gaussnll.core.run.engine import ProgressCallback, accumulate
from gaussnll.core.run.intervals import needs_quantiles
from gaussnll.core.run.merging import merge_states, save_state
from gaussnll.core.run.scorer import Scorer
from gaussnll.core.run.state_document import identified, options_document, options_from_document

TREE_WIDTH = 16  # states merged by one reduction task
CSV_PARTITION_BYTES = 64 << 20  # a plain CSV file larger than this is cut into byte ranges
TASKS_PER_WORKER = 4  # tasks per worker thread, when partitions are small enough to batch
TASK_ROWS = 1 << 20  # rows of Parquet partitions batched into one task, at most
LOCAL = "local"
WORKER_SETUP = "gaussnll.core.run.dask_worker"  # preload of a local cluster's quiet workers
_DASK_LOGGERS = ("distributed", "tornado", "asyncio", "bokeh")


@dataclass(frozen=True)
class Partition:
    """What one task reads: a file (``path``, absolute, as a worker's working directory may
    differ; ``name``, as the user named it, for messages), some row groups of a Parquet
    file, whose first row is row ``first_row`` of the file, or the lines starting in
    ``byte_range`` of a plain CSV file (rows numbered from 1 in it); ``rows`` if the file
    records them, ``size`` the bytes of a CSV partition; ``stamp`` the file's size and
    modification time when it was listed."""

    index: int
    path: str
    name: str
    format: str
    row_groups: tuple[int, ...] | None = None
    first_row: int = 1
    rows: int | None = None
    byte_range: tuple[int, int] | None = None
    size: int | None = None
    stamp: tuple[int, int | None] | None = None


def partitions(path: str, csv_partition_bytes: int | None = None) -> list[Partition]:
    """The partitions of ``path`` (a file, directory or glob) in file order; a plain CSV file
    of more than ``csv_partition_bytes`` (None: ``CSV_PARTITION_BYTES``) in ranges of that many
    bytes, from its size only."""
    partition_bytes = CSV_PARTITION_BYTES if csv_partition_bytes is None else csv_partition_bytes
    if partition_bytes < 1:
        raise OptionError(
            "csv_partition_bytes",
            f"must be a positive number of bytes. Got {partition_bytes!r} instead.",
        )
    source = resolve_source(path)
    if source.files == (STDIN,):
        raise OptionError("dask_address", "cannot split stdin among workers: give files.")
    found: list[Partition] = []
    for file in source.files:
        # a local path made absolute; a URI as it is, for each worker to open itself
        where = (file if is_uri(file) else os.path.abspath(file), file, source.format.value)
        stamp = file_stamp(file)  # before the footer: a file replaced since is told by it
        if source.format is FileFormat.CSV:
            found += _csv_partitions(len(found), where, stamp, partition_bytes)
        elif source.format is FileFormat.PARQUET:
            first_row = 1
            for group, rows in enumerate(parquet_row_groups(file)):
                found.append(Partition(len(found), *where, (group,), first_row, rows, stamp=stamp))
                first_row += rows
        else:
            size = None if stamp is None else stamp[0]
            found.append(Partition(len(found), *where, size=size, stamp=stamp))
    return found


def file_stamp(path: str) -> tuple[int, int | None] | None:
    """The size and modification time (ns; None where a store does not tell) of a regular file
    or an object; None for anything else."""
    if is_uri(path):
        info = file_info(path)
        return (info.size, info.mtime_ns) if info.type is FileType.File else None
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_size, status.st_mtime_ns) if stat.S_ISREG(status.st_mode) else None


def _csv_partitions(
    index: int,
    where: tuple[str, str, str],
    stamp: tuple[int, int | None] | None,
    partition_bytes: int,
) -> list[Partition]:
    """A CSV file as one partition (compressed, not a regular file, or small), or as byte
    ranges of ``partition_bytes``."""
    size = None if stamp is None else stamp[0]
    if size is None or is_compressed(where[0]) or size <= partition_bytes:
        return [Partition(index, *where, size=size, stamp=stamp)]
    return [
        Partition(
            index + k,
            *where,
            byte_range=(start, min(size, start + partition_bytes)),
            size=min(size, start + partition_bytes) - start,
            stamp=stamp,
        )
        for k, start in enumerate(range(0, size, partition_bytes))
    ]


def score_on_dask(
    path: str,
    options: ScoreOptions,
    *,
    address: str,
    workers: int | None = None,
    state_to: str | None = None,
    state_format: str | None = None,
    on_progress: ProgressCallback | None = None,
    rows_to_directory: str | None = None,
    csv_partition_bytes: int | None = None,
    timeout: float | None = None,
    verbose: bool = False,
) -> Report:
    """Score ``path`` on the Dask cluster at ``address`` (``local``: a ``LocalCluster`` of
    ``workers`` processes on 127.0.0.1, None: one per core); ``state_to``, ``state_format`` and
    ``on_progress`` as for ``score`` (progress advances by partition as each finishes: by rows
    where the files record them, by bytes for CSV). ``rows_to_directory``: an existing
    directory, reachable by the workers, to get the per-row losses, one Parquet part per
    partition (``part-00000.parquet``...) written by the workers (the CLI gives a temporary
    directory of ``PlannedOutputs``, renamed when the run completes). ``csv_partition_bytes``:
    the byte ranges a plain CSV file is cut into (None: ``CSV_PARTITION_BYTES``). ``timeout``:
    seconds to wait for a first answer from the scheduler or an object store (None: the
    ``answer_timeout`` in force); ``verbose``: let Dask's own log lines through. The report's
    ``seconds`` are the whole run's, the cluster's start included."""
    started = time.perf_counter()
    if needs_quantiles(options):
        raise OptionError(
            "dask_address",
            "scores without a first pass over the data, which quantile bins need: give the "
            "intervals' edges.",
        )
    rows_directory = None if rows_to_directory is None else os.path.abspath(rows_to_directory)
    with answer_timeout(timeout):
        parts = partitions(path, csv_partition_bytes)
        if not parts:
            raise InputError("no data rows", path=path)
        with dask_client(address, workers, verbose) as client:
            result = _scored(client, parts, options, on_progress, rows_directory)
    report = _reported(path, parts, options, result, state_to, state_format)
    return replace(report, seconds=time.perf_counter() - started)


def _scored(
    client: Any,
    parts: list[Partition],
    options: ScoreOptions,
    on_progress: ProgressCallback | None,
    rows_directory: str | None,
) -> dict[str, Any]:
    """The merged result of every partition, scored in batches on the cluster of ``client``."""
    settings = {**_task_settings(options), "rows_directory": rows_directory}
    split = {part.path for part in parts if part.byte_range is not None}
    types = {
        file: client.submit(csv_types, file, settings, range_blocks(), pure=False)
        for file in sorted(split)
    }
    tasks = batched(parts, sum(client.nthreads().values()))
    leaves = client.map(
        score_batch,
        [[asdict(part) for part in task] for task in tasks],
        [[types.get(part.path) for part in task] for task in tasks],
        settings=settings,
        pure=False,
    )
    root = tree_reduced(client, leaves, merged_results)
    if on_progress is not None:
        _report_progress(leaves, tasks, on_progress)
    result: dict[str, Any] = root.result()
    return result


def _reported(
    path: str,
    parts: list[Partition],
    options: ScoreOptions,
    result: dict[str, Any],
    state_to: str | None,
    state_format: str | None,
) -> Report:
    """The report of the merged ``result``, or the first partition's error."""
    if "errors" in result:
        raise _first_error(result["errors"], parts, result["rows"])
    scorer = Scorer.from_state(result["state"], path=path)
    # The run's options, which the state's equal but for those it does not keep (the id
    # column, the chunk size...): the report names them as the single process's does.
    scorer.options = replace(options, device=str(scorer.device))
    report = scorer.report(path, parts[0].format, allow_empty=state_to is not None)
    if state_to is not None:
        save_state(identified(result["state"], report), state_to, state_format)
    return report


def tree_reduced(client: Any, futures: list[Any], combine: Any, **arguments: Any) -> Any:
    """The future of ``futures`` (task results) combined by ``combine(results, **arguments)``,
    ``TREE_WIDTH`` at a time, level by level, on the workers."""
    while len(futures) > 1:
        groups = [futures[k : k + TREE_WIDTH] for k in range(0, len(futures), TREE_WIDTH)]
        futures = [client.submit(combine, group, **arguments, pure=False) for group in groups]
    return futures[0]


def batched(parts: list[Partition], threads: int) -> list[list[Partition]]:
    """``parts`` in tasks of consecutive partitions: about ``TASKS_PER_WORKER`` per worker
    thread of equal work, a task no more than ``TASK_ROWS`` rows (or ``CSV_PARTITION_BYTES``
    bytes) unless one partition alone is more."""
    unit, amounts = _work(parts)
    largest = {"rows": TASK_ROWS, "bytes": CSV_PARTITION_BYTES}.get(unit, 1)
    share = min(sum(amounts) / (TASKS_PER_WORKER * max(threads, 1)), largest)
    tasks: list[list[Partition]] = []
    held = 0
    for part, amount in zip(parts, amounts, strict=True):
        if not tasks or held + amount > share:
            tasks.append([])
            held = 0
        tasks[-1].append(part)
        held += amount
    return tasks


def _work(parts: list[Partition]) -> tuple[str, list[int]]:
    """How the partitions' work is measured, and each one's: ``rows`` where the files record
    them, else ``bytes`` (CSV: the rows are not known until read), else ``partitions``."""
    if all(part.rows is not None for part in parts):
        return "rows", [part.rows or 0 for part in parts]
    if all(part.size is not None for part in parts):
        return "bytes", [part.size or 0 for part in parts]
    return "partitions", [1] * len(parts)


def _report_progress(
    leaves: list[Any], tasks: list[list[Partition]], on_progress: ProgressCallback
) -> None:
    """Call ``on_progress`` as each task finishes, without fetching the results: by the work
    of its partitions (``_work``)."""
    from distributed import as_completed

    unit, amounts = _work([part for task in tasks for part in task])
    amount, start = {}, 0
    for leaf, task in zip(leaves, tasks, strict=True):
        amount[leaf.key] = sum(amounts[start : start + len(task)])
        start += len(task)
    total = sum(amount.values())
    done = 0
    for finished in as_completed(leaves):
        done += amount[finished.key]
        if unit == "bytes":
            on_progress(0, None, done, total)
        else:
            on_progress(done, total, None, None)


def csv_types(path: str, settings: dict[str, Any], blocks: int) -> bytes | None:
    """Run on a worker: the column types all byte ranges of a plain CSV file are read with
    (``csv_part_types``, its first range cut as the client's process would cut it with
    ``blocks`` blocks), as a serialised Arrow schema; None when none are needed or the first
    range does not parse (its task reports why)."""
    try:
        request = scoring_request(Source(path, FileFormat.CSV, (path,)), _task_options(settings))
    except GaussnllError:
        return None
    types = csv_part_types(path, request, blocks)
    return None if types is None else pa.schema(types).serialize().to_pybytes()


def score_partition(
    partition: dict[str, Any], types: bytes | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """Run on a worker: the state of one partition, or the error it raised, as plain data;
    with the rows a byte range of a CSV file read (``rows``, by partition), which numbers the
    rows of the ranges after it. ``types``: the column types of a byte range (``csv_types``)."""
    torch.set_num_threads(1)
    keep_freed_memory()  # as the CLI: the chunks' temporaries reuse the heap
    part = Partition(**partition)
    writer: RowWriter | None = None
    rows_read = 0

    def counted(read: Iterator[tuple[str, pa.RecordBatch]]) -> Iterator[tuple[str, pa.RecordBatch]]:
        nonlocal rows_read
        for _, batch in read:
            rows_read += batch.num_rows
            yield part.name, batch

    try:
        options = _task_options(settings)
        file_format = FileFormat(part.format)
        request = scoring_request(Source(part.name, file_format, (part.path,)), options)
        byte_range = None
        if part.byte_range is not None:
            byte_range = ByteRange(*part.byte_range, _schema_types(types))
        read = iter_file_batches(part.path, file_format, request, part.row_groups, part=byte_range)
        batches = counted(read)
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
        return _failed(part, _changed(part, None) or error)
    changed = _changed(part, rows_read)
    if changed is not None:
        return _failed(part, changed)
    rows = {} if part.byte_range is None else {part.index: rows_read}
    return {
        "name": part.name,
        "partition": part.index,
        "state": state,
        "rows": rows,
    }


def score_batch(
    partitions: list[dict[str, Any]], types: list[bytes | None], settings: dict[str, Any]
) -> dict[str, Any]:
    """Run on a worker: the partitions of one task (``batched``), each scored as by
    ``score_partition``, their results merged."""
    with answer_timeout(settings["timeout"]):
        results = [
            score_partition(partition, part_types, settings)
            for partition, part_types in zip(partitions, types, strict=True)
        ]
    return results[0] if len(results) == 1 else merged_results(results)


def _failed(part: Partition, error: GaussnllError) -> dict[str, Any]:
    return {"partition": part.index, "errors": [_error_record(error, part)], "rows": {}}


def _changed(part: Partition, rows_read: int | None) -> InputError | None:
    """Why the file of ``part`` is not as the client listed it, once read (None: it is): its
    size or modification time differ, or the rows read from its row groups (``rows_read``;
    None: the read failed) differ from those its footer recorded then."""
    try:
        stamp = file_stamp(part.path)
    except InputError as error:
        return error
    listed = None if part.stamp is None else (part.stamp[0], part.stamp[1])
    if stamp != listed:
        return InputError(
            f"changed after it was listed ({_described(listed)}; now {_described(stamp)}); "
            "expected it unchanged until the run ends",
            path=part.name,
        )
    if rows_read is not None and part.rows is not None and rows_read != part.rows:
        return InputError(
            f"read {rows_read:,} rows where its footer recorded {part.rows:,} when it was "
            "listed; expected it unchanged until the run ends",
            path=part.name,
        )
    return None


def _described(stamp: tuple[int, int | None] | None) -> str:
    if stamp is None:
        return "no regular file"
    size, modified = stamp
    if modified is None:
        return f"{size:,} bytes"
    when = datetime.fromtimestamp(modified / 1e9, UTC).isoformat(timespec="microseconds")
    return f"{size:,} bytes, modified {when}"


def _schema_types(schema: bytes | None) -> dict[str, pa.DataType] | None:
    """The column types of a serialised Arrow schema (``csv_types``)."""
    if schema is None:
        return None
    fields = pa.ipc.read_schema(pa.py_buffer(schema))
    return {field.name: field.type for field in fields}


def merged_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Run on a worker: results of partitions merged into one; when any failed, every error
    (the client raises the first, as the single process stops at the first bad row), and the
    rows of the byte ranges read either way."""
    errors = [error for result in results for error in result.get("errors", ())]
    first = min(result["partition"] for result in results)
    rows = {index: count for result in results for index, count in result["rows"].items()}
    if errors:
        return {"partition": first, "errors": errors, "rows": rows}
    names = [result["name"] for result in results]
    try:
        scorer = merge_states([result["state"] for result in results], names)
    except OptionError as error:  # the partitions' groups together exceed max_groups
        record = {"partition": first, "kind": "OptionError", "message": error.detail}
        return {
            "partition": first,
            "errors": [{**record, "parameter": error.parameter}],
            "rows": rows,
        }
    except UsageError as error:  # e.g. group keys of different types in two files
        record = {"partition": first, "kind": "UsageError", "message": str(error)}
        return {"partition": first, "errors": [record], "rows": rows}
    return {
        "name": names[0],
        "partition": first,
        "state": scorer.state_dict(),
        "rows": rows,
    }


def _task_settings(options: ScoreOptions) -> dict[str, Any]:
    """What a task needs to know of the options (and ``--timeout``), as plain data."""
    return {
        "timeout": timeout_seconds(),
        "options": options_document(options),
        "chunk_size": options.chunk_size,
        "delimiter": options.delimiter,
        "device": options.device,
        "id": options.columns.id,
        "max_groups": options.max_groups,
        "recalibration_file": None if options.recalibration is None else options.recalibration.path,
    }


def _task_options(settings: dict[str, Any]) -> ScoreOptions:
    options = options_from_document(settings["options"], None)
    recalibration = options.recalibration
    if recalibration is not None:  # named by its file in the states, as the single process's
        recalibration = replace(recalibration, path=settings["recalibration_file"])
    return replace(
        options,
        recalibration=recalibration,
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


def _first_error(
    records: list[dict[str, Any]], parts: list[Partition], rows: dict[int, int]
) -> GaussnllError:
    """The error of the first failed partition, as the single process would raise it: its row
    the file's (a byte range's row after the ``rows`` of the file's ranges before it, which
    were all read), a negative spread with how many the partitions from it on hold."""
    records = sorted(records, key=lambda record: record["partition"])
    first = records[0]
    if first["kind"] == "OptionError":
        return OptionError(first["parameter"], first["message"])
    if first["kind"] == "UsageError":
        return UsageError(first["message"])
    place = {key: first[key] for key in ("path", "column", "row")}
    part = parts[first["partition"]]
    if place["row"] is not None and part.byte_range is not None:
        earlier = parts[: part.index]
        place["row"] += sum(rows[other.index] for other in earlier if other.path == part.path)
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
def dask_client(address: str, workers: int | None, verbose: bool = False) -> Iterator[Any]:
    """A client of the cluster at ``address``, or of a new local one of ``workers`` processes
    (None: one per core); closed afterwards. Dask's log lines are silenced unless ``verbose``,
    and a scheduler lost during the block is one line."""
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise OptionError(
            "dask_workers",
            f"must be a positive number of worker processes. Got {workers!r} instead.",
        )
    from distributed.comm import CommClosedError

    quiet = nullcontext() if verbose else _dask_logs_silenced()
    with quiet, _client(address, workers, verbose) as client:
        try:
            yield client
        except (CancelledError, CommClosedError):
            raise OptionError(
                "dask_address",
                f"lost its scheduler at {address} during the run; nothing was written.",
            ) from None


@contextmanager
def _client(address: str, workers: int | None, verbose: bool) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if address == LOCAL:
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # None would take port 8787
            silence_logs=logging.ERROR if verbose else logging.CRITICAL,
            preload=[] if verbose else [WORKER_SETUP],
        )
        with cluster, Client(cluster) as client:
            yield client
        return
    if workers is not None:
        raise OptionError("dask_workers", "applies to a local cluster only (address 'local').")
    seconds = timeout_seconds()
    _first_answer(address)
    try:
        client = Client(address, timeout=seconds)
    except (OSError, TimeoutError, ValueError) as error:
        raise _unreachable(address, error) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=seconds)
        except TimeoutError:
            raise OptionError(
                "dask_address", f"has no worker at {address}: none joined within {seconds:g} s."
            ) from None
        yield client


def _first_answer(address: str) -> None:
    """Raise unless a Dask scheduler at ``address`` answers within the bound. Dask bounds the
    connection, not the handshake after it: a server that accepts and stays silent would hold a
    ``Client`` forever; one that refuses the connection is told apart first."""
    from distributed.comm import connect
    from distributed.comm.addressing import get_address_host_port

    try:
        host, port = get_address_host_port(address)
    except ValueError:
        pass  # not a TCP address: Dask's connect says what is wrong
    else:
        try:
            socket.create_connection((host, port), timeout=timeout_seconds()).close()
        except OSError as error:
            raise _unreachable(address, error) from None

    async def identity() -> Any:
        comm = await connect(address, timeout=timeout_seconds())
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    try:
        answered(lambda: asyncio.run(identity()))
    except TimeoutError:
        raise OptionError(
            "dask_address",
            f"got no answer from a Dask scheduler at {address} within {timeout_seconds():g} s "
            "(a slow one: raise --timeout).",
        ) from None
    except (OSError, ValueError) as error:
        raise _unreachable(address, error) from None


def _unreachable(address: str, error: BaseException) -> OptionError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return OptionError(
        "dask_address",
        f"cannot reach a Dask scheduler at {address} within {timeout_seconds():g} s ({reason}).",
    )


@contextmanager
def _dask_logs_silenced() -> Iterator[None]:
    """Dask's loggers (and tornado's and asyncio's, under it) silent for the block: what goes
    wrong comes back as gaussnll's one line, and their tracebacks are noise (a heartbeat's
    closed comm, a lost scheduler's reconnection)."""
    names = set(_DASK_LOGGERS)
    names.update(n for n in logging.root.manager.loggerDict if n.split(".")[0] in _DASK_LOGGERS)
    loggers = [logging.getLogger(name) for name in sorted(names)]
    previous = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, previous, strict=True):
            logger.disabled = disabled
