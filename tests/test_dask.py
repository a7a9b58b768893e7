"""Scoring on a Dask cluster: the single process's numbers and errors, from partitions read on
the workers. One cluster of ``dask scheduler`` + two ``dask worker`` processes on 127.0.0.1
serves the module; one test starts a ``LocalCluster`` through ``--dask local``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import assert_one_line_error, assert_same_report, make_predictions, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import (
    ColumnSpec,
    InProcess,
    OnDask,
    ScoreOptions,
    UsageError,
    score,
    score_on_dask,
)

pytest.importorskip("distributed")

START_TIMEOUT_S = 60


def run(*args: object):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def _dask(*args: str, log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "dask", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # killed with its children (the worker's nanny and process)
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """The address of a scheduler with two single-threaded workers, and the workers."""
    folder = tmp_path_factory.mktemp("cluster")
    address_file = folder / "scheduler.json"
    common = ["--no-dashboard", "--host", "127.0.0.1"]
    processes = [
        _dask(
            "scheduler",
            *common,
            "--port",
            "0",
            "--scheduler-file",
            str(address_file),
            log=folder / "scheduler.log",
        )
    ]
    workers: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        for k in range(2):
            workers.append(
                _dask(
                    "worker",
                    "--scheduler-file",
                    str(address_file),
                    "--nthreads",
                    "1",
                    *common,
                    log=folder / f"worker{k}.log",
                )
            )
        processes += workers
        from distributed import Client

        with Client(scheduler_file=str(address_file), timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
            address = client.scheduler.address
        yield address, workers
    finally:
        for process in reversed(processes):
            _stop(process)


def _dataset(folder: Path, outputs: int = 1, files: int = 3, rows: int = 1_500) -> Path:
    """Parquet files of several row groups each, with a key column."""
    folder.mkdir()
    for k in range(files):
        columns = make_predictions(rows, seed=k, outputs=outputs)
        data = {}
        for role in ("mean", "target", "var"):
            values = columns[role].reshape(rows, outputs)
            data.update({f"{role}{j}": values[:, j] for j in range(outputs)})
        data["region"] = np.random.default_rng(k).choice(["n", "s", "e"], size=rows)
        data["w"] = np.random.default_rng(k).integers(0, 4, size=rows).astype(np.float64)
        pq.write_table(pa.table(data), folder / f"part{k}.parquet", row_group_size=rows // 4)
    return folder


def _columns(outputs: int) -> list[str]:
    return [
        "--mean-col", ",".join(f"mean{j}" for j in range(outputs)),
        "--target-col", ",".join(f"target{j}" for j in range(outputs)),
        "--var-col", ",".join(f"var{j}" for j in range(outputs)),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("outputs", "options"),
    [
        (1, []),
        (2, ["--by", "region", "--full"]),
        (1, ["--no-calibration", "--by", "region"]),
        (1, ["--weight-col", "w", "--by", "region"]),
    ],
)
def test_a_cluster_gives_the_single_process_report(tmp_path, scheduler, outputs, options):
    data = _dataset(tmp_path / "data", outputs)
    args = [data, *_columns(outputs), *options, "--json"]
    state = tmp_path / "state.json"
    on_dask = run("score", *args, "--dask", scheduler[0], "--save-state", state)
    assert on_dask.exit_code == 0, on_dask.output
    single = run("score", *args)
    assert_same_report(json.loads(on_dask.stdout), json.loads(single.stdout))
    merged = run("merge", state, "--json")
    assert_same_report(json.loads(merged.stdout), json.loads(single.stdout))


def test_an_ensemble_on_a_cluster_gives_the_single_process_report(tmp_path, scheduler):
    table = pq.read_table(Path(__file__).parents[1] / "sample_data" / "ensemble.parquet")
    data = tmp_path / "ensemble.parquet"
    pq.write_table(table, data, row_group_size=300)
    args = [data, "--ensemble", "--member-weights", "2,1,1,0,1", "--by", "region", "--json"]
    on_dask = run("score", *args, "--dask", scheduler[0], "-q")
    assert on_dask.exit_code == 0, on_dask.output
    got, want = json.loads(on_dask.stdout), json.loads(run("score", *args).stdout)
    assert got["ensemble"] is not None
    assert_same_report(got, want)


def test_a_recalibration_map_applies_on_the_workers(tmp_path, scheduler):
    data = _dataset(tmp_path / "data", files=2, rows=900)
    fitted_on = tmp_path / "cal.parquet"
    table = pq.read_table(data / "part0.parquet")
    pq.write_table(table.filter(pc.not_equal(table["region"], "e")), fitted_on)
    recalibration = tmp_path / "map.json"
    fit = run("recalibrate", fitted_on, *_columns(1), "--by", "region", "-o", recalibration, "-q")
    assert fit.exit_code == 0, fit.output
    args = ["score", data, *_columns(1), "--recalibration", recalibration, "--json"]
    single = json.loads(run(*args).stdout)
    on_dask = run(*args, "--dask", scheduler[0])
    assert on_dask.exit_code == 0, on_dask.output
    assert single["recalibration"]["unseen_rows"] > 0  # region "e" was not in the map
    assert_same_report(json.loads(on_dask.stdout), single)


def test_progress_advances_by_partition_to_every_row(tmp_path, scheduler):
    data = _dataset(tmp_path / "data", files=2, rows=1_000)
    calls: list[tuple[int, int | None, int | None, int | None]] = []
    options = ScoreOptions(columns=ColumnSpec(mean="mean0", target="target0", spread="var0"))
    report = score_on_dask(
        str(data), options, address=scheduler[0], on_progress=lambda *done: calls.append(done)
    )
    assert report.rows == 2_000
    assert 1 < len(calls) <= 8  # by task: 2 files of 4 row groups, batched by the workers
    assert [call[0] for call in calls] == sorted(call[0] for call in calls)
    assert calls[-1] == (2_000, 2_000, None, None)


def test_csv_files_are_partitions_too(tmp_path, scheduler):
    folder = tmp_path / "csv"
    folder.mkdir()
    for k in range(3):
        pacsv.write_csv(pa.table(make_predictions(700, seed=k)), folder / f"p{k}.csv")
    single = run("score", folder, "--json")
    on_dask = run("score", folder, "--json", "--dask", scheduler[0])
    assert on_dask.exit_code == 0, on_dask.output
    assert_same_report(json.loads(on_dask.stdout), json.loads(single.stdout))


def test_bad_input_in_one_partition_is_the_single_process_error(tmp_path, scheduler, monkeypatch):
    """With a relative path, which the workers (elsewhere) read as the client's file."""
    monkeypatch.chdir(tmp_path)
    folder = Path("data")
    folder.mkdir()
    for k in range(3):
        columns = make_predictions(800, seed=k)
        if k == 1:
            columns["var"][650] = -1.0  # row 651 of the second file, in its last row group
        if k == 2:
            columns["var"][[10, 420]] = -2.0  # counted too, from other partitions
        pq.write_table(pa.table(columns), folder / f"p{k}.parquet", row_group_size=200)
    single = run("score", folder)
    on_dask = run("score", folder, "--dask", scheduler[0])
    assert_one_line_error(
        on_dask, "data/p1.parquet:", "column 'var'", "row 651", "3 negative values"
    )
    assert on_dask.stderr == single.stderr


