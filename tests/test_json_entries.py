"""Group entries written by column (cli/json_entries.py) are the bytes ``json.dumps`` writes of
each group's ``to_dict`` (non-finite floats as null), across the input forms, metric families,
keys and orders, and however the groups fall into batches."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_predictions
from typer.testing import CliRunner

from gaussnll.cli import json_entries, render
from gaussnll.cli.app import app
from gaussnll.cli.json_lines import finite
from gaussnll.cli.render import report_json
from gaussnll.cli.streams import write_behind
from gaussnll.core import ColumnSpec, GroupScore, PerReport, Shared, score
from gaussnll.core.report import derive

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
KEYS = ['quote " and \\ backslash', "tab\tnew\nline\x07", "ünï 😀", "%s %d %% {}", None, "plain"]
FLOAT_KEYS = [float("nan"), float("inf"), -0.0, 1.5, 2.0]
TIMINGS = ('"seconds":', '"rows_per_second":')


def plain(groups: list[GroupScore], by: tuple[str, ...]) -> list[str]:
    """The reference: ``json.dumps`` of each group's entry."""
    return [json.dumps(finite(group.to_dict(by)), default=list) for group in groups]


def plain_blocks(groups: Iterable[GroupScore], by: tuple[str, ...]) -> list[list[str]]:
    """The reference's entries, all in one batch."""
    return [plain(list(groups), by)]


def keyed(name: str, rows: int | None = None) -> Path:
    """A sample file with keys that need escapes, null keys and non-finite float keys."""
    table = pq.read_table(SAMPLE_DATA / name)
    table = table.slice(0, rows or table.num_rows)
    n = table.num_rows
    table = table.append_column("key", pa.array([KEYS[i % len(KEYS)] for i in range(n)]))
    return table.append_column("fkey", pa.array([FLOAT_KEYS[i % 5] for i in range(n)]))


