"""Interruptions, write failures and arbitrary input: exit codes, one-line errors, no leftovers."""

from __future__ import annotations

import errno
import io
import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core.io import csv_input


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_signal_mid_run_exits_cleanly_and_leaves_no_output(tmp_path, sig, code, word):
    out = tmp_path / "rows.parquet"
    process = subprocess.Popen(
        [sys.executable, "-m", "gaussnll.cli", "score", "-", "--per-row", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdin.write(b"mean,target,var\n" + b"0.5,0.25,1.5\n" * 1000)
    process.stdin.flush()  # less than one CSV block: the reader waits for more
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".rows.parquet.*.partial")):
        assert time.monotonic() < deadline, "the run never opened its temporary output"
        time.sleep(0.05)
    time.sleep(0.2)
    process.send_signal(sig)
    assert process.wait(timeout=60) == code
    stderr = process.stderr.read().decode()
    assert stderr.strip() == f"gaussnll: {word}; no output was written"
    assert list(tmp_path.iterdir()) == []
    process.stdin.close()


def test_disk_full_is_a_one_line_error_and_leaves_nothing(tmp_path, monkeypatch):
    source = tmp_path / "p.parquet"
    pq.write_table(pa.table({"mean": [1.0, 2.0], "target": [1.5, 2.0], "var": [1.0, 2.0]}), source)

    def full(self, batch, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", full)
    out = tmp_path / "rows.parquet"
    result = run("score", str(source), "--per-row", str(out))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"gaussnll: error: cannot write {out}: [Errno 28] No space left on device"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet"]


def test_output_directory_missing(tmp_path):
    source = tmp_path / "p.parquet"
    pq.write_table(pa.table({"mean": [1.0], "target": [1.5], "var": [1.0]}), source)
    result = run("score", str(source), "--per-row", str(tmp_path / "no" / "rows.csv"))
    assert result.exit_code == 2
    assert "cannot create" in result.stderr and "No such file or directory" in result.stderr


def test_debug_shows_the_traceback():
    result = run("score", "missing.parquet", "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "gaussnll: error: missing.parquet: no such file or directory"
    )


EDGE_VALUES = [
    0.0,
    -0.0,
    5e-324,
    2.2e-308,
    1e-310,
    1e308,
    -1e308,
    math.nan,
    math.inf,
    -math.inf,
    1.0,
    -2.5,
    1e-7,
    3.0,
]
NAMES = ["mean", "target", "var", "Mean", "targt", "x", "mean ", "v,ar", "ü"]


@st.composite
def prediction_csv(draw) -> bytes:
    """CSV bytes: sometimes garbage, sometimes odd headers; mostly the three columns (plus
    extras) holding edge values, variances mostly non-negative so that many runs succeed."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    if draw(st.integers(0, 3)) == 0:
        columns = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5))
    else:
        columns = ["mean", "target", "var", *draw(st.lists(st.sampled_from(NAMES[3:]), max_size=2))]
    anything = st.one_of(st.sampled_from(EDGE_VALUES), st.floats(allow_nan=True))
    spread = st.one_of(
        st.sampled_from([v for v in EDGE_VALUES if not v < 0]),
        st.floats(min_value=0, allow_infinity=False),
        anything,
    )
    row = st.tuples(*(spread if name == "var" else anything for name in columns))
    rows = draw(st.lists(row, max_size=25))
    header = ",".join(f'"{name}"' if "," in name else name for name in columns)
    body = "".join(",".join(repr(v) for v in values) + "\n" for values in rows)
    return (header + "\n" + body).encode()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=prediction_csv(), policy=st.sampled_from(["error", "skip", "propagate"]))
@pytest.mark.parametrize("tiny_ranges", [False, True], ids=["one-range", "tiny-ranges"])
def test_any_csv_exits_0_or_2_and_0_means_torch_agrees(
    tmp_path, monkeypatch, tiny_ranges, data, policy
):
    if tiny_ranges:  # a file of a few rows is cut into ranges of a line or two
        monkeypatch.setattr(csv_input, "MIN_BLOCK_BYTES", 128)
        monkeypatch.setattr(csv_input, "MAX_BLOCK_BYTES", 256)
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    result = run("score", str(path), "--json", "--nan-policy", policy)
    assert result.exit_code in (0, 2), (result.exit_code, result.exception, data)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if result.exit_code == 2:
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stdout == ""
        return
    payload = json.loads(result.stdout)
    expected = reference_nll(data, policy)
    if not math.isfinite(expected):
        assert payload["nll"] is None  # JSON has no NaN or infinity: written as null
    else:
        assert payload["nll"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def reference_nll(data: bytes, policy: str) -> float:
    """torch's mean NLL on the same CSV as pyarrow parses it (rows dropped under skip)."""
    types = {name: pa.float64() for name in ("mean", "target", "var")}
    table = pacsv.read_csv(
        io.BytesIO(data),
        convert_options=pacsv.ConvertOptions(
            include_columns=["mean", "target", "var"], column_types=types
        ),
    )
    mean, target, var = (table.column(n).to_numpy() for n in ("mean", "target", "var"))
    if policy == "skip":
        keep = np.isfinite(mean) & np.isfinite(target) & np.isfinite(var)
        mean, target, var = mean[keep], target[keep], var[keep]
    loss = F.gaussian_nll_loss(*(torch.from_numpy(a.copy()) for a in (mean, target, var)))
    return loss.item()
