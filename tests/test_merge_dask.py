"""``gaussnll merge --dask``: state files loaded and merged on a cluster give the single
process's report and its errors. One ``LocalCluster`` of two worker processes serves the
module (``--dask tcp://...``); one test starts its own through ``--dask local``."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_one_line_error, assert_same_report, make_predictions
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import merge_on_dask
from gaussnll.core.run import distributed

pytest.importorskip("distributed")


def run(*args: object):
    return CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def address(local_dask: str) -> str:
    return local_dask


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> list[Path]:
    """Five states of shards with a key column, JSON and Arrow."""
    folder = tmp_path_factory.mktemp("states")
    paths = []
    for k in range(5):
        rows = 300 + 40 * k
        columns = make_predictions(rows, seed=k)
        keys = [["a", "b", "c", "d"][(k + j) % 4] for j in range(rows)]
        shard = folder / f"s{k}.parquet"
        pq.write_table(pa.table({**columns, "key": keys}), shard)
        state = folder / f"state{k}{'.arrow' if k % 2 else '.json'}"
        result = run("score", shard, "--by", "key", "--save-state", state, "-q")
        assert result.exit_code == 0, result.output
        paths.append(state)
    return paths


def _both(address: str, *args: object) -> tuple:
    """The results of a merge in one process and on the cluster."""
    return run("merge", *args), run("merge", *args, "--dask", address)


def test_a_cluster_merges_to_the_single_process_report(address, states):
    single, cluster = _both(address, *states, "--json", "-q")
    assert single.exit_code == 0 and cluster.exit_code == 0, cluster.output
    assert_same_report(json.loads(cluster.stdout), json.loads(single.stdout))
    one_single, one_cluster = _both(address, states[1], "--json", "-q")
    assert_same_report(json.loads(one_cluster.stdout), json.loads(one_single.stdout))


def test_a_tree_of_many_levels_gives_the_same_report(address, states, monkeypatch):
    monkeypatch.setattr(distributed, "TREE_WIDTH", 2)
    single, cluster = _both(address, *states, *states[:2], "--allow-duplicates", "--json", "-q")
    assert cluster.exit_code == 0, cluster.output
    assert_same_report(json.loads(cluster.stdout), json.loads(single.stdout))


def _other_options(folder: Path, name: str) -> Path:
    shard = folder / "other.parquet"
    pq.write_table(pa.table(make_predictions(100, seed=9)), shard)
    state = folder / name
    assert run("score", shard, "--eps", "0.01", "--save-state", state, "-q").exit_code == 0
    return state


@pytest.mark.parametrize(
    "order",
    [
        ["ok", "ok", "other", "bad"],  # another group's first file differs from the first
        ["ok", "bad", "other", "ok"],  # a malformed file comes first
        ["ok", "ok", "ok", "other", "ok"],
        ["bad"],
    ],
)
def test_errors_are_the_single_process_line_of_the_first_file_at_fault(
    tmp_path, address, states, monkeypatch, order
):
    monkeypatch.setattr(distributed, "TREE_WIDTH", 2)  # files at fault in different tasks
    bad = tmp_path / "bad.arrow"
    bad.write_bytes(states[1].read_bytes()[:200])
    other = _other_options(tmp_path, "other.json")
    paths = {"ok": states[0], "bad": bad, "other": other}
    single, cluster = _both(address, *[paths[name] for name in order], "--allow-duplicates")
    assert_one_line_error(single)
    assert_one_line_error(cluster)
    assert cluster.stderr == single.stderr
    at_fault = next(name for name in order if name != "ok")
    expected = "bad.arrow" if at_fault == "bad" else "other.json were scored with different"
    assert expected in single.stderr


def test_a_state_given_twice_is_the_single_process_line(tmp_path, address, states, monkeypatch):
    monkeypatch.setattr(distributed, "TREE_WIDTH", 2)  # the two copies in different tasks
    copy = Path(shutil.copy(states[0], tmp_path / "copy.json"))
    single, cluster = _both(address, states[0], *states[1:4], copy)
    assert_one_line_error(single, "copy.json holds the same state as", states[0].name)
    assert cluster.stderr == single.stderr
    single, cluster = _both(address, states[0], copy, "--allow-duplicates", "--json", "-q")
    assert cluster.exit_code == 0, cluster.output
    assert json.loads(cluster.stdout)["rows"] == 2 * 300
    assert_same_report(json.loads(cluster.stdout), json.loads(single.stdout))


def test_malformed_sums_are_found_on_the_workers(tmp_path, address, states, monkeypatch):
    monkeypatch.setattr(distributed, "TREE_WIDTH", 2)
    document = json.loads(states[0].read_text())
    name = next(iter(document["sums"]))
    document["sums"][name]["shape"] = [*document["sums"][name]["shape"], 1]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(document))
    single, cluster = _both(address, states[2], broken, _other_options(tmp_path, "o.json"))
    assert_one_line_error(single, "broken.json")
    assert cluster.stderr == single.stderr


def test_states_of_other_outputs_are_the_single_process_line(tmp_path, address, monkeypatch):
    """Same options, list columns of 1 and 2 values a row: the outputs differ."""
    monkeypatch.setattr(distributed, "TREE_WIDTH", 2)
    paths = []
    for width in (1, 1, 2):
        columns = make_predictions(60 * width, seed=width)
        table = pa.table(
            {role: pa.array(list(columns[role].reshape(60, width))) for role in columns}
        )
        shard = tmp_path / f"w{width}_{len(paths)}.parquet"
        pq.write_table(table, shard)
        paths.append(tmp_path / f"{shard.stem}.json")
        result = run("score", shard, "--save-state", paths[-1], "-q")
        assert result.exit_code == 0, result.output
    single, cluster = _both(address, *paths)
    assert_one_line_error(single, "different numbers of outputs (1, 2)")
    assert cluster.stderr == single.stderr


def test_the_group_limit_applies_on_the_cluster(address, states):
    single, cluster = _both(address, *states, "--max-groups", "3")
    assert_one_line_error(cluster, "--max-groups is 3")
    assert_one_line_error(single, "--max-groups is 3")


def test_a_local_cluster_of_two_workers(tmp_path, states):
    copies = [shutil.copy(state, tmp_path / state.name) for state in states[:2]]
    single = run("merge", *copies, "--json", "-q")
    local = run("merge", *copies, "--json", "-q", "--dask", "local", "--dask-workers", "2")
    assert local.exit_code == 0, local.output
    assert_same_report(json.loads(local.stdout), json.loads(single.stdout))


def test_a_cluster_run_saves_an_arrow_state_by_its_name(tmp_path, address):
    shard = tmp_path / "s.parquet"
    pq.write_table(pa.table(make_predictions(500, seed=3)), shard, row_group_size=100)
    state = tmp_path / "run.arrow"
    result = run("score", shard, "--dask", address, "--save-state", state, "--json", "-q")
    assert result.exit_code == 0, result.output
    assert state.read_bytes()[:6] == b"ARROW1"
    assert_same_report(
        json.loads(run("merge", state, "--json", "-q").stdout), json.loads(result.stdout)
    )


def test_seconds_are_the_whole_merges_wall_time(address, states):
    delay = 0.05  # the client waits this long as each of the 5 states loads
    started = time.perf_counter()
    merged = merge_on_dask(
        [str(state) for state in states],
        address=address,
        on_progress=lambda *done: time.sleep(delay),
    )
    report = merged.report()
    assert 5 * delay <= report.seconds <= time.perf_counter() - started


def test_a_cluster_merge_reports_the_map_the_states_applied(tmp_path, address):
    recalibration = tmp_path / "map.json"
    recalibration.write_text(json.dumps({"schema": "gaussnll.recalibration/1", "eps": 1e-6,
                                         "outputs": ["mean"], "scale": [1.5]}))  # fmt: skip
    states = []
    for k in range(2):
        shard = tmp_path / f"s{k}.parquet"
        pq.write_table(pa.table(make_predictions(200, seed=k)), shard)
        states.append(tmp_path / f"s{k}.json")
        result = run("score", shard, "--recalibration", recalibration, "--save-state", states[-1])
        assert result.exit_code == 0, result.output
    single, cluster = _both(address, *states, "--json", "-q")
    got = json.loads(cluster.stdout)["recalibration"]
    assert got == json.loads(single.stdout)["recalibration"]
    assert got["file"] == str(recalibration) and got["scale"] == [1.5]


def test_an_empty_input_scored_on_the_cluster_leaves_its_empty_state(tmp_path, address):
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table(make_predictions(10, seed=0)).slice(0, 0), empty)
    state = tmp_path / "empty.json"
    result = run("score", empty, "--dask", address, "--save-state", state, "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 0
    assert json.loads(state.read_text())["outputs"] is None
    assert_one_line_error(run("score", empty, "--dask", address), "no data rows")