def test_groups_over_the_limit_only_together_are_the_single_process_error(tmp_path, scheduler):
    """Each partition holds 2 groups, the file 8: the tree's merge finds the excess and returns
    it as data (no failed task, so no worker traceback), raised on the client as --max-groups."""
    rows = 400
    columns = make_predictions(rows, seed=3)
    path = tmp_path / "groups.parquet"
    table = pa.table({**columns, "key": np.arange(rows) // 50})
    pq.write_table(table, path, row_group_size=100)
    args = ["score", path, "--by", "key", "--max-groups", "3", "-q"]
    on_dask = run(*args, "--dask", scheduler[0])
    assert_one_line_error(on_dask, "--max-groups is 3", "more groups (")
    assert_one_line_error(run(*args), "--max-groups is 3")
    from distributed import Client

    with Client(scheduler[0], timeout=START_TIMEOUT_S) as client:
        logs = client.get_worker_logs()
    assert not any("Compute Failed" in line for log in logs.values() for _, line in log)


def test_an_unreachable_scheduler_is_one_line_within_the_timeout():
    started = time.monotonic()
    result = run(
        "score", "sample_data/preds.parquet", "--dask", "tcp://127.0.0.1:9", "--timeout", "5"
    )
    assert_one_line_error(result, "--dask cannot reach a Dask scheduler at tcp://127.0.0.1:9")
    assert time.monotonic() - started < 60


def test_a_local_cluster_of_two_workers(tmp_path):
    data = _dataset(tmp_path / "data", files=2, rows=800)
    args = ["score", data, *_columns(1), "--by", "region", "--json"]
    on_dask = run(*args, "--dask", "local", "--dask-workers", "2")
    assert on_dask.exit_code == 0, on_dask.output
    assert_same_report(json.loads(on_dask.stdout), json.loads(run(*args).stdout))


def test_help_and_plain_scoring_do_not_import_dask():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from gaussnll.cli.app import app\n"
        "for args in (['--help'], ['score', '--help'], ['score', 'sample_data/preds.parquet']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_per_row_losses_are_a_directory_of_parts_in_partition_order(tmp_path, scheduler):
    data = _dataset(tmp_path / "data", files=2, rows=800)
    single_rows, parts = tmp_path / "rows.parquet", tmp_path / "parts"
    args = ["score", data, *_columns(1), "--full", "--reduction", "none", "--id-col", "region"]
    single = run(*args, "--per-row", single_rows, "--json", "--chunk-size", "300")
    assert single.exit_code == 0
    on_dask = run(
        *args, "--per-row", parts, "--dask", scheduler[0], "-q", "--json", "--chunk-size", "300"
    )
    assert on_dask.exit_code == 0, on_dask.output
    # The report names the run's id column and chunk size, which states do not keep.
    assert_same_report(json.loads(on_dask.stdout), json.loads(single.stdout))
    names = sorted(path.name for path in parts.iterdir())
    assert names == [f"part-{k:05d}.parquet" for k in range(8)]
    got = pa.concat_tables(pq.read_table(parts / name) for name in names)
    assert got.equals(pq.read_table(single_rows))


def test_per_row_parts_replace_an_empty_directory_and_never_a_full_one(tmp_path, scheduler):
    data = _dataset(tmp_path / "data", files=1, rows=400)
    parts = tmp_path / "parts"
    parts.mkdir()
    args = ["score", data, *_columns(1), "--dask", scheduler[0], "-q", "--per-row", parts]
    assert run(*args).exit_code == 0
    assert sorted(path.name for path in parts.iterdir()) == [
        f"part-{k:05d}.parquet" for k in range(4)
    ]
    assert_one_line_error(run(*args), "--per-row", "give a new or empty directory")
    assert len(list(parts.iterdir())) == 4
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "parts"]


def test_a_failed_run_leaves_no_per_row_directory(tmp_path, scheduler):
    folder = tmp_path / "data"
    folder.mkdir()
    columns = make_predictions(400, seed=1)
    columns["var"][390] = -1.0
    pq.write_table(pa.table(columns), folder / "p.parquet", row_group_size=100)
    parts = tmp_path / "parts"
    result = run("score", folder, "--per-row", parts, "--dask", scheduler[0])
    assert_one_line_error(result, "row 391")
    assert not parts.exists()
    assert list(tmp_path.iterdir()) == [folder]


def test_a_worker_killed_mid_run_is_replaced_and_no_partition_counts_twice(tmp_path, scheduler):
    """Last in the module: it kills one of the module's two workers."""
    from distributed import Client

    address, workers = scheduler
    data = _dataset(tmp_path / "data", files=8, rows=60_000)
    args = ["score", str(data), *_columns(1), "--json", "-q"]
    command = [sys.executable, "-m", "gaussnll.cli", *args, "--dask", address]
    running = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with Client(address, timeout=START_TIMEOUT_S) as client:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            busy = [keys for keys in client.processing().values() if keys]
            if len(busy) == 2:
                break
            time.sleep(0.05)
        assert running.poll() is None, "the run ended before a worker could be killed"
        _stop(workers[0])
    stdout, stderr = running.communicate(timeout=300)
    assert running.returncode == 0, stderr
    single = run(*args)
    assert_same_report(json.loads(stdout), json.loads(single.stdout))


# --- one large plain CSV file in byte ranges ---------------------------------------------------


def _csv_partition_bytes(monkeypatch, size: int) -> None:
    """Cut CSV files into ranges of ``size`` bytes, so a small file spans many partitions."""
    from gaussnll.core.run import distributed

    monkeypatch.setattr(distributed, "CSV_PARTITION_BYTES", size)


def _csv_file(path: Path, rows: int, newline: str = "\n", final_newline: bool = True) -> Path:
    """Predictions with a region column, written with ``newline`` line ends."""
    columns = make_predictions(rows, seed=5)
    columns["region"] = np.random.default_rng(5).choice(["n", "s", "e"], size=rows)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.table(columns), sink)
    text = sink.getvalue().to_pybytes().replace(b"\n", newline.encode())
    path.write_bytes(text if final_newline else text.rstrip(b"\r\n"))
    return path


