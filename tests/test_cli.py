"""The gaussnll command: exit codes, JSON, table, per-row output and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, make_predictions, torch_nll, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app

REQUIRED_JSON_KEYS = {
    "schema",
    "path",
    "rows",
    "elements",
    "reduction",
    "full",
    "eps",
    "nll",
    "nll_mean",
    "nll_sum",
    "device",
    "dtype",
    "seconds",
}


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def test_json_has_the_documented_schema(parquet_file, predictions):
    result = run("score", str(parquet_file), "--json", "--device", "cpu", "--chunk-size", "100")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload.keys() >= REQUIRED_JSON_KEYS
    assert payload["schema"] == "gaussnll.score/1"
    assert (payload["rows"], payload["elements"]) == (2_500, 2_500)
    assert (payload["reduction"], payload["full"], payload["eps"]) == ("mean", False, 1e-6)
    assert (payload["device"], payload["dtype"]) == ("cpu", "float64")
    assert payload["nll"] == pytest.approx(torch_nll(predictions), rel=1e-12)
    assert payload["nll_sum"] == pytest.approx(torch_nll(predictions, reduction="sum"), rel=1e-12)
    assert payload["outputs"][0]["column"] == "mean"
    assert result.stderr == ""


def test_json_sum_and_full(parquet_file, predictions):
    result = run("score", str(parquet_file), "--json", "--reduction", "sum", "--full")
    payload = json.loads(result.stdout)
    assert payload["nll"] == pytest.approx(torch_nll(predictions, full=True, reduction="sum"))
    assert payload["nll"] == payload["nll_sum"]


def test_table_shows_the_numbers(parquet_file, predictions):
    result = run("score", str(parquet_file), "--device", "cpu")
    assert result.exit_code == 0
    assert f"{torch_nll(predictions):.6f}" in result.stdout
    for label in (
        "nll, nll_mean",
        "nll_sum",
        "rows",
        "2,500",
        "elements",
        "eps",
        "full",
        "seconds",
    ):
        assert label in result.stdout


def test_per_row_parquet_with_ids(tmp_path, parquet_file, predictions):
    out = tmp_path / "rows.parquet"
    result = run("score", str(parquet_file), "--per-row", str(out), "--id-col", "id", "--json")
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out)
    tensors = [torch.from_numpy(predictions[k]) for k in ("mean", "target", "var")]
    expected = F.gaussian_nll_loss(*tensors, reduction="none").numpy()
    np.testing.assert_array_equal(rows.column("nll").to_numpy(), expected)
    assert rows.column("id").to_pylist() == list(range(2_500))
    assert json.loads(result.stdout)["rows"] == 2_500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.parquet", "rows.parquet"]


def test_per_row_csv_multi_output(tmp_path):
    columns = make_predictions(30, outputs=2)
    table = pa.table(
        {
            "m0": columns["mean"][:, 0],
            "m1": columns["mean"][:, 1],
            "t0": columns["target"][:, 0],
            "t1": columns["target"][:, 1],
            "v0": columns["var"][:, 0],
            "v1": columns["var"][:, 1],
        }
    )
    path = write_table(table, tmp_path / "multi.csv")
    out = tmp_path / "rows.csv"
    result = run(
        "score",
        str(path),
        "--mean-col",
        "m0,m1",
        "--target-col",
        "t0,t1",
        "--var-col",
        "v0,v1",
        "--per-row",
        str(out),
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    rows = pacsv.read_csv(out)
    assert rows.column_names == ["nll_m0", "nll_m1"]
    expected = F.gaussian_nll_loss(
        *(torch.from_numpy(columns[k]) for k in ("mean", "target", "var")), reduction="none"
    ).numpy()
    np.testing.assert_allclose(rows.column("nll_m1").to_numpy(), expected[:, 1], rtol=1e-15)


def test_reduction_none_streams_csv_to_stdout(parquet_file, predictions):
    result = run(
        "score", str(parquet_file), "--reduction", "none", "--id-col", "id", "--chunk-size", "1000"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == '"id","nll"'
    assert len(lines) == 2_501
    first = F.gaussian_nll_loss(
        *(torch.from_numpy(predictions[k][:1]) for k in ("mean", "target", "var"))
    )
    assert float(lines[1].split(",")[1]) == pytest.approx(first.item(), rel=1e-15)


def test_csv_from_stdin(predictions):
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.table(predictions), sink)
    result = run("score", "-", "--json", input=sink.getvalue().to_pybytes().decode())
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["path"] == "-"
    assert payload["nll"] == pytest.approx(torch_nll(predictions), rel=1e-12)


def test_bad_data_is_one_line_and_leaves_no_per_row_file(tmp_path):
    columns = make_predictions(3_000)
    columns["var"][2_345] = -1.0
    path = write_table(pa.table(columns), tmp_path / "bad.parquet")
    out = tmp_path / "rows.parquet"
    result = run("score", str(path), "--per-row", str(out), "--chunk-size", "500")
    assert_one_line_error(result, str(path), "column 'var'", "row 2346", "non-negative variance")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet"]


def test_failed_run_keeps_an_existing_output_untouched(tmp_path):
    columns = make_predictions(100)
    columns["target"][50] = np.inf
    path = write_table(pa.table(columns), tmp_path / "bad.csv")
    out = tmp_path / "rows.csv"
    out.write_text("precious\n")
    result = run("score", str(path), "--per-row", str(out))
    assert_one_line_error(result, "column 'target'", "row 51", "finite number")
    assert out.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "rows.csv"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--mean-col", "maen"], ["column 'maen'", "no such column", "did you mean 'mean'?"]),
        (["--target-col", "Target"], ["did you mean 'target'?"]),
        (["--var-col", "var", "--std-col", "sd"], ["usage error", "--var-col and --std-col"]),
        (["--eps", "-1"], ["--eps must be a finite number >= 0"]),
        (["--chunk-size", "0"], ["--chunk-size must be between 1 and 2147483647"]),
        (["--reduction", "avg"], ["--reduction must be mean, sum or none"]),
        (["--device", "gpu"], ["--device must be auto, cpu, cuda or cuda:N"]),
        (["--dtype", "float16"], ["--dtype must be float64 or float32"]),
        (["--reduction", "none", "--json"], ["add --per-row FILE"]),
        (["--id-col", "id"], ["--id-col only applies to per-row output"]),
        (["--per-row", "out.txt"], ["--per-row must name a .parquet or .csv file"]),
    ],
)
def test_usage_and_input_errors_exit_2(parquet_file, args, fragments):
    assert_one_line_error(run("score", str(parquet_file), *args), *fragments)


def test_per_row_cannot_overwrite_the_input(parquet_file):
    result = run("score", str(parquet_file), "--per-row", str(parquet_file))
    assert_one_line_error(result, "is the input file")
    assert pq.read_table(parquet_file).num_rows == 2_500


def test_missing_file():
    assert_one_line_error(run("score", "does-not-exist.parquet"), "no such file or directory")


@pytest.mark.parametrize("args", [["--help"], ["score", "--help"], ["compare", "--help"]])
def test_every_command_has_help(args):
    result = run(*args)
    assert result.exit_code == 0
    assert "Usage: gaussnll" in result.stdout


SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
PREDS, STATE = str(SAMPLE / "preds.parquet"), str(SAMPLE / "preds_part1.state.json")


@pytest.mark.parametrize(
    ("module", "extra", "args"),
    [
        ("distributed", "dask", ["score", PREDS, "--dask", "local"]),
        ("distributed", "dask", ["merge", STATE, "--dask", "local"]),
        ("matplotlib", "html", ["score", PREDS, "--html", "page.html"]),
    ],
)
def test_a_missing_extra_is_a_usage_error_with_its_install_line(
    tmp_path, monkeypatch, module, extra, args
):
    """Not an internal error to report: exit 2, one line, how to install it from the package
    index and from a checkout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # its import fails, find_spec finds nothing
    assert_one_line_error(
        run(*args),
        f"--{extra} ",
        module,
        f"which is not installed: pip install 'gaussnll[{extra}]', or from a checkout "
        f"pip install -e '.[{extra}]'",
    )


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("gaussnll 0.")


