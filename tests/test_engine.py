"""gaussnll.core.score: equal to torch one-shot on the whole file, for any chunking and format."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from conftest import make_predictions, torch_nll, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import (
    ColumnSpec,
    InputError,
    OptionError,
    ScoreOptions,
    ScoreState,
    UsageError,
    score,
)
from gaussnll.core.io.sources import FileFormat
from gaussnll.core.io.writers import RowWriter
from gaussnll.core.loss import nll_terms
from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.sinks import Placement

REL = 1e-12


@pytest.mark.parametrize("chunk_size", [1, 7, 1000, 10_000])
def test_mean_is_chunk_invariant_and_equals_torch(parquet_file, predictions, chunk_size):
    report = score(str(parquet_file), ScoreOptions(chunk_size=chunk_size, device="cpu"))
    assert report.rows == report.elements == 2_500
    assert report.nll_mean == pytest.approx(torch_nll(predictions), rel=REL)
    assert report.nll == report.nll_mean


@pytest.mark.parametrize("chunk_size", [7, 10_000])
@pytest.mark.parametrize(("full", "reduction"), [(True, "mean"), (False, "sum"), (True, "sum")])
def test_full_and_sum_equal_torch(parquet_file, predictions, chunk_size, full, reduction):
    options = ScoreOptions(full=full, reduction=reduction, chunk_size=chunk_size, device="cpu")
    report = score(str(parquet_file), options)
    assert report.nll == pytest.approx(
        torch_nll(predictions, full=full, reduction=reduction), rel=REL
    )


def test_eps_floors_like_torch(tmp_path):
    columns = make_predictions(500, seed=4)
    columns["var"][::5] = 0.0
    columns["var"][1::5] = 1e-9
    path = write_table(pa.table(columns), tmp_path / "tiny.parquet")
    for eps in (1e-6, 0.01):
        report = score(str(path), ScoreOptions(eps=eps, chunk_size=64, device="cpu"))
        assert report.nll_mean == pytest.approx(torch_nll(columns, eps=eps), rel=REL)


@pytest.mark.parametrize(
    "name", ["p.parquet", "p.arrow", "p.feather", "p.csv", "p.csv.gz", "p.csv.bz2", "p.csv.zst"]
)
def test_every_format_gives_the_same_answer(tmp_path, predictions, name):
    path = write_table(pa.table(predictions), tmp_path / name)
    report = score(str(path), ScoreOptions(chunk_size=333, device="cpu"))
    assert report.rows == 2_500
    assert report.nll_mean == pytest.approx(torch_nll(predictions), rel=REL)


def test_arrow_ipc_stream_format(tmp_path, predictions):
    table = pa.table(predictions)
    path = tmp_path / "p.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=1000)
    assert score(str(path), ScoreOptions(device="cpu")).nll_mean == pytest.approx(
        torch_nll(predictions), rel=REL
    )


@pytest.mark.parametrize("how", ["directory", "glob"])
def test_several_files_are_one_dataset(tmp_path, predictions, how):
    table = pa.table(predictions)
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, start in enumerate(range(0, 2_500, 1_000)):
        write_table(table.slice(start, 1_000), parts / f"part-{i}.parquet")
    path = parts if how == "directory" else parts / "part-*.parquet"
    report = score(str(path), ScoreOptions(chunk_size=300, device="cpu"))
    assert report.rows == 2_500
    assert report.nll_mean == pytest.approx(torch_nll(predictions), rel=REL)


def test_only_the_needed_columns_are_read(tmp_path, predictions, monkeypatch):
    table = pa.table({**predictions, "huge_text": ["x" * 100] * 2_500})
    path = write_table(table, tmp_path / "p.parquet")
    requested = []
    original = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        requested.append(kwargs["columns"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    score(str(path), ScoreOptions(device="cpu"))
    assert sorted(requested[0]) == ["mean", "target", "var"]


def test_std_and_log_var_equal_var(tmp_path, predictions):
    spreads = {"std": np.sqrt(predictions["var"]), "log_var": np.log(predictions["var"])}
    path = write_table(pa.table({**predictions, **spreads}), tmp_path / "p.parquet")
    expected = torch_nll(predictions)
    for spec in (
        ColumnSpec(spread=("std",), spread_kind="std"),
        ColumnSpec(spread="log_var", spread_kind="log_var"),
    ):
        report = score(str(path), ScoreOptions(columns=spec, device="cpu"))
        assert report.nll_mean == pytest.approx(expected, rel=1e-12)


def test_integer_columns_are_cast(tmp_path):
    columns = {"mean": np.arange(50) % 7, "target": np.arange(50) % 5, "var": np.arange(50) % 3 + 1}
    path = write_table(pa.table(columns), tmp_path / "ints.parquet")
    as_float = {k: v.astype(np.float64) for k, v in columns.items()}
    assert score(str(path), ScoreOptions(device="cpu")).nll_mean == pytest.approx(
        torch_nll(as_float), rel=REL
    )


def test_float32_computes_each_element_in_float32(tmp_path, predictions):
    path = write_table(pa.table(predictions), tmp_path / "p.parquet")
    report = score(str(path), ScoreOptions(dtype="float32", chunk_size=100, device="cpu"))
    as32 = [torch.from_numpy(predictions[k]).float() for k in ("mean", "target", "var")]
    elementwise = F.gaussian_nll_loss(*as32, reduction="none").double()
    assert report.nll_mean == pytest.approx(elementwise.mean().item(), rel=1e-12)
    assert report.nll_mean != pytest.approx(torch_nll(predictions), rel=1e-12)


def list_column(values: np.ndarray, fixed: bool) -> pa.Array:
    if fixed:
        return pa.FixedSizeListArray.from_arrays(values.ravel(), values.shape[1])
    return pa.array(list(values))


@pytest.mark.parametrize("fixed", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 13, 10_000])
def test_multi_output_list_columns_equal_torch(tmp_path, fixed, chunk_size):
    columns = make_predictions(400, seed=2, outputs=3)
    table = pa.table({k: list_column(v, fixed) for k, v in columns.items()})
    path = write_table(table, tmp_path / "multi.parquet")
    report = score(str(path), ScoreOptions(chunk_size=chunk_size, device="cpu"))
    assert (report.rows, report.elements) == (400, 1_200)
    assert report.nll_mean == pytest.approx(torch_nll(columns), rel=REL)
    per_output = [torch_nll({k: v[:, j] for k, v in columns.items()}) for j in range(3)]
    assert [o.nll_mean for o in report.outputs] == pytest.approx(per_output, rel=REL)
    assert [o.column for o in report.outputs] == ["mean[0]", "mean[1]", "mean[2]"]


def test_homoscedastic_variance_broadcasts_like_torch(tmp_path):
    columns = make_predictions(300, seed=5, outputs=2)
    shared_var = columns["var"][:, :1]
    table = pa.table(
        {
            "m0": columns["mean"][:, 0],
            "m1": columns["mean"][:, 1],
            "t0": columns["target"][:, 0],
            "t1": columns["target"][:, 1],
            "v": shared_var[:, 0],
        }
    )
    path = write_table(table, tmp_path / "homo.csv")
    spec = ColumnSpec(mean=("m0", "m1"), target=("t0", "t1"), spread="v")
    report = score(str(path), ScoreOptions(columns=spec, chunk_size=50, device="cpu"))
    expected = F.gaussian_nll_loss(
        torch.from_numpy(columns["mean"]),
        torch.from_numpy(columns["target"]),
        torch.from_numpy(shared_var),
    ).item()
    assert report.elements == 600
    assert report.nll_mean == pytest.approx(expected, rel=REL)
    assert [o.column for o in report.outputs] == ["m0", "m1"]


def test_states_merge_exactly(predictions):
    mean, target, var = (
        torch.from_numpy(predictions[k]).unsqueeze(1) for k in ("mean", "target", "var")
    )
    floored = var.clamp(min=1e-6)
    expected = F.gaussian_nll_loss(mean, target, var, reduction="none")
    for error in (mean - target, target - mean):  # either sign gives torch's bits
        assert torch.equal(nll_terms(error, floored).loss, expected)

    def add(state: ScoreState, rows: slice) -> None:
        error = target[rows] - mean[rows]
        terms = nll_terms(error, floored[rows])
        state.update(RowBatch(terms, error, var[rows], floored[rows], Placement()))

    whole, first, second = (ScoreState(1, torch.device("cpu")) for _ in range(3))
    add(whole, slice(None))
    add(first, slice(None, 1000))
    add(second, slice(1000, None))
    first.merge(second)
    assert first.rows == whole.rows == 2_500
    assert first.loss_sums() == pytest.approx(whole.loss_sums(), rel=REL)
    with pytest.raises(ValueError, match="outputs"):
        first.merge(ScoreState(2, torch.device("cpu")))


def test_per_row_losses_equal_torch_none(tmp_path, parquet_file, predictions):
    out = tmp_path / "rows.parquet"
    writer = RowWriter(str(out), FileFormat.PARQUET)
    spec = ColumnSpec(id="id")
    score(
        str(parquet_file),
        ScoreOptions(columns=spec, full=True, chunk_size=77, device="cpu"),
        rows_to=writer,
    )
    writer.close()
    rows = pq.read_table(out)
    assert rows.column_names == ["id", "nll"]
    assert rows.column("id").to_pylist() == list(range(2_500))
    tensors = [torch.from_numpy(predictions[k]) for k in ("mean", "target", "var")]
    expected = F.gaussian_nll_loss(*tensors, full=True, reduction="none").numpy()
    np.testing.assert_array_equal(rows.column("nll").to_numpy(), expected)


def test_progress_is_reported_per_chunk(parquet_file):
    seen = []
    score(
        str(parquet_file),
        ScoreOptions(chunk_size=1000, device="cpu"),
        on_progress=lambda *values: seen.append(values),
    )
    assert seen == [(1000, 2500, None, None), (2000, 2500, None, None), (2500, 2500, None, None)]


@pytest.mark.parametrize("name", ["a.csv", "a.csv.gz"])
def test_csv_progress_counts_bytes_of_every_file(tmp_path, name):
    """CSV files do not record their rows: progress tells the bytes read of their total
    (compressed bytes for a compressed file), across the files of a directory."""
    columns = make_predictions(60_000, seed=5)
    table = pa.table(columns)
    folder = tmp_path / "parts"
    folder.mkdir()
    paths = [write_table(table, folder / name), write_table(table, folder / f"b{name[1:]}")]
    total = sum(path.stat().st_size for path in paths)
    seen = []
    score(
        str(folder),
        ScoreOptions(chunk_size=4096, device="cpu"),
        on_progress=lambda *v: seen.append(v),
    )
    rows = [done for done, *_ in seen]
    assert rows == sorted(rows) and rows[-1] == 120_000
    assert {values[1] for values in seen} == {None}  # no row count
    assert {values[3] for values in seen} == {total}
    read = [values[2] for values in seen]
    assert read == sorted(read) and read[-1] == total
    assert 0 < read[0] < total  # the count moves as the files are read, not only at the end


# --- bad input -----------------------------------------------------------------------------


def error_of(path: Path, **options) -> str:
    with pytest.raises(InputError) as caught:
        score(str(path), ScoreOptions(device="cpu", **options))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_negative_variance_names_file_column_and_row(tmp_path):
    columns = make_predictions(100)
    columns["var"][[41, 59, 98]] = [-0.5, -1.0, -2.0]
    path = write_table(pa.table(columns), tmp_path / "neg.csv")
    message = error_of(path, chunk_size=16)
    assert message == (
        f"{path}: column 'var': row 42: expected a non-negative variance, got -0.5"
        " (3 negative values in all)"
    )


def test_first_bad_value_wins(tmp_path):
    columns = make_predictions(100)
    columns["var"][60] = -1.0
    columns["target"][30] = np.nan
    path = write_table(pa.table(columns), tmp_path / "bad.parquet")
    assert "column 'target': row 31: expected a finite number, got nan" in error_of(path)


def test_negative_std_and_overflowing_log_var(tmp_path):
    columns = make_predictions(20)
    table = pa.table(
        {
            **columns,
            "std": np.r_[np.ones(5), -2.0, np.ones(14)],
            "lv": np.r_[np.zeros(8), 800.0, np.zeros(11)],
        }
    )
    path = write_table(table, tmp_path / "spread.parquet")
    assert "column 'std': row 6: expected a non-negative standard deviation" in error_of(
        path, columns=ColumnSpec(spread="std", spread_kind="std")
    )
    assert "column 'lv': row 9: expected a log-variance" in error_of(
        path, columns=ColumnSpec(spread="lv", spread_kind="log_var")
    )


def test_missing_column_lists_present_and_suggests(tmp_path, predictions):
    for name in ("p.parquet", "p.csv", "p.arrow"):
        path = write_table(pa.table(predictions), tmp_path / name)
        message = error_of(path, columns=ColumnSpec(target=("targt",)))
        assert "column 'targt': no such column" in message
        assert "did you mean 'target'?" in message


def test_null_and_ragged_lists_and_width_mismatch(tmp_path):
    table = pa.table({"mean": [1.0, None, 2.0], "target": [1.0, 1.0, 1.0], "var": [1.0] * 3})
    assert "column 'mean': row 2: missing value" in error_of(
        write_table(table, tmp_path / "n.parquet")
    )
    ragged = pa.table(
        {"mean": [[1.0, 2.0], [1.0]], "target": [[1.0, 2.0]] * 2, "var": [[1.0, 1.0]] * 2}
    )
    assert "row 2: list has 1 values" in error_of(write_table(ragged, tmp_path / "r.parquet"))
    wide = pa.table({"mean": [[1.0, 2.0]] * 2, "target": [[1.0, 2.0]] * 2, "var": [[1.0] * 3] * 2})
    assert "spread has 3 values per row; expected 2 or 1" in error_of(
        write_table(wide, tmp_path / "w.parquet")
    )


def test_text_column_and_empty_file_and_missing_path(tmp_path):
    text = pa.table({"mean": ["a", "b"], "target": [1.0, 2.0], "var": [1.0, 1.0]})
    assert "expected numbers, got values of type string" in error_of(
        write_table(text, tmp_path / "t.parquet")
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("mean,target,var\n")
    assert error_of(empty).endswith("no data rows")
    assert error_of(tmp_path / "nope.parquet").endswith("no such file or directory")
    assert "matches no file" in error_of(tmp_path / "*.nothing")


def test_zero_variance_without_floor_is_an_error(tmp_path):
    columns = make_predictions(10)
    columns["var"][3] = 0.0
    path = write_table(pa.table(columns), tmp_path / "z.parquet")
    assert "row 4: the loss is not finite" in error_of(path, eps=0.0)


@pytest.mark.parametrize(
    "options",
    [{"eps": -1.0}, {"eps": math.inf}, {"chunk_size": 0}, {"reduction": "avg"}, {"dtype": "int8"}],
)
def test_invalid_options_are_usage_errors(options):
    with pytest.raises(UsageError):
        ScoreOptions(**options)


def test_unknown_device_and_contradicting_spreads(parquet_file):
    with pytest.raises(OptionError, match=r"^device must be") as caught:
        score(str(parquet_file), ScoreOptions(device="tpu"))
    assert caught.value.parameter == "device"  # core names the parameter, the CLI its flag
    cli = CliRunner().invoke(app, ["score", str(parquet_file), "--device", "tpu"])
    assert cli.exit_code == 2 and "usage error: --device must be" in cli.stderr
    flags = ["--var-col", "var", "--std-col", "s"]
    both = CliRunner().invoke(app, ["score", str(parquet_file), *flags])
    assert both.exit_code == 2 and "--var-col and --std-col contradict" in both.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda(parquet_file):
    with pytest.raises(UsageError, match="no CUDA device"):
        score(str(parquet_file), ScoreOptions(device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu(parquet_file, predictions):
    report = score(str(parquet_file), ScoreOptions(device="cuda", chunk_size=300))
    assert report.device.startswith("cuda")
    assert report.nll_mean == pytest.approx(torch_nll(predictions), rel=REL)


def defer_checks_as_on_a_gpu(monkeypatch):
    """Run the first pass as on a GPU (one flag, read at the end); the locating rerun is the
    CPU's own, as it would be."""
    from gaussnll.core.run import chunk_checks as engine

    original = engine.Validity.__init__
    passes = []

    def deferred(self, device):
        original(self, device)
        self._deferred = not passes
        passes.append(device)

    monkeypatch.setattr(engine.Validity, "__init__", deferred)


