"""gaussnll compare: paired statistics against numpy, pairing by order and by id, gates, formats."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_one_line_error, make_predictions, torch_nll, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import ScoreOptions, compare

Z_95 = 1.959963984540054
ROWS = 1_200


def run(*args: str):
    return CliRunner().invoke(app, ["compare", *args])


def element_nll(columns: dict[str, np.ndarray], eps: float = 1e-6) -> np.ndarray:
    var = np.maximum(columns["var"], eps)
    return 0.5 * (np.log(var) + (columns["mean"] - columns["target"]) ** 2 / var)


def paired_reference(baseline: dict, candidate: dict) -> dict[str, float]:
    """The paired statistics, computed directly on the arrays (per-row means over outputs)."""
    rows = [element_nll(side) for side in (baseline, candidate)]
    rows = [r.mean(axis=1) if r.ndim == 2 else r for r in rows]
    d = rows[1] - rows[0]
    se = d.std(ddof=1) / math.sqrt(len(d))
    return {
        "rows": len(d),
        "delta_nll": d.mean(),
        "delta_nll_std": d.std(ddof=1),
        "delta_nll_se": se,
        "delta_nll_ci_low": d.mean() - Z_95 * se,
        "delta_nll_ci_high": d.mean() + Z_95 * se,
        "candidate_better": float(np.mean(d < 0)),
        "baseline_better": float(np.mean(d > 0)),
    }


def candidate_of(baseline: dict[str, np.ndarray], seed: int, scale: float = 1.0) -> dict:
    """Another model of the same targets: other means and variances, same targets."""
    rng = np.random.default_rng(seed)
    shape = baseline["mean"].shape
    return {
        "mean": baseline["target"] + rng.normal(scale=0.8, size=shape),
        "var": scale * rng.uniform(0.1, 2.0, size=shape),
        "target": baseline["target"],
    }


def to_table(columns: dict[str, np.ndarray], ids: np.ndarray | None = None) -> pa.Table:
    data = {}
    if ids is not None:
        data["id"] = ids
    for name, values in columns.items():
        if values.ndim == 2:
            data[name] = pa.FixedSizeListArray.from_arrays(values.ravel(), values.shape[1])
        else:
            data[name] = values
    return pa.table(data)


def assert_paired(payload: dict, expected: dict[str, float]) -> None:
    for key, value in expected.items():
        assert payload[key] == pytest.approx(value, rel=1e-10, abs=1e-13), key


@pytest.fixture
def pair(tmp_path):
    """A baseline Parquet file and a candidate CSV file of the same 1,200 targets."""
    baseline = make_predictions(ROWS, seed=3)
    candidate = candidate_of(baseline, seed=4)
    paths = (
        write_table(to_table(baseline), tmp_path / "base.parquet"),
        write_table(to_table(candidate), tmp_path / "cand.csv"),
    )
    return baseline, candidate, paths


@pytest.mark.parametrize("chunk_size", [1, 7, 500, 10_000])
def test_order_pairing_equals_numpy_at_every_chunk_size(pair, chunk_size):
    """The two files' batches have different sizes; pairs are re-cut in lock step."""
    baseline, candidate, (base_path, cand_path) = pair
    result = run(
        str(base_path), str(cand_path), "--json", "--device", "cpu",
        "--chunk-size", str(chunk_size), "--no-calibration",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["schema"] == "gaussnll.compare/1"
    assert payload["pairing"] == "order"
    assert_paired(payload, paired_reference(baseline, candidate))
    assert payload["baseline"]["nll"] == pytest.approx(torch_nll(baseline), rel=1e-12)
    assert payload["candidate"]["nll"] == pytest.approx(torch_nll(candidate), rel=1e-12)
    assert payload["unmatched_baseline"] == payload["unmatched_candidate"] == 0


def test_multi_output_rows_pair_by_their_mean_over_outputs(tmp_path):
    baseline = make_predictions(600, seed=5, outputs=3)
    candidate = candidate_of(baseline, seed=6)
    paths = [
        write_table(to_table(cols), tmp_path / f"{name}.parquet")
        for name, cols in (("b", baseline), ("c", candidate))
    ]
    report = compare(*map(str, paths), ScoreOptions(device="cpu", chunk_size=64))
    assert_paired(report.to_dict(), paired_reference(baseline, candidate))
    assert report.candidate.nll == pytest.approx(torch_nll(candidate), rel=1e-12)


def test_id_pairing_joins_and_counts_ids_in_one_file_only(tmp_path):
    baseline = make_predictions(ROWS, seed=7)
    candidate = candidate_of(baseline, seed=8)
    rng = np.random.default_rng(9)
    ids = rng.permutation(10 * ROWS)[:ROWS] + 1_000  # unique, unordered, not row numbers
    base_rows = np.arange(ROWS)[50:]  # the baseline lacks the first 50 ids
    cand_rows = rng.permutation(ROWS)[: ROWS - 30]  # the candidate lacks 30 others, shuffled
    write_table(
        to_table({k: v[base_rows] for k, v in baseline.items()}, ids[base_rows]),
        tmp_path / "b.parquet",
    )
    write_table(
        to_table({k: v[cand_rows] for k, v in candidate.items()}, ids[cand_rows]),
        tmp_path / "c.csv",
    )
    both = np.intersect1d(base_rows, cand_rows)
    result = run(
        str(tmp_path / "b.parquet"), str(tmp_path / "c.csv"), "--id-col", "id", "--json",
        "--chunk-size", "97",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["pairing"] == "id" and payload["id_column"] == "id"
    expected = paired_reference(
        {k: v[both] for k, v in baseline.items()}, {k: v[both] for k, v in candidate.items()}
    )
    assert_paired(payload, expected)
    assert payload["unmatched_baseline"] == len(base_rows) - len(both)
    assert payload["unmatched_candidate"] == len(cand_rows) - len(both)
    assert payload["candidate"]["nll"] == pytest.approx(
        torch_nll({k: v[both] for k, v in candidate.items()}), rel=1e-12
    )


def test_string_ids_and_per_row_output(tmp_path):
    baseline = make_predictions(300, seed=10)
    candidate = candidate_of(baseline, seed=11)
    ids = np.array([f"row-{i}" for i in range(300)])
    order = np.random.default_rng(12).permutation(300)
    write_table(to_table(baseline, ids), tmp_path / "b.parquet")
    write_table(
        to_table({k: v[order] for k, v in candidate.items()}, ids[order]), tmp_path / "c.parquet"
    )
    out = tmp_path / "pairs.parquet"
    result = run(
        str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet"), "--id-col", "id",
        "--per-row", str(out), "--json", "--full",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pydict()
    assert rows["id"] == list(ids)  # in the baseline's row order
    constant = 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(rows["nll_baseline"], element_nll(baseline) + constant, rtol=1e-12)
    np.testing.assert_allclose(rows["nll_candidate"], element_nll(candidate) + constant, rtol=1e-12)
    np.testing.assert_allclose(
        rows["delta_nll"], element_nll(candidate) - element_nll(baseline), rtol=1e-9, atol=1e-12
    )


def test_skip_policy_drops_pairs_with_a_bad_value_on_either_side(tmp_path):
    baseline = make_predictions(400, seed=13)
    candidate = candidate_of(baseline, seed=14)
    baseline["mean"][[3, 200]] = np.nan
    candidate["var"][[3, 399]] = np.inf
    for name, cols in (("b", baseline), ("c", candidate)):
        write_table(to_table(cols), tmp_path / f"{name}.parquet")
    result = run(
        str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet"), "--nan-policy", "skip",
        "--json", "--chunk-size", "64", "--per-row", str(tmp_path / "rows.csv"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    kept = np.ones(400, dtype=bool)
    kept[[3, 200, 399]] = False
    expected = paired_reference(
        {k: v[kept] for k, v in baseline.items()}, {k: v[kept] for k, v in candidate.items()}
    )
    assert_paired(payload, expected)
    assert payload["skipped_rows"] == 3
    lines = (tmp_path / "rows.csv").read_text().splitlines()
    assert len(lines) == 401  # aligned with the input: skipped pairs are empty cells
    assert lines[4] == "," * lines[0].count(",")  # every score's cells (nll, crps, dss)


def test_python_api_merges_like_the_cli(pair):
    baseline, candidate, (base_path, cand_path) = pair
    report = compare(str(base_path), str(cand_path), device="cpu", confidence=0.8)
    d = element_nll(candidate) - element_nll(baseline)
    half_width = 1.2815515655446004 * d.std(ddof=1) / math.sqrt(len(d))
    assert report.paired.delta_nll_ci_high - report.paired.delta_nll == pytest.approx(half_width)
    assert report.to_dict()["confidence"] == 0.8


@pytest.mark.parametrize(
    ("scale", "gate", "code"),
    [
        (1.0, ["--max-regression", "0"], 0),  # same model: no regression beyond noise
        (40.0, ["--max-regression", "0.01"], 1),  # far too wide variances: a real regression
        (40.0, ["--max-regression", "100"], 0),  # ... but within a generous allowance
        (40.0, ["--check", "delta_nll <= 0"], 1),
        (1.0, ["--check", "baseline_better between 0 1", "--check", "rows == 1200"], 0),
    ],
)
def test_gates_and_exit_codes(tmp_path, scale, gate, code):
    baseline = make_predictions(ROWS, seed=15)
    candidate = {**baseline, "var": baseline["var"] * scale}
    for name, cols in (("b", baseline), ("c", candidate)):
        write_table(to_table(cols), tmp_path / f"{name}.parquet")
    result = run(str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet"), "--json", *gate)
    assert result.exit_code == code, result.output
    payload = json.loads(result.stdout)
    assert payload["passed"] is (code == 0)
    if "--max-regression" in gate:
        assert payload["checks"][0]["check"] == f"delta_nll_ci_low <= {float(gate[1]):g}"
    if scale == 1.0:
        assert payload["delta_nll"] == 0 and payload["verdict"] == "inconclusive"
    else:
        assert payload["verdict"] == "worse"


def test_checks_reach_either_models_metrics_and_bad_checks_exit_2(pair):
    _, _, (base_path, cand_path) = pair
    ok = run(
        str(base_path), str(cand_path), "--json",
        "--check", "candidate.coverage@0.7 >= 0", "--check", "baseline.nll < 100",
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    checks = json.loads(ok.stdout)["checks"]
    assert [c["passed"] for c in checks] == [True, True]
    assert json.loads(ok.stdout)["candidate"]["calibration"]["levels"][-1] == 0.7
    assert_one_line_error(
        run(str(base_path), str(cand_path), "--check", "nll < 1"),
        "unknown metric 'nll'", "delta_nll", "baseline.METRIC",
    )  # fmt: skip
    assert_one_line_error(
        run(str(base_path), str(cand_path), "--check", "other.nll < 1"), "unknown metric"
    )
    assert_one_line_error(
        run(str(base_path), str(cand_path), "--check", "candidate.mace < 1", "--no-calibration"),
        "drop --no-calibration",
    )
    assert_one_line_error(
        run(str(base_path), str(cand_path), "--confidence", "1.5"), "--confidence must be"
    )


def test_table_markdown_and_junit(tmp_path, pair):
    _, _, (base_path, cand_path) = pair
    table = run(str(base_path), str(cand_path), "--check", "delta_nll <= 10")
    assert table.exit_code == 0, table.output
    for fragment in ("gaussnll compare", "candidate - baseline", "confidence interval", "pass"):
        assert fragment in table.stdout
    markdown = run(
        str(base_path), str(cand_path), "--format", "markdown", "--check", "delta_nll < -99"
    )
    assert markdown.exit_code == 1
    assert markdown.stdout.startswith("### gaussnll compare:")
    assert "| NLL mean | `nll_mean` |" in markdown.stdout and "❌" in markdown.stdout
    junit = tmp_path / "c.xml"
    result = run(
        str(base_path), str(cand_path), "--junit-xml", str(junit), "--max-regression", "-99"
    )
    assert result.exit_code == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("name").startswith("gaussnll compare ")
    assert suite.get("failures") == "1"
    assert suite.find("testcase").get("name") == "delta_nll_ci_low <= -99"


def test_shares_of_rows_are_labelled_and_max_regression_names_its_flag(pair):
    """ "candidate_better 0.37" beside a verdict needs its label, in 80 columns too; a failed
    --max-regression is told by the flag and value the user wrote."""
    baseline, candidate, (base_path, cand_path) = pair
    expected = paired_reference(baseline, candidate)
    result = CliRunner().invoke(
        app, ["compare", str(base_path), str(cand_path), "--max-regression", "-99"],
        env={"COLUMNS": "80"},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    for name, side in (("candidate_better", "candidate"), ("baseline_better", "baseline")):
        row = lines[f"share of rows: {side}'s NLL lower"]
        assert name in row and f"{expected[name]:.6f}" in row
    assert "verdict: " in result.stdout
    (failure,) = result.stderr.splitlines()
    assert failure.startswith(
        "gaussnll: check failed: --max-regression -99: delta_nll_ci_low <= -99"
    )


def write_pair(tmp_path: Path, baseline: dict, candidate: dict, ids=(None, None)) -> list[str]:
    paths = []
    for name, cols, side_ids in (("b", baseline, ids[0]), ("c", candidate, ids[1])):
        paths.append(str(write_table(to_table(cols, side_ids), tmp_path / f"{name}.parquet")))
    return paths


def test_input_errors_are_one_line(tmp_path):
    baseline = make_predictions(100, seed=16)
    short = {k: v[:90] for k, v in baseline.items()}
    paths = write_pair(tmp_path, baseline, short)
    assert_one_line_error(run(*paths), "has 100 rows", "has 90", "--id-col")

    moved = {**baseline, "target": baseline["target"].copy()}
    moved["target"][41] += 0.5
    paths = write_pair(tmp_path, baseline, moved)
    assert_one_line_error(
        run(*paths, "--chunk-size", "16"),
        f"c.parquet: row 42: the target is {float(moved['target'][41])!r} here and "
        f"{float(baseline['target'][41])!r} in ",
    )

    ids = np.arange(100)
    repeated = ids.copy()
    repeated[70] = 12
    paths = write_pair(tmp_path, baseline, baseline, (ids, repeated))
    assert_one_line_error(
        run(*paths, "--id-col", "id"), "c.parquet", "column 'id'", "row 13", "id 12 appears 2 times"
    )
    paths = write_pair(tmp_path, baseline, baseline, (ids, ids.astype(str)))
    assert_one_line_error(run(*paths, "--id-col", "id"), "ids must be of one kind")
    paths = write_pair(tmp_path, baseline, baseline, (ids, ids + 1_000))
    assert_one_line_error(run(*paths, "--id-col", "id"), "no id appears in both files")

    negative = {**baseline, "var": baseline["var"].copy()}
    negative["var"][5] = -1.0
    order = np.arange(100)[::-1]  # row 6 of the file is the 95th pair
    shuffled = {k: v[order] for k, v in negative.items()}
    paths = write_pair(tmp_path, baseline, shuffled, (ids, ids[order]))
    assert_one_line_error(
        run(*paths, "--id-col", "id", "--chunk-size", "8"),
        "c.parquet: column 'var': row 95: expected a non-negative variance",
    )


def test_config_file_compare_checks_and_command_line_additions(tmp_path, monkeypatch, pair):
    _, _, (base_path, cand_path) = pair
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gaussnll]\ncompare_checks = ["delta_nll < -99"]\nconfidence = 0.9\n'
        'checks = ["nll < -99"]\n'
    )
    monkeypatch.chdir(tmp_path)
    from_file = run(str(base_path), str(cand_path), "--json")
    assert from_file.exit_code == 1
    payload = json.loads(from_file.stdout)
    assert [c["check"] for c in payload["checks"]] == ["delta_nll < -99"]
    assert payload["confidence"] == 0.9
    assert "checks" not in payload["config"]["settings"]  # score's checks are not compare's
    # a --check adds to the file's compare_checks (which still fail), it does not replace them
    added = run(str(base_path), str(cand_path), "--json", "--check", "delta_nll < 99")
    assert added.exit_code == 1, added.output
    checks = json.loads(added.stdout)["checks"]
    assert [(c["check"], c["passed"]) for c in checks] == [
        ("delta_nll < -99", False),
        ("delta_nll < 99", True),
    ]