def test_python_dash_m_and_nothing_installed_as_bare_core(tmp_path):
    """The installed layout: ``python -m gaussnll.cli`` works; no top-level ``core``/``cli``."""
    env = {**os.environ, "PYTHONPATH": ""}
    probe = "import importlib.util as u; print(u.find_spec('core'), u.find_spec('cli'))"
    found = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.split() == ["None", "None"]
    sample = Path(__file__).resolve().parents[1] / "sample_data" / "preds.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "gaussnll.cli", "score", str(sample), "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 10_000


CALIBRATION_KEYS = {
    "levels",
    "coverage",
    "interval_width",
    "interval_score",
    "pit_bins",
    "pit_counts",
    "mace",
    "rmsce",
    "miscalibration_area",
    "crps",
    "check_score",
    "interval_score_avg",
    "nll_full",
    "sharpness",
    "z_mean",
    "z_std",
    "z2_mean",
    "var_scale",
    "nll_at_var_scale",
}


def test_json_calibration_accuracy_and_outputs(parquet_file):
    payload = json.loads(run("score", str(parquet_file), "--json", "--pit-bins", "10").stdout)
    assert payload["calibration"].keys() >= CALIBRATION_KEYS
    assert payload["accuracy"].keys() == {"mae", "rmse", "bias"}
    assert payload["calibration"]["pit_bins"] == 10
    assert sum(payload["calibration"]["pit_counts"]) == 2_500


