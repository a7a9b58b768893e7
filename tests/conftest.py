"""Shared helpers: write the same predictions in every supported format, and torch's answer."""

from __future__ import annotations

import bz2
import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F


def make_predictions(rows: int, seed: int = 0, outputs: int = 1) -> dict[str, np.ndarray]:
    """Heteroscedastic predictions with an NLL far from zero, so relative errors mean something."""
    rng = np.random.default_rng(seed)
    shape = (rows, outputs) if outputs > 1 else (rows,)
    mean = rng.normal(size=shape)
    var = rng.uniform(0.05, 3.0, size=shape)
    target = mean + 1.3 * np.sqrt(var) * rng.standard_normal(shape)
    return {"mean": mean, "var": var, "target": target}


def write_table(table: pa.Table, path: Path) -> Path:
    """Write ``table`` in the format its file name asks for."""
    name = path.name
    if name.endswith((".parquet", ".pq")):
        pq.write_table(table, path, row_group_size=max(1, table.num_rows // 3))
    elif name.endswith((".arrow", ".feather")):
        feather.write_feather(table, path, chunksize=max(1, table.num_rows // 3))
    elif name.endswith(".csv"):
        pacsv.write_csv(table, path)
    elif name.endswith(".csv.gz"):
        path.write_bytes(gzip.compress(_csv_bytes(table)))
    elif name.endswith(".csv.bz2"):
        path.write_bytes(bz2.compress(_csv_bytes(table)))
    elif name.endswith(".csv.zst"):
        zstandard = pytest.importorskip("zstandard")
        path.write_bytes(zstandard.ZstdCompressor().compress(_csv_bytes(table)))
    else:
        raise ValueError(name)
    return path


def _csv_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


def torch_nll(columns: dict[str, np.ndarray], **options: object) -> float:
    """torch's one-shot gaussian_nll_loss on the whole arrays, in float64."""
    mean, target, var = (torch.from_numpy(columns[k]) for k in ("mean", "target", "var"))
    return F.gaussian_nll_loss(mean, target, var, **options).item()


def _flat_numbers(value: object) -> list[float]:
    """Every number in a report's JSON, in order."""
    if isinstance(value, dict):
        return [n for key in sorted(value) for n in _flat_numbers(value[key])]
    if isinstance(value, list | tuple):
        return [n for item in value for n in _flat_numbers(item)]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return []
    return [float(value)]


def report_numbers(report) -> list[float]:
    """Every number of a report but its timings, in a fixed order."""
    payload = report.to_dict()
    for timing in ("seconds", "rows_per_second"):
        payload.pop(timing)
    return _flat_numbers(payload)


def assert_one_line_error(result, *fragments: str) -> None:
    """A CLI result that failed with exit 2 and exactly one ``gaussnll:`` line on stderr."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gaussnll: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def predictions() -> dict[str, np.ndarray]:
    return make_predictions(2_500, seed=1)


@pytest.fixture(scope="module")
def local_dask() -> Iterator[str]:
    """The address of a ``LocalCluster`` of two single-threaded worker processes on
    127.0.0.1, for one test module."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def parquet_file(tmp_path: Path, predictions: dict[str, np.ndarray]) -> Path:
    table = pa.table({"id": np.arange(2_500), **predictions})
    return write_table(table, tmp_path / "preds.parquet")


def _hypothesis_profiles() -> None:
    """Under CI the property tests replay a fixed set of examples (a landing must not depend on
    a lucky draw); locally they explore afresh each run."""
    import os

    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, database=None)
    if os.environ.get("CI"):
        settings.load_profile("ci")


_hypothesis_profiles()


RUN_KEYS = {"path", "format", "seconds", "rows_per_second", "settings", "config_file", "device"}


def assert_same_report(got: object, want: object, where: str = "report") -> None:
    """Two JSON reports agree: every float to 1e-12 relative, everything else exactly; the
    keys that describe the run (``RUN_KEYS``) are not compared."""
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert set(got) == set(want), where
        for key in want:
            if key not in RUN_KEYS:
                assert_same_report(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for k, (mine, theirs) in enumerate(zip(got, want, strict=True)):
            assert_same_report(mine, theirs, f"{where}[{k}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, float), where
        assert got == pytest.approx(want, rel=1e-12, abs=1e-300, nan_ok=True), where
    else:
        assert got == want and type(got) is type(want), where


def assert_scored_alike_however_cut(folder: Path, table: pa.Table, args: list[str], dask: str):
    """``table`` scored with ``args`` gives one report (``assert_same_report``) however its rows
    are cut and added: one file in one chunk on one worker; three files (a directory) in small
    chunks on two workers; the three files' states merged; the directory on the Dask cluster
    at ``dask``. Returns the report."""
    import json

    from typer.testing import CliRunner

    from gaussnll.cli.app import app

    def run(*given: object) -> dict:
        result = CliRunner().invoke(app, [str(arg) for arg in given])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout) if result.stdout.startswith("{") else {}

    parts, states = folder / "parts", folder / "states"
    parts.mkdir()
    states.mkdir()
    whole = folder / "whole.parquet"
    pq.write_table(table, whole)
    cuts = np.linspace(0, table.num_rows, 4).astype(int)
    for k, start in enumerate(cuts[:-1]):
        rows = table.slice(start, cuts[k + 1] - start)
        pq.write_table(rows, parts / f"part{k}.parquet", row_group_size=max(1, rows.num_rows // 3))
        run("score", parts / f"part{k}.parquet", *args, "-q", "--save-state", states / f"{k}.json")
    want = run("score", whole, *args, "--json", "--chunk-size", "1000000", "--workers", "1")
    cut = run("score", parts, *args, "--json", "--chunk-size", "64", "--workers", "2")
    merged = run("merge", *sorted(states.iterdir()), "--json")
    on_dask = run("score", parts, *args, "--json", "--dask", dask)
    for name, got in (("workers", cut), ("merge", merged), ("dask", on_dask)):
        assert_same_report(got | {"chunk_size": want["chunk_size"]}, want, name)
    return want