def written(tmp_path: Path, table: pa.Table) -> str:
    path = tmp_path / "keyed.parquet"
    pq.write_table(table, path, row_group_size=max(1, table.num_rows // 3))
    return str(path)


def stdout(*args: str) -> str:
    result = CliRunner().invoke(app, ["score", *args, "--json", "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    return "\n".join(line for line in lines if not line.strip().startswith(TIMINGS))


def with_nans(table: pa.Table) -> pa.Table:
    """Non-finite values in some rows; every row of key ``plain`` skipped."""
    mean = np.array(table["mean"].to_pylist(), dtype=float)
    mean[::7] = np.nan
    keys = table["key"].to_pylist()
    mean[[k == "plain" for k in keys]] = np.inf
    return table.set_column(table.schema.get_field_index("mean"), "mean", pa.array(mean))


QUANTILES = ("--quantiles", "0.05,0.25,0.5,0.75,0.95", "--quantile-cols", "q05,q25,q50,q75,q95")
SAMPLES = ("--samples", "draws")
CASES = {
    "default": ("preds.parquet", ("--by", "key")),
    "float keys, sum, full": ("preds.parquet", ("--by", "fkey", "--reduction", "sum", "--full")),
    "two keys, sorted, top": ("preds.parquet", ("--by", "key,region", "--sort-by", "nll")),
    "top by mae": ("preds.parquet", ("--by", "region,key", "--sort-by", "mae:asc", "--top", "3")),
    "weights": ("preds.parquet", ("--by", "key", "--weight-col", "weight")),
    "every family": ("preds.parquet", ("--by", "key", "--group-metrics", "all")),
    "nll only": ("preds.parquet", ("--by", "key", "--group-metrics", "nll")),
    "no calibration": ("preds.parquet", ("--by", "key", "--no-calibration")),
    "intervals": ("preds.parquet", ("--by", "x:q4,key")),
    "reduction none": ("preds.parquet", ("--by", "key", "--reduction", "none", "--per-row")),
    "two outputs": ("preds_2d.parquet", ("--by", "key", "--group-metrics", "all")),
    "ensemble": (
        "ensemble.parquet",
        ("--by", "key", "--ensemble", "--member-weights", "2,1,1,0,1"),
    ),
    "samples": ("samples.parquet", ("--by", "key", *SAMPLES, "--group-metrics", "all")),
    "weighted samples": ("samples.parquet", ("--by", "key", *SAMPLES, "--weight-col", "weight")),
    "quantiles": ("quantiles.parquet", ("--by", "key", *QUANTILES, "--group-metrics", "all")),
}


@pytest.mark.parametrize("case", CASES)
def test_the_json_of_every_group_is_json_dumps_of_its_entry(case, tmp_path, monkeypatch):
    name, args = CASES[case]
    if args[-1] == "--per-row":
        args = (*args, str(tmp_path / "rows.parquet"))
    path = written(tmp_path, keyed(name, 1500))
    fast = stdout(path, *args)
    monkeypatch.setattr(render, "entry_blocks", plain_blocks)
    assert fast == stdout(path, *args)
    assert json.loads(fast)["groups"]


def test_skipped_rows_and_a_group_of_skipped_rows_only(tmp_path, monkeypatch):
    path = written(tmp_path, with_nans(keyed("preds.parquet", 1500)))
    args = (path, "--by", "key", "--nan-policy", "skip", "--weight-col", "weight")
    fast = stdout(*args)
    monkeypatch.setattr(render, "entry_blocks", plain_blocks)
    assert fast == stdout(*args)
    (only_skipped,) = [g for g in json.loads(fast)["groups"] if g["key"]["key"] == "plain"]
    assert only_skipped["rows"] == 0 and only_skipped["nll"] is None
    assert only_skipped["skipped_reasons"]["mean"] > 0


@pytest.mark.parametrize("outputs", [1, 3])
def test_entries_gathered_across_summary_batches_in_any_order(outputs, monkeypatch):
    """Batches of entries cut across the batches of summaries, read in key order and sorted
    by a metric: the entries are those of each group's Report."""
    monkeypatch.setattr(derive, "SUMMARY_BATCH", 4)
    monkeypatch.setattr(json_entries, "BATCH", 7)
    columns = make_predictions(600, seed=3, outputs=outputs)
    table = pa.table({**{k: list(v) if v.ndim > 1 else v for k, v in columns.items()}})
    table = table.append_column("g", pa.array((np.arange(600) * 7) % 45))
    report = score(table, device="cpu", columns=ColumnSpec(by="g"))
    for ordered in (report, report.with_groups("crps"), report.with_groups("rmse:asc", 9)):
        blocks = list(json_entries.entry_blocks(ordered.groups, ordered.by))
        assert [len(block) for block in blocks][:-1] == [7] * (len(blocks) - 1)
        assert [entry for block in blocks for entry in block] == plain(
            list(ordered.groups), ordered.by
        )
        text = "".join(report_json(ordered))
        assert (
            json.loads(text)["groups"]
            == json.loads(json.dumps(finite(ordered.to_dict())))["groups"]
        )


def test_groups_whose_reports_give_no_columns_are_written_one_by_one():
    report = score(
        pa.table({**make_predictions(40), "g": np.arange(40) % 3}),
        device="cpu",
        columns=ColumnSpec(by="g"),
    )
    alone = [GroupScore(group.key, [group.report]) for group in report.groups]
    assert GroupScore.columns(alone, report.by) is None
    blocks = list(json_entries.entry_blocks(alone, report.by))
    assert len(blocks) == 3  # a batch holds the groups of one reports
    assert [entry for block in blocks for entry in block] == plain(alone, report.by)


def row_of(columns: object, at: int) -> object:
    """Entry ``at`` of ``columns`` as a plain value, the way a Report's ``to_dict`` holds it."""
    if isinstance(columns, dict):
        return {name: row_of(value, at) for name, value in columns.items()}
    if isinstance(columns, list):
        return [row_of(value, at) for value in columns]
    if isinstance(columns, Shared):
        return columns.value
    assert isinstance(columns, PerReport)
    values = columns.values
    return values[at].tolist() if isinstance(values, np.ndarray) else values[at]


def test_odd_values_are_written_as_json_dumps_writes_them():
    rng = np.random.default_rng(2)
    size = 300
    curve = np.cumsum(rng.integers(0, 3, size=(size, 40)), axis=1) / 41
    odd = curve.copy()
    odd[3, :4] = [-0.0, np.nan, np.inf, -np.inf]
    columns = {
        "key": {
            'a "%s" %%': PerReport([f"k{i % 7}\n\u00e9" if i % 5 else None for i in range(300)])
        },
        "curve": PerReport(curve),
        "odd curve": PerReport(odd),
        "random": PerReport(rng.normal(size=(size, 5))),
        "counts": PerReport(rng.integers(-5, 5, size=(size, 4))),
        "flags": PerReport(rng.integers(0, 2, size=size).astype(bool)),
        "empty": PerReport(np.zeros((size, 0))),
        "scalars": PerReport(np.where(np.arange(size) % 9 == 0, np.nan, rng.normal(size=size))),
        "ints": PerReport(list(range(size))),
        "mixed": PerReport([None if i % 3 else [1.0, float("nan"), i] for i in range(size)]),
        "records": PerReport([{"a": float(i), "b": [i, -0.0]} for i in range(size)]),
        "odd keys": PerReport([{1: i, "1": i} if i % 2 else {"x": i} for i in range(size)]),
        "shared": Shared({"levels": [0.5, float("nan")], "text": "100%"}),
        "outputs": [{"nll": PerReport(rng.normal(size=size))}, {"nll": Shared(None)}],
    }
    want = [json.dumps(finite(row_of(columns, at)), default=list) for at in range(size)]
    assert json_entries.entry_texts(columns, size) == want
    fixed = {"all": Shared([1, "%d"])}
    assert json_entries.entry_texts(fixed, 2) == ['{"all": [1, "%d"]}'] * 2


def test_stdout_written_behind_in_order_and_a_failed_write_stops_the_making(monkeypatch):
    made = []

    def pieces():
        for k in range(200):
            made.append(k)
            yield f"{k},"

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    write_behind(pieces())
    assert sys.stdout.getvalue() == "".join(f"{k}," for k in range(200))

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    made.clear()
    monkeypatch.setattr(sys, "stdout", Full())
    with pytest.raises(OSError, match="No space"):
        write_behind(pieces())
    assert len(made) < 10  # the queue holds 2: the making stopped