@pytest.mark.parametrize(
    ("newline", "final_newline"), [("\n", True), ("\r\n", True), ("\n", False)]
)
def test_one_csv_in_many_byte_ranges_gives_the_single_process_report_and_rows(
    tmp_path, scheduler, monkeypatch, newline, final_newline
):
    _csv_partition_bytes(monkeypatch, 4_096)
    data = _csv_file(tmp_path / "big.csv", 3_000, newline, final_newline)
    size = data.stat().st_size
    assert size > 40 * 4_096
    single_rows, parts = tmp_path / "rows.parquet", tmp_path / "parts"
    args = ["score", data, "--by", "region", "--json", "--full"]
    single = run(*args, "--per-row", single_rows)
    stale = tmp_path / ".parts.k1ll3d00.partial"  # a killed run's parts, cleaned by this one
    stale.mkdir()
    os.utime(stale, (time.time() - 3600,) * 2)
    on_dask = run(*args, "--per-row", parts, "--dask", scheduler[0], "-q")
    assert on_dask.exit_code == 0, on_dask.output
    assert_same_report(json.loads(on_dask.stdout), json.loads(single.stdout))
    names = sorted(path.name for path in parts.iterdir())
    assert names == [f"part-{k:05d}.parquet" for k in range(-(-size // 4_096))]
    got = pa.concat_tables(pq.read_table(parts / name) for name in names)
    assert got.equals(pq.read_table(single_rows))
    assert not stale.exists()


@pytest.mark.parametrize(
    ("column", "value", "fragments"),
    [
        ("var", "oops", ("column 'var'", "row 90001", "expected a number, got 'oops'")),
        ("var", "-1.5", ("column 'var'", "row 90001", "1 negative value")),
        ("region", "x", ("column 'region'", "row 90001", "got 'x'")),
    ],
)
def test_a_bad_row_deep_in_a_split_csv_is_named_by_its_row_in_the_file(
    tmp_path, scheduler, monkeypatch, column, value, fragments
):
    """Row 90,001 is 5 MB into the file, past the single process's first range (of 1 MB blocks,
    one per core up to 4), in which the region column holds integers: a text value after it
    is an error there, and must be on the cluster too, whose ranges it does not start."""
    _csv_partition_bytes(monkeypatch, 1 << 18)
    columns = make_predictions(100_000, seed=2)
    lines = ["mean,target,var,region"]
    for k, values in enumerate(
        zip(columns["mean"], columns["target"], columns["var"], strict=True)
    ):
        row = dict(zip(("mean", "target", "var"), map(str, values), strict=True))
        row["region"] = str(k % 3)
        if k == 90_000:
            row[column] = value
        lines.append(",".join(row.values()))
    data = tmp_path / "big.csv"
    data.write_text("\n".join(lines) + "\n")
    args = ["score", data, "--by", "region", "--chunk-size", "1000"]
    single = run(*args)
    on_dask = run(*args, "--dask", scheduler[0], "-q")
    assert_one_line_error(on_dask, f"{data}:", *fragments)
    assert on_dask.stderr == single.stderr


def test_a_header_only_csv_split_into_ranges_has_no_data_rows(tmp_path, scheduler, monkeypatch):
    from gaussnll.core.run import distributed

    monkeypatch.setattr(distributed, "CSV_PARTITION_BYTES", 3)
    data = tmp_path / "empty.csv"
    data.write_text("mean,target,var\n")
    assert len(distributed.partitions(str(data))) == 6
    on_dask = run("score", data, "--dask", scheduler[0])
    assert_one_line_error(on_dask, f"{data}: no data rows")
    assert on_dask.stderr == run("score", data).stderr


def test_progress_of_a_split_csv_advances_by_bytes(tmp_path, scheduler):
    data = _csv_file(tmp_path / "big.csv", 1_000)
    size = data.stat().st_size
    calls: list[tuple[int, int | None, int | None, int | None]] = []
    report = score_on_dask(
        str(data),
        ScoreOptions(),
        address=scheduler[0],
        on_progress=lambda *done: calls.append(done),
        csv_partition_bytes=8_192,
    )
    assert report.rows == 1_000
    assert 1 < len(calls) <= -(-size // 8_192)  # by task, of one or more ranges each
    assert [call[2] for call in calls] == sorted(call[2] for call in calls)
    assert calls[-1] == (0, None, size, size)


def test_compressed_and_small_csv_files_stay_one_partition_each(tmp_path):
    from gaussnll.core.run.distributed import partitions

    folder = tmp_path / "csv"
    folder.mkdir()
    table = pa.table(make_predictions(2_000))
    plain = write_table(table, folder / "a.csv")
    write_table(table, folder / "b.csv.gz")
    write_table(pa.table(make_predictions(10)), folder / "c.csv")
    size = plain.stat().st_size
    found = partitions(str(folder), csv_partition_bytes=10_000)
    ranges = [part.byte_range for part in found if part.name == str(plain)]
    assert ranges == [(start, min(size, start + 10_000)) for start in range(0, size, 10_000)]
    rest = [(Path(part.name).name, part.byte_range) for part in found[len(ranges) :]]
    assert rest == [("b.csv.gz", None), ("c.csv", None)]
    assert [part.index for part in found] == list(range(len(found)))


def test_a_csv_named_by_a_file_uri_is_split_into_byte_ranges_too(tmp_path, scheduler, monkeypatch):
    _csv_partition_bytes(monkeypatch, 8_192)
    data = _csv_file(tmp_path / "big.csv", 2_000)
    args = ["--by", "region", "--json"]
    on_dask = run("score", data.as_uri(), *args, "--dask", scheduler[0], "-q")
    assert on_dask.exit_code == 0, on_dask.output
    single = run("score", data, *args)
    assert_same_report(json.loads(on_dask.stdout), json.loads(single.stdout))
    from gaussnll.core.run.distributed import partitions

    assert len(partitions(data.as_uri())) == -(-data.stat().st_size // 8_192)


def test_group_keys_of_another_type_in_another_file_are_one_line(tmp_path, scheduler):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.csv").write_text("mean,var,target,g\n0,1,0.5,1\n0,1,0.2,2\n")
    (folder / "b.csv").write_text("mean,var,target,g\n0,1,0.5,x\n0,1,0.1,y\n")
    result = run("score", folder, "--by", "g", "--dask", scheduler[0], "-q")
    assert_one_line_error(result, "b.csv", "'g'", "text", "a.csv", "numbers")


def test_a_key_column_of_bytes_groups_as_its_text_on_dask(tmp_path, scheduler):
    folder = tmp_path / "keys"
    folder.mkdir()
    keys = ["ok", "no", "ok", "ok", "no", "ok"]
    for name, column in (
        ("a.parquet", pa.array([key.encode() for key in keys], pa.binary())),
        ("b.parquet", pa.array(keys)),
    ):
        pq.write_table(
            pa.table({**make_predictions(len(keys), seed=8), "g": column}), folder / name
        )
    options = ScoreOptions(columns=ColumnSpec(by=("g",)), device="cpu")
    report = score_on_dask(str(folder), options, address=scheduler[0])
    assert [(group.key, group.report.rows) for group in report.groups] == [
        (("no",), 4),
        (("ok",), 8),
    ]


def test_seconds_are_the_whole_runs_wall_time(tmp_path, scheduler):
    """Not the client's last step: the report's seconds cover every partition's task."""
    data = _dataset(tmp_path / "data", files=2, rows=1_000)
    options = ScoreOptions(columns=ColumnSpec(mean="mean0", target="target0", spread="var0"))
    delay = 0.05  # the client waits this long as each task (of the 8 partitions) finishes
    calls: list[tuple] = []
    started = time.perf_counter()
    report = score_on_dask(
        str(data),
        options,
        address=scheduler[0],
        on_progress=lambda *done: (calls.append(done), time.sleep(delay)),
    )
    assert 1 < len(calls) <= 8  # one per task: partitions are batched by the workers
    assert len(calls) * delay <= report.seconds <= time.perf_counter() - started
    assert report.rows_per_second == report.rows / report.seconds


def test_a_state_saved_on_a_cluster_names_the_map_it_applied(tmp_path, scheduler):
    data = _dataset(tmp_path / "data", files=2, rows=600)
    recalibration = tmp_path / "map.json"
    fit = run("recalibrate", data / "part0.parquet", *_columns(1), "-o", recalibration, "-q")
    assert fit.exit_code == 0, fit.output
    state = tmp_path / "state.json"
    args = ["score", data, *_columns(1), "--recalibration", recalibration, "-q"]
    assert run(*args, "--dask", scheduler[0], "--save-state", state).exit_code == 0
    merged = json.loads(run("merge", state, "--json").stdout)
    assert merged["recalibration"] == json.loads(run(*args, "--json").stdout)["recalibration"]
    assert merged["recalibration"]["file"] == str(recalibration)


def test_score_takes_the_cluster_as_its_executor(tmp_path, scheduler):
    """One entry point: ``score(path, options, executor=OnDask(address))`` is ``score_on_dask``,
    with the numbers of ``executor=InProcess()``; what only one executor takes is refused."""
    data = _dataset(tmp_path / "data", files=2, rows=700)
    options = ScoreOptions(columns=ColumnSpec(mean="mean0", target="target0", spread="var0"))
    here = score(str(data), options, executor=InProcess())
    there = score(str(data), options, executor=OnDask(scheduler[0]))
    assert there.rows == here.rows == 1_400
    assert there.nll == pytest.approx(here.nll, rel=1e-12)
    assert there.calibration is not None and here.calibration is not None
    assert there.calibration.crps == pytest.approx(here.calibration.crps, rel=1e-12)
    with pytest.raises(UsageError, match="takes a path"):
        score(pa.table({"mean": [0.0], "target": [0.0], "var": [1.0]}), executor=OnDask("local"))
    with pytest.raises(UsageError, match="RowWriter"):
        score(str(data), options, rows_to=str(tmp_path / "rows"))