def test_deferred_check_still_names_the_first_bad_row(tmp_path, monkeypatch):
    defer_checks_as_on_a_gpu(monkeypatch)
    columns = make_predictions(300)
    columns["var"][123] = -2.0
    path = write_table(pa.table(columns), tmp_path / "neg.parquet")
    message = error_of(path, chunk_size=50)
    assert message.endswith(
        "column 'var': row 124: expected a non-negative variance, got -2.0"
        " (1 negative value in all)"
    )


def test_deferred_check_on_stdin_says_how_to_locate(monkeypatch):
    defer_checks_as_on_a_gpu(monkeypatch)
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"mean,target,var\n0,1,-1\n")))
    with pytest.raises(InputError, match="rerun with --device cpu"):
        score("-", ScoreOptions(device="cpu"))


# --- non-finite policy and eps floor counts -----------------------------------------------------


def with_non_finite(rows: int = 200):
    columns = make_predictions(rows, seed=21)
    columns["mean"][[3, 50]] = [np.nan, np.inf]
    columns["target"][50] = -np.inf  # same row as the infinite mean: counted once as a row
    columns["var"][[70, 71]] = [np.nan, np.inf]
    return columns


def test_skip_drops_non_finite_rows_and_counts_them(tmp_path):
    columns = with_non_finite()
    path = write_table(pa.table({"id": np.arange(200), **columns}), tmp_path / "nan.parquet")
    out = tmp_path / "rows.parquet"
    writer = RowWriter(str(out), FileFormat.PARQUET)
    options = ScoreOptions(
        columns=ColumnSpec(id="id"), nan_policy="skip", chunk_size=32, device="cpu"
    )
    report = score(str(path), options, rows_to=writer)
    writer.close()
    kept = np.ones(200, dtype=bool)
    kept[[3, 50, 70, 71]] = False
    finite = {k: v[kept] for k, v in columns.items()}
    assert report.rows == 196 and report.skipped_rows == 4
    assert report.skipped_reasons == {"mean": 2, "target": 1, "var": 2}
    assert report.nll_mean == pytest.approx(torch_nll(finite), rel=REL)
    assert (
        report.calibration.pit_counts
        == score(
            str(write_table(pa.table(finite), tmp_path / "finite.parquet")),
            ScoreOptions(device="cpu"),
        ).calibration.pit_counts
    )
    rows = pq.read_table(out)
    assert rows.num_rows == 200 and rows.column("nll").null_count == 4
    assert rows.column("nll").to_pylist()[3] is None
    assert report.to_dict()["skipped_rows"] == 4


