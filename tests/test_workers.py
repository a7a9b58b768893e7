"""Scoring on several worker threads: the same report, rows and errors as on one."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import torch
from conftest import make_predictions, report_numbers, torch_nll, write_table

from gaussnll.core import ColumnSpec, InputError, ScoreOptions, score
from gaussnll.core.io.sources import FileFormat
from gaussnll.core.io.writers import RowWriter
from gaussnll.core.run import engine as score_engine
from gaussnll.core.run import workers as worker_pool
from gaussnll.core.run.workers import auto_workers
from gaussnll.core.state import sinks


@pytest.mark.parametrize("chunk_size", [7, 300])
@pytest.mark.parametrize("workers", [2, 3])
def test_every_metric_has_one_workers_bits(parquet_file, predictions, chunk_size, workers):
    """The sums get the same additions in the same order whichever thread computed a chunk."""
    options = ScoreOptions(chunk_size=chunk_size, device="cpu")
    one = score(str(parquet_file), options, workers=1)
    many = score(str(parquet_file), options, workers=workers)
    assert many.nll_mean == pytest.approx(torch_nll(predictions), rel=1e-12)
    assert report_numbers(many) == report_numbers(one)


def test_groups_with_workers_have_one_workers_bits(tmp_path):
    columns = make_predictions(3_000, seed=4)
    columns["key"] = np.arange(3_000) % 37
    path = write_table(pa.table(columns), tmp_path / "groups.parquet")
    options = ScoreOptions(chunk_size=100, device="cpu", columns=ColumnSpec(by=("key",)))
    one, many = (score(str(path), options, workers=w) for w in (1, 3))
    assert [report_numbers(g.report) for g in many.groups] == [
        report_numbers(g.report) for g in one.groups
    ]


def test_per_row_losses_keep_the_file_order(parquet_file):
    tables = []
    for workers in (1, 3):
        buffer = io.BytesIO()
        writer = RowWriter(buffer, FileFormat.CSV)
        score(
            str(parquet_file),
            ScoreOptions(chunk_size=64, device="cpu", workers=workers),
            rows_to=writer,
        )
        writer.close()
        tables.append(pacsv.read_csv(io.BytesIO(buffer.getvalue())))
    assert tables[0].num_rows == 2_500
    assert tables[0].equals(tables[1])


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_first_bad_row_in_file_order_wins(tmp_path, workers):
    columns = make_predictions(200)
    columns["target"][40] = np.nan  # chunk 2 of 16 rows
    columns["var"][[70, 150]] = -1.0  # chunks 4 and 9: other workers, maybe done first
    path = write_table(pa.table(columns), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="column 'target': row 41: expected a finite number"):
        score(str(path), ScoreOptions(chunk_size=16, device="cpu", workers=workers))


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_negatives_in_chunks_still_in_flight_are_counted(tmp_path, workers):
    columns = make_predictions(200)
    columns["var"][[20, 40, 60, 190]] = -1.0  # chunks 1, 2, 3 (in flight together) and 11
    path = write_table(pa.table(columns), tmp_path / "neg.csv")
    with pytest.raises(InputError) as caught:
        score(str(path), ScoreOptions(chunk_size=16, device="cpu", workers=workers))
    assert str(caught.value).endswith(
        "row 21: expected a non-negative variance, got -1.0 (4 negative values in all)"
    )


def test_torch_threads_are_restored(parquet_file):
    before = torch.get_num_threads()
    score(str(parquet_file), ScoreOptions(chunk_size=500, device="cpu", workers=2))
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("cores", "compute_bound", "reading_bound"),
    [(1, 1, 1), (2, 1, 1), (4, 3, 2), (6, 4, 3), (64, 4, 4)],
)
def test_automatic_workers(monkeypatch, cores, compute_bound, reading_bound):
    monkeypatch.setattr(worker_pool.os, "cpu_count", lambda: cores)
    cpu = torch.device("cpu")
    assert auto_workers(cpu, grouped=False, compute_bound=True) == compute_bound
    assert auto_workers(cpu, grouped=False, compute_bound=False) == reading_bound
    assert auto_workers(cpu, grouped=True, compute_bound=True) == 1
    assert auto_workers(torch.device("cuda"), grouped=False, compute_bound=True) == 1


@pytest.mark.parametrize(
    ("suffix", "calibration", "expected"),
    [("parquet", True, 3), ("parquet", False, 2), ("csv", True, 2), ("csv", False, 2)],
)
def test_default_workers_follow_the_bottleneck(
    monkeypatch, tmp_path, suffix, calibration, expected
):
    """On 4 cores: a worker per core but the reader's only where scoring, not reading, is the
    bottleneck (calibration of Parquet); CSV parsing takes longer than the calibration."""
    monkeypatch.setattr(worker_pool.os, "cpu_count", lambda: 4)
    chosen = []

    def recording_pool(scorer, workers):
        chosen.append(workers)
        return worker_pool.ScorerPool(scorer, workers)

    monkeypatch.setattr(score_engine, "ScorerPool", recording_pool)
    path = write_table(pa.table(make_predictions(300)), tmp_path / f"p.{suffix}")
    score(str(path), ScoreOptions(device="cpu", calibration=calibration))
    assert chosen == [expected]


def test_workers_option_on_the_command_line(parquet_file, tmp_path):
    from typer.testing import CliRunner

    from gaussnll.cli.app import app

    def run(*args: str):
        return CliRunner().invoke(app, ["score", str(parquet_file), "--json", "-q", *args])

    one, two = (json.loads(run("--workers", n).stdout) for n in ("1", "2"))
    assert two["nll"] == pytest.approx(one["nll"], rel=1e-12)
    assert two["config"]["settings"]["workers"] == 2
    (tmp_path / "gaussnll.toml").write_text("workers = 3\n")
    from_file = json.loads(run("--config", str(tmp_path / "gaussnll.toml")).stdout)
    assert from_file["config"]["settings"]["workers"] == 3
    bad = run("--workers", "-1")
    assert bad.exit_code == 2 and "--workers must be 0 (automatic) or more" in bad.stderr


def test_groups_sums_are_added_on_a_thread_of_their_own_with_the_same_bits(tmp_path, monkeypatch):
    """With one worker and --by, the groups' sums are added by their own thread in chunk order
    (every family, the σ buckets' compound change included): the same bits as three workers,
    whose changes the consumer makes."""
    columns = make_predictions(3_000, seed=5)
    columns["key"] = np.arange(3_000) % 41
    path = write_table(pa.table(columns), tmp_path / "groups.parquet")
    options = ScoreOptions(
        chunk_size=97, device="cpu", columns=ColumnSpec(by=("key",)), group_metrics=("all",)
    )
    threads = set()
    apply = sinks.Ledger.apply

    def applied(ledger: sinks.Ledger) -> None:
        threads.add(threading.current_thread().name)
        apply(ledger)

    monkeypatch.setattr(sinks.Ledger, "apply", applied)
    one = score(str(path), options, workers=1)
    assert {name.split("_")[0] for name in threads} == {"gaussnll-groups"}
    many = score(str(path), options, workers=3)
    assert [report_numbers(g.report) for g in one.groups] == [
        report_numbers(g.report) for g in many.groups
    ]
    assert report_numbers(one) == report_numbers(many)


def test_an_error_adding_the_groups_sums_reaches_the_caller(tmp_path, monkeypatch):
    columns = make_predictions(1_000, seed=6)
    columns["key"] = np.arange(1_000) % 7
    path = write_table(pa.table(columns), tmp_path / "groups.parquet")
    calls = []
    add_parts = sinks.GroupSink.add_parts

    def failing(self, *args):
        calls.append(threading.current_thread().name)
        if len(calls) == 5:
            raise RuntimeError("the groups' sums failed")
        add_parts(self, *args)

    monkeypatch.setattr(sinks.GroupSink, "add_parts", sinks.deferrable(failing))
    options = ScoreOptions(chunk_size=50, device="cpu", columns=ColumnSpec(by=("key",)))
    with pytest.raises(RuntimeError, match="the groups' sums failed"):
        score(str(path), options, workers=1)
    assert calls[-1].startswith("gaussnll-groups")
