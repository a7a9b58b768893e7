"""Nothing under ``--dask`` (or reading an object store) waits without a bound, scores a file in
part, or lets Dask's own noise reach the terminal: a silent scheduler or store, a scheduler
without workers, a bad worker count and a FIFO are one line (exit 2) within ``--timeout``; a
file replaced between listing and reading is an error naming it; tiny partitions are batched
into a few tasks. Servers listen on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from conftest import assert_one_line_error, assert_same_report, make_predictions
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core.run import distributed

pytest.importorskip("distributed")

BOUND_S = 120  # a run that has not ended by then hangs


def run(*args: object):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def run_process(*args: object) -> subprocess.CompletedProcess:
    """The CLI in a process of its own, killed (and failed) if it outlives ``BOUND_S``."""
    command = [sys.executable, "-m", "gaussnll.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=BOUND_S)


def assert_one_line(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 whose server accepts every connection and never says a word."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


# --- class 2: nothing waits without a bound ----------------------------------------------------


def test_a_scheduler_that_accepts_and_never_answers_is_one_line(silent_port):
    address = f"tcp://127.0.0.1:{silent_port}"
    done = run_process("score", "sample_data/preds.parquet", "--dask", address, "--timeout", "1")
    assert_one_line(done, f"--dask got no answer from a Dask scheduler at {address} within 1 s")


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_an_object_store_that_never_answers_is_one_line_naming_the_uri(silent_port, scheme):
    uri = f"{scheme}://bucket/preds.parquet?endpoint_override=127.0.0.1:{silent_port}&scheme=http"
    done = run_process("score", uri, "--timeout", "1")
    assert_one_line(done, uri, "no answer within 1 s", "raise --timeout")


def test_a_scheduler_without_workers_is_one_line():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        result = run("score", "sample_data/preds.parquet", "--dask", address, "--timeout", "1")
    assert_one_line_error(result, f"--dask has no worker at {address}: none joined within 1 s")


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_a_worker_count_below_one_is_one_line(workers):
    args = ["score", "sample_data/preds.parquet", "--dask", "local", "--dask-workers", workers]
    expected = f"--dask-workers must be a positive number of worker processes. Got {workers}"
    assert_one_line_error(run(*args), expected)


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf"])
def test_a_timeout_that_is_not_a_positive_number_is_one_line(value):
    result = run("score", "sample_data/preds.parquet", "--timeout", value)
    assert_one_line_error(result, "--timeout must be a positive, finite number of seconds")


def test_a_fifo_where_a_file_is_expected_is_one_line(tmp_path):
    fifo = tmp_path / "preds.csv"
    os.mkfifo(fifo)
    expected = "is not a regular file (a FIFO or a device)"
    assert_one_line_error(run("score", fifo), str(fifo), expected)
    assert_one_line_error(run("score", f"file://{fifo}"), expected)
    assert_one_line_error(run("score", fifo, "--dask", "local"), str(fifo), expected)
    result = run("score", "sample_data/preds.parquet", "--config", fifo)
    assert_one_line_error(result, "--config", "is not a regular file")


def test_the_timeout_is_in_the_help():
    for command in ("score", "merge", "compare"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "--timeout" in result.stdout and "[default: 30]" in result.stdout


# --- class 3: nothing scored in part -----------------------------------------------------------


def _replaced_after_listing(monkeypatch, path: Path, write) -> None:
    """Replace ``path`` by ``write(path)``'s file right after the client lists the partitions,
    as another program would between listing and reading."""
    listed = distributed.partitions

    def listing_then_replace(*args, **kwargs):
        found = listed(*args, **kwargs)
        before = path.stat()
        replacement = path.with_name("replacement" + path.suffix)
        write(replacement)
        os.replace(replacement, path)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        return found

    monkeypatch.setattr(distributed, "partitions", listing_then_replace)


def _table(rows: int) -> pa.Table:
    return pa.table(make_predictions(rows, seed=rows))


WRITERS = {
    ".parquet": lambda table, path: pq.write_table(table, path),
    ".csv": lambda table, path: pacsv.write_csv(table, path),
    ".arrow": lambda table, path: feather.write_feather(table, path),
}


@pytest.mark.parametrize("extension", WRITERS)
@pytest.mark.parametrize("rows_after", [10, 20], ids=["shorter", "same rows"])
def test_a_file_replaced_between_listing_and_reading_is_one_line_naming_it(
    tmp_path, local_dask, monkeypatch, extension, rows_after
):
    """20 rows listed, then 10 (or 20 others) read: scored in part before, exit 0."""
    write = WRITERS[extension]
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / f"b{extension}"
    write(_table(20), folder / f"a{extension}")
    write(_table(20), path)
    _replaced_after_listing(monkeypatch, path, lambda target: write(_table(rows_after), target))
    result = run("score", folder, "--dask", local_dask, "-q")
    assert_one_line_error(result, str(path), "changed after it was listed", "expected it unchanged")


# --- class 10: few tasks for many tiny files, and no noise -------------------------------------


def test_tiny_files_are_batched_into_a_few_tasks_in_file_order(tmp_path, local_dask):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for k in range(300):
        pq.write_table(pa.table(make_predictions(5, seed=k)), folder / f"p{k:04d}.parquet")
    parts = distributed.partitions(str(folder))
    tasks = distributed.batched(parts, threads=2)
    assert len(tasks) <= 2 * distributed.TASKS_PER_WORKER + 1
    assert [part for task in tasks for part in task] == parts
    args = ["score", folder, "--json", "-q"]
    on_dask = run(*args, "--dask", local_dask)
    assert on_dask.exit_code == 0, on_dask.output
    assert_same_report(json.loads(on_dask.stdout), json.loads(run(*args).stdout))


def test_large_partitions_stay_a_task_each():
    parts = [
        distributed.Partition(k, "p", "p", "parquet", (k,), 1 + k * 2**20, 2**20) for k in range(10)
    ]
    assert [len(task) for task in distributed.batched(parts, threads=2)] == [1] * 10


def test_a_good_run_on_a_local_cluster_says_nothing_on_stderr(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for k in range(40):
        columns = make_predictions(50, seed=k)
        columns["g"] = np.arange(50) % 3
        pq.write_table(pa.table(columns), folder / f"p{k:03d}.parquet")
    done = run_process("score", folder, "--dask", "local", "--dask-workers", "2", "-q", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout)["rows"] == 2_000