def test_propagate_follows_torch_and_error_names_the_first(tmp_path):
    columns = with_non_finite()
    path = write_table(pa.table(columns), tmp_path / "nan.parquet")
    report = score(str(path), ScoreOptions(nan_policy="propagate", device="cpu"))
    assert math.isnan(report.nll_mean) and math.isnan(torch_nll(columns))
    assert "column 'mean': row 4: expected a finite number, got nan" in error_of(path)


def test_negative_variance_is_an_error_under_every_policy(tmp_path):
    columns = make_predictions(100)
    columns["target"][10] = np.nan
    columns["var"][40] = -1.0
    path = write_table(pa.table(columns), tmp_path / "neg.parquet")
    for policy in ("skip", "propagate"):
        assert "column 'var': row 41: expected a non-negative variance" in error_of(
            path, nan_policy=policy
        )


def test_skip_keeps_the_zero_variance_check(tmp_path):
    columns = make_predictions(50)
    columns["var"][7] = 0.0
    path = write_table(pa.table(columns), tmp_path / "zero.parquet")
    assert "row 8: the loss is not finite" in error_of(path, eps=0.0, nan_policy="skip")


def test_all_rows_skipped_is_an_error(tmp_path):
    table = pa.table({"mean": [np.nan, 1.0], "target": [0.0, np.inf], "var": [1.0, 1.0]})
    path = write_table(table, tmp_path / "all.parquet")
    assert "nothing to score" in error_of(path, nan_policy="skip")