def _gaussian_crps(mean: np.ndarray, var: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The closed-form Gaussian CRPS per element, with scipy's normal pdf and cdf."""
    from scipy.stats import norm

    std = np.sqrt(var)
    z = (target - mean) / std
    return std * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))


def test_json_per_output_metrics_match_each_outputs_own_data(tmp_path):
    data = make_predictions(1_500, seed=7, outputs=2)
    data["mean"][:, 1] += 0.8  # the second output biased, so the two outputs differ clearly
    table = pa.table({k: pa.FixedSizeListArray.from_arrays(v.ravel(), 2) for k, v in data.items()})
    path = write_table(table, tmp_path / "two.parquet")
    payload = json.loads(run("score", str(path), "--json").stdout)
    crps = _gaussian_crps(data["mean"], data["var"], data["target"])
    error = data["target"] - data["mean"]
    assert len(payload["outputs"]) == 2
    for j, output in enumerate(payload["outputs"]):
        assert output["calibration"]["crps"] == pytest.approx(crps[:, j].mean(), rel=1e-9)
        assert output["accuracy"]["mae"] == pytest.approx(np.abs(error[:, j]).mean(), rel=1e-9)
        assert output["accuracy"]["rmse"] == pytest.approx(
            np.sqrt((error[:, j] ** 2).mean()), rel=1e-9
        )
        assert output["accuracy"]["bias"] == pytest.approx(error[:, j].mean(), rel=1e-9)
    assert payload["calibration"]["crps"] == pytest.approx(crps.mean(), rel=1e-9)


def test_levels_option_and_no_calibration(parquet_file):
    payload = json.loads(run("score", str(parquet_file), "--json", "--levels", "0.3, 0.7").stdout)
    assert payload["calibration"]["levels"] == [0.3, 0.7]
    assert len(payload["calibration"]["coverage"]) == 2
    bare = json.loads(run("score", str(parquet_file), "--json", "--no-calibration").stdout)
    assert bare["calibration"] is None and bare["accuracy"] is None
    assert bare["nll"] == payload["nll"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--levels", "0.5,abc"], "--levels must be numbers"),
        (["--levels", "0.5,1.0"], "--levels must be numbers in (0, 1)"),
        (["--pit-bins", "0"], "--pit-bins must be between 1 and 1000"),
    ],
)
def test_calibration_option_errors(parquet_file, args, fragment):
    assert_one_line_error(run("score", str(parquet_file), *args), fragment)


def test_table_shows_calibration_sections(parquet_file):
    result = run("score", str(parquet_file), "--device", "cpu")
    for text in ("central intervals", "PIT histogram", "variance scale s*", "CRPS", "RMSE", "rmse"):
        assert text in result.stdout
    multi = make_predictions(50, outputs=2)
    table = pa.table({k: pa.FixedSizeListArray.from_arrays(v.ravel(), 2) for k, v in multi.items()})
    path = write_table(table, parquet_file.parent / "multi.parquet")
    assert "per output" in run("score", str(path)).stdout


