"""The Python API: score() on every source type equals the CLI; Scorer accumulates and merges."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from conftest import write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import (
    ColumnSpec,
    InputError,
    OptionError,
    ScoreOptions,
    Scorer,
    UsageError,
    compare,
    score,
)

COMPARED = ("rows", "elements", "nll", "nll_sum")
CALIBRATION = ("crps", "mace", "var_scale", "pit_counts", "coverage", "check_score")


@pytest.fixture
def cli_json(parquet_file):
    result = CliRunner().invoke(app, ["score", str(parquet_file), "--json", "--chunk-size", "300"])
    assert result.exit_code == 0
    return json.loads(result.stdout)


def assert_same_numbers(report, expected):
    payload = report.to_dict()
    for key in COMPARED:
        assert payload[key] == pytest.approx(expected[key], rel=1e-12), key
    for key in CALIBRATION:
        assert payload["calibration"][key] == pytest.approx(expected["calibration"][key], rel=1e-12)
    assert payload["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-12)


def tensor_chunks(predictions, size):
    tensors = [torch.from_numpy(predictions[k]) for k in ("mean", "target", "var")]
    return [tuple(t[i : i + size] for t in tensors) for i in range(0, 2_500, size)]


def halves(tmp_path, predictions):
    table = pa.table(predictions)
    return [
        str(write_table(table.slice(0, 1_000), tmp_path / "a.parquet")),
        str(write_table(table.slice(1_000), tmp_path / "b.parquet")),
    ]


SOURCES = {
    "path": lambda f, p, tmp: str(f),
    "list of paths": lambda f, p, tmp: halves(tmp, p),
    "DataFrame": lambda f, p, tmp: pq.read_table(f).to_pandas(),
    "Table": lambda f, p, tmp: pq.read_table(f),
    "RecordBatchReader": lambda f, p, tmp: pa.RecordBatchReader.from_batches(
        pq.read_table(f).schema, pq.read_table(f).to_batches(max_chunksize=333)
    ),
    "tensor chunks": lambda f, p, tmp: tensor_chunks(p, 400),
}


@pytest.mark.parametrize("kind", SOURCES)
def test_every_source_type_equals_the_cli(tmp_path, parquet_file, predictions, cli_json, kind):
    source = SOURCES[kind](parquet_file, predictions, tmp_path)
    assert_same_numbers(score(source, device="cpu", chunk_size=256), cli_json)


def test_scorer_merges_partitions_exactly(predictions, cli_json):
    chunks = tensor_chunks(predictions, 500)
    left, right = Scorer(device="cpu"), Scorer(device="cpu")
    for chunk in chunks[:2]:
        left.update(*chunk)
    for chunk in chunks[2:]:
        right.update(*chunk)
    left.merge(right)
    assert_same_numbers(left.report(), cli_json)


def test_scorer_update_returns_torch_element_losses(predictions):
    mean, target, var = tensor_chunks(predictions, 2_500)[0]
    losses = Scorer(ScoreOptions(full=True, device="cpu")).update(mean, target, var)
    expected = F.gaussian_nll_loss(mean, target, var, full=True, reduction="none")
    assert torch.equal(losses[:, 0], expected)


def test_scorer_multi_output_and_homoscedastic(predictions):
    mean = torch.from_numpy(np.stack([predictions["mean"]] * 2, axis=1))
    target = torch.from_numpy(np.stack([predictions["target"]] * 2, axis=1))
    var = torch.from_numpy(predictions["var"])  # (rows,): one variance per row, broadcast
    scorer = Scorer(device="cpu", calibration=False)
    scorer.update(mean, target, var)
    expected = F.gaussian_nll_loss(mean, target, var).item()  # torch unsqueezes var the same way
    assert scorer.report().nll == pytest.approx(expected, rel=1e-12)


def test_scorer_errors_count_rows_across_updates(predictions):
    scorer = Scorer(device="cpu")
    chunks = tensor_chunks(predictions, 100)
    scorer.update(*chunks[0])
    mean, target, var = (t.clone() for t in chunks[1])
    var[7] = -1.0
    with pytest.raises(InputError, match=r"<tensors>: column 'var': row 108: expected a non-neg"):
        scorer.update(mean, target, var)


def test_to_frame_has_every_scalar(parquet_file):
    frame = score(str(parquet_file), device="cpu").to_frame()
    assert len(frame) == 1
    for column in (
        "nll",
        "rows",
        "crps",
        "var_scale",
        "rmse",
        "coverage@0.9",
        "interval_width@0.5",
    ):
        assert column in frame.columns
    assert frame.loc[0, "rows"] == 2_500


def test_bad_sources():
    with pytest.raises(UsageError, match="score\\(\\) takes a path"):
        score(42)
    with pytest.raises(UsageError, match="each chunk must be"):
        score([(1.0, 2.0)])
    with pytest.raises(InputError, match="column 'mean': no such column"):
        score(pa.table({"mu": [1.0], "target": [1.0], "var": [1.0]}))


def named_columns(rows: int = 300, seed: int = 11) -> pd.DataFrame:
    """Predictions under other names: mean ``mu``, target ``y``, the spread three ways."""
    rng = np.random.default_rng(seed)
    mu, sd = rng.normal(size=rows), rng.uniform(0.2, 2.0, size=rows)
    y = mu + sd * rng.standard_normal(rows)
    return pd.DataFrame({"mu": mu, "y": y, "sd": sd, "v": sd**2, "lv": np.log(sd**2)})


@pytest.mark.parametrize("spread", [{"var_col": "v"}, {"std_col": "sd"}, {"log_var_col": "lv"}])
def test_the_command_lines_column_names_are_keyword_arguments(tmp_path, spread):
    """``--std-col sd`` is ``std_col="sd"`` in Python, as in the config file; the old spelling
    (``columns=ColumnSpec(...)``) still works, and the numbers are torch's."""
    frame = named_columns()
    expected = F.gaussian_nll_loss(
        *(torch.tensor(frame[k].to_numpy()) for k in ("mu", "y", "v"))
    ).item()
    report = score(frame, mean_col="mu", target_col="y", device="cpu", **spread)
    assert report.nll == pytest.approx(expected, rel=1e-12)
    (kind,) = spread
    assert report.columns[kind.removesuffix("_col")] == [spread[kind]]
    spec = ColumnSpec(mean="mu", target="y", spread="sd", spread_kind="std")
    assert score(frame, columns=spec, device="cpu").nll == pytest.approx(expected, rel=1e-12)
    paths = [str(tmp_path / f"{name}.parquet") for name in "ab"]
    for path in paths:
        frame.to_parquet(path)
    compared = compare(*paths, mean_col="mu", target_col="y", device="cpu", **spread)
    assert compared.baseline.nll == pytest.approx(expected, rel=1e-12)
    assert compared.paired.delta_nll == 0


def test_keyword_column_names_override_columns_and_refuse_two_spreads():
    frame = named_columns()
    frame["g"] = np.arange(len(frame)) % 3
    report = score(
        frame, columns=ColumnSpec(mean="nope"), mean_col="mu", target_col="y", var_col="v",
        by=["g"], device="cpu",
    )  # fmt: skip
    assert report.columns["mean"] == ["mu"] and report.by == ("g",)
    with pytest.raises(OptionError, match="var_col and std_col contradict each other"):
        score(frame, var_col="v", std_col="sd")


def test_to_frame_gives_counts_as_integers(parquet_file):
    """Counts are integers (``rows``, ``inside_counts@0.9``); means and sums stay floats."""
    frame = score(str(parquet_file), device="cpu").to_frame()
    for column in ("rows", "elements", "inside_counts@0.9", "skipped_rows", "eps_floored"):
        assert frame[column].dtype == np.int64, column
    assert frame.loc[0, "rows"] == 2_500
    for column in ("nll", "nll_sum", "coverage@0.9"):
        assert frame[column].dtype == np.float64, column