def test_eps_floored_counts_variances_below_eps(tmp_path):
    columns = make_predictions(300)
    columns["var"][:17] = 0.0
    columns["var"][17:20] = 5e-7
    path = write_table(pa.table(columns), tmp_path / "floor.parquet")
    report = score(str(path), ScoreOptions(device="cpu", chunk_size=64))
    assert report.eps_floored == 20
    assert score(str(path), ScoreOptions(device="cpu", eps=1e-9)).eps_floored == 17


# --- CSV and file diagnostics -------------------------------------------------------------------


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_non_numeric_csv_value_names_row_column_and_value(tmp_path):
    lines = ["mean,target,var"] + [f"{i},{i + 1},1" for i in range(5_000)]
    lines[3_001] = "3000,oops,1"
    path = write_text(tmp_path / "text.csv", "\n".join(lines) + "\n")
    message = error_of(path, chunk_size=700)
    assert message == f"{path}: column 'target': row 3001: expected a number, got 'oops'"


def test_ragged_csv_row(tmp_path):
    path = write_text(tmp_path / "ragged.csv", "mean,target,var\n1,2,3\n4,5\n6,7,8\n")
    assert error_of(path) == f"{path}: row 2: expected 3 fields, got 2: '4,5'"


def test_wrong_delimiter_hint_and_delimiter_option(tmp_path):
    path = write_text(tmp_path / "semi.csv", "mean;target;var\n1;2;3\n2;2;1\n")
    assert "looks ';'-delimited: pass --delimiter ';'" in error_of(path)
    report = score(str(path), ScoreOptions(delimiter=";", device="cpu", calibration=False))
    assert report.rows == 2
    with pytest.raises(UsageError, match="one character"):
        ScoreOptions(delimiter=";;")