def test_closed_stdout_pipe_ends_quietly_with_141():
    sample = Path(__file__).resolve().parents[1] / "sample_data" / "preds.csv"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gaussnll.cli",
            "score",
            str(sample),
            "--reduction",
            "none",
            "--chunk-size",
            "100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout.readline() == b'"nll"\n'
    process.stdout.close()
    assert process.wait(timeout=60) == 141
    assert process.stderr.read() == b""


def test_progress_bar_is_off_when_stderr_is_not_a_terminal():
    from gaussnll.cli.progress import progress_callback

    with progress_callback("scoring", enabled=True) as callback:
        assert callback is None  # pytest captures stderr: not a terminal


# --- every bad input: exit 2, one line naming what went wrong, no output left ------------------


def _parquet(table: dict) -> callable:
    return lambda d: write_table(pa.table(table), d / "in.parquet")


def _text(name: str, content: str | bytes) -> callable:
    def build(d: Path) -> Path:
        path = d / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    return build


def _empty_dir(d: Path) -> Path:
    (d / "nothing").mkdir()
    (d / "nothing" / "notes.txt").write_text("no data here")
    return d / "nothing"


GOOD = "mean,target,var\n1,2,3\n"
BAD_INPUTS = {
    "missing path": (lambda d: d / "absent.parquet", [], "no such file or directory"),
    "directory without data": (_empty_dir, [], "holds no .parquet, .csv"),
    "glob matching nothing": (lambda d: d / "*.nothing", [], "matches no file"),
    "empty file": (_text("e.csv", ""), [], "Empty CSV file"),
    "header only": (_text("h.csv", "mean,target,var\n"), [], "no data rows"),
    "missing column": (_text("m.csv", "mean,targt,var\n1,2,3\n"), [], "did you mean 'targt'?"),
    "duplicate column": (_text("d.csv", "mean,mean,target,var\n1,1,2,3\n"), [], "appears 2 times"),
    "non-numeric value": (_text("n.csv", GOOD + "1,abc,3\n"), [], "row 2: expected a number"),
    "ragged row": (_text("r.csv", GOOD + "1,2\n"), [], "row 2: expected 3 fields, got 2"),
    "wrong delimiter": (_text("s.csv", "mean;target;var\n1;2;3\n"), [], "--delimiter ';'"),
    "corrupt parquet": (_text("c.parquet", b"PAR1garbagePAR1"), [], "Parquet"),
    "corrupt gzip": (_text("g.csv.gz", GOOD), [], "zlib inflate failed"),
    "string column": (_parquet({"mean": ["a"], "target": [1.0], "var": [1.0]}), [], "type string"),
    "boolean column": (_parquet({"mean": [True], "target": [1.0], "var": [1.0]}), [], "type bool"),
    "null value": (
        _parquet({"mean": [1.0, None], "target": [1.0, 1.0], "var": [1.0, 1.0]}),
        [],
        "row 2: missing value",
    ),
    "negative variance": (_text("v.csv", GOOD + "1,2,-3\n"), [], "row 2: expected a non-negative"),
    "negative std": (
        _text("sd.csv", "mean,target,sd\n1,2,-1\n"),
        ["--std-col", "sd"],
        "standard deviation",
    ),
    "log-variance overflow": (
        _text("lv.csv", "mean,target,lv\n1,2,900\n"),
        ["--log-var-col", "lv"],
        "log-variance small enough",
    ),
    "NaN target": (_text("nan.csv", GOOD + "1,nan,3\n"), [], "row 2: missing value"),
    "infinite mean": (_text("inf.csv", GOOD + "inf,1,3\n"), [], "row 2: expected a finite number"),
    "ragged list": (
        _parquet(
            {"mean": [[1.0, 2.0], [1.0]], "target": [[1.0, 1.0]] * 2, "var": [[1.0, 1.0]] * 2}
        ),
        [],
        "list has 1 values",
    ),
    "unbroadcastable variance": (
        _parquet({"mean": [[1.0, 2.0]], "target": [[1.0, 1.0]], "var": [[1.0, 1.0, 1.0]]}),
        [],
        "expected 2 or 1",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, case):
    build, extra, fragment = BAD_INPUTS[case]
    data = tmp_path / "data"
    data.mkdir()
    source = build(data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run("score", str(source), "--per-row", str(out_dir / "rows.parquet"), *extra)
    assert_one_line_error(result, fragment)
    assert list(out_dir.iterdir()) == []