def test_duplicate_column_names(tmp_path):
    path = write_text(tmp_path / "dup.csv", "mean,mean,target,var\n1,2,3,4\n")
    assert "column 'mean': the name appears 2 times in the header" in error_of(path)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("empty.parquet", b"", "Parquet file size is 0 bytes"),
        ("empty.csv", b"", "Empty CSV file"),
        ("junk.parquet", b"PAR1 this is not parquet", "magic bytes"),
        ("fake.csv.gz", b"mean,target,var\n1,2,3\n", "zlib inflate failed"),
    ],
)
def test_unreadable_files_are_one_line_errors(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    message = error_of(path)
    assert message.startswith(str(path)) and fragment in message


def test_truncated_parquet_and_gzip(tmp_path, predictions):
    whole = write_table(pa.table(predictions), tmp_path / "whole.parquet").read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole[: len(whole) // 2])
    assert "magic bytes" in error_of(cut)
    gz = write_table(pa.table(make_predictions(50_000)), tmp_path / "big.csv.gz")
    gz.write_bytes(gz.read_bytes()[:-5_000])
    assert "Truncated compressed stream" in error_of(gz)


def test_unreadable_file_reports_the_os_error(tmp_path, predictions, monkeypatch):
    path = write_table(pa.table(predictions), tmp_path / "p.parquet")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pq, "ParquetFile", denied)
    assert error_of(path).startswith(f"{path}: [Errno 13] Permission denied")


def test_binary_garbage_is_an_input_error(tmp_path):
    path = tmp_path / "garbage.csv"
    path.write_bytes(b"\x8b\xca\r\r\xa8~")
    assert error_of(path) == f"{path}: is not UTF-8 text (invalid start byte at byte 0)"


def test_huge_values_under_propagate_report_inf_not_a_crash(tmp_path):
    table = pa.table({"mean": [0.0, -7e304], "target": [7e16, 1e-7], "var": [3e-209, 5e-324]})
    path = write_table(table, tmp_path / "huge.parquet")
    report = score(str(path), ScoreOptions(nan_policy="propagate", device="cpu"))
    assert math.isinf(report.nll_mean) and math.isinf(report.calibration.z2_mean)


def test_compensated_sum_keeps_infinities_as_a_plain_sum_would():
    from gaussnll.core.state.summation import CompensatedSum

    total = CompensatedSum((2,), torch.device("cpu"))
    total.add(torch.tensor([1.0, 1.0], dtype=torch.float64))
    total.add(torch.tensor([math.inf, -math.inf], dtype=torch.float64))
    total.add(torch.tensor([2.0, 3.0], dtype=torch.float64))
    assert total.value().tolist() == [math.inf, -math.inf]


def test_missing_values_follow_the_nan_policy(tmp_path):
    path = write_text(
        tmp_path / "gaps.csv", "mean,target,var\n1,2,3\n1,,3\n2,NA,1\n0,nan,1\n4,4,2\n"
    )
    assert "row 2: missing value" in error_of(path)
    report = score(str(path), ScoreOptions(nan_policy="skip", device="cpu"))
    assert (report.rows, report.skipped_rows) == (2, 3)
    assert report.skipped_reasons == {"mean": 0, "target": 3, "var": 0}
    nulls = pa.table({"mean": [1.0, None], "target": [1.0, 1.0], "var": [1.0, 1.0]})
    propagated = score(
        str(write_table(nulls, tmp_path / "n.parquet")),
        ScoreOptions(nan_policy="propagate", device="cpu"),
    )
    assert math.isnan(propagated.nll_mean)
