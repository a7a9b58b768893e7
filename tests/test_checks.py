"""Quality gates, configuration files and report formats (Markdown, JUnit)."""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow as pa
import pytest
from conftest import make_predictions, torch_nll, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import (
    COMPARE_METRICS,
    SCORE_METRICS,
    AccuracySummary,
    CalibrationSummary,
    ColumnSpec,
    CompareReport,
    Metric,
    OutputScore,
    PairedSummary,
    Report,
    ScoreOptions,
    UsageError,
    score,
)
from gaussnll.core.report.checks import evaluate, parse_check
from gaussnll.core.report.compare_report import CalibrationDeltas
from gaussnll.core.report.fields import Shape, declared


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("text", "value", "passes"),
    [
        ("nll <= 1", 1.0, True),
        ("nll <= 1", 1.0001, False),
        ("nll < 1", 1.0, False),
        ("nll < 1", 0.5, True),
        ("nll >= 1", 1.0, True),
        ("nll >= 1", 0.9, False),
        ("nll > 1", 1.0, False),
        ("nll > 1", 2.0, True),
        ("nll == 2", 2.0, True),
        ("nll == 2", 2.1, False),
        ("nll != 2", 2.1, True),
        ("nll != 2", 2.0, False),
        ("nll between 0.8 1.25", 0.8, True),
        ("nll between 0.8 1.25", 1.25, True),
        ("nll between 0.8 1.25", 1.26, False),
        ("nll between -1e-3 +2E-1", 0.0, True),
        ("nll <= 1", math.nan, False),
    ],
)
def test_operators(text, value, passes):
    assert parse_check(text).passes(value) is passes


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("nll", "must be 'METRIC OP NUMBER'"),
        ("nll <= ", "must be 'METRIC OP NUMBER'"),
        ("nll =< 1", "must be 'METRIC OP NUMBER'"),
        ("nll <= 1; import os", "must be 'METRIC OP NUMBER'"),
        ("__import__('os') <= 1", "must be 'METRIC OP NUMBER'"),
        ("nlll <= 1", "unknown metric 'nlll' (did you mean 'nll'?); the metrics are rows, "),
        ("NLL <= 1", "unknown metric 'NLL' (did you mean 'nll'?)"),
        ("Coverage@0.9 >= 1", "unknown metric 'Coverage@0.9' (did you mean 'coverage@LEVEL'?)"),
        ("mace@0.9 <= 1", "unknown metric 'mace@0.9'"),
        ("coverage <= 1", "unknown metric 'coverage'"),
        ("coverage@1.5 >= 0.9", "the level must be in (0, 1)"),
        ("nll between 2 1", "the lower bound is above the upper one"),
    ],
)
def test_parse_errors(text, fragment):
    with pytest.raises(UsageError) as caught:
        parse_check(text)
    assert fragment in str(caught.value)


STABLE_NAMES = [  # names users' gates rely on: the catalogue may grow, never lose one
    "nll",
    "nll_mean",
    "nll_sum",
    "rows",
    "elements",
    "skipped_rows",
    "eps_floored",
    "seconds",
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
    "mae",
    "rmse",
    "bias",
    "coverage@LEVEL",
    "interval_width@LEVEL",
    "interval_score@LEVEL",
    "inside_counts@LEVEL",
]


def _json_value(payload: dict, metric: Metric, level: float) -> object:
    """A metric's value read from the JSON by its catalogue path, independently of checks."""
    value = payload
    for key in metric.path:
        value = value[key]
    return value[payload["calibration"]["levels"].index(level)] if metric.per_level else value


def test_every_catalogued_metric_is_checkable_and_equals_its_json_value(tmp_path, predictions):
    """On a weighted ensemble, so its section's metrics and the weight sum are there too (and
    the bootstrap intervals)."""
    mean, var = predictions["mean"], predictions["var"]
    members = {"mean": np.stack([mean, mean + 0.3], 1), "var": np.stack([var, 2 * var], 1)}
    weight = np.arange(len(mean)) % 3 + 0.5
    table = pa.table(
        {
            **{k: pa.array(list(v)) for k, v in members.items()},
            "target": predictions["target"],
            "w": weight,
        }
    )
    path = write_table(table, tmp_path / "ensemble.parquet")
    options = ScoreOptions(
        device="cpu", ensemble=True, columns=ColumnSpec(weight="w"), ci=0.9, ci_replicates=20
    )
    report = score(str(path), options)
    payload = report.to_dict()
    assert set(STABLE_NAMES) <= set(SCORE_METRICS.names())
    # (samples' section and a quantile model's, which an ensemble lacks: tests/test_samples.py
    # and tests/test_quantiles.py check them)
    metrics = [
        m for m in SCORE_METRICS.metrics.values() if m.section not in ("samples", "quantiles")
    ]
    checks = [parse_check(f"{m.name}{'@0.9' if m.per_level else ''} > -1e300") for m in metrics]
    results = evaluate(checks, report)
    for metric, result in zip(metrics, results, strict=True):
        assert result.value == pytest.approx(_json_value(payload, metric, 0.9)), metric.name
        assert result.passed, metric.name


@pytest.mark.parametrize("record", [Report, CalibrationSummary, AccuracySummary, OutputScore])
def test_every_report_field_is_declared_and_every_metric_is_a_field(record):
    declared_names = {name for name, _ in declared(record)}  # raises on an undeclared field
    assert declared_names == {field.name for field in dataclasses.fields(record)}
    for name, spec in declared(record):
        assert spec.shape is Shape.INFO or spec.label or spec.shape is Shape.SECTION, name
        assert spec.description, name
    catalogued_fields = {m.path[-1] for m in SCORE_METRICS.metrics.values()}
    if record is not OutputScore:
        checkable = {name for name, spec in declared(record) if spec.checkable}
        assert checkable <= catalogued_fields


def test_compare_metrics_come_from_the_compare_report_fields():
    paired = {name for name, spec in declared(PairedSummary) if spec.checkable}
    top = {name for name, spec in declared(CompareReport) if spec.checkable}
    deltas = {name for name, spec in declared(CalibrationDeltas) if spec.checkable}  # --ci's
    assert set(COMPARE_METRICS.metrics) == paired | top | deltas
    assert {"delta_nll", "delta_nll_ci_low", "unmatched_candidate"} <= set(COMPARE_METRICS.metrics)


def test_exit_codes_and_check_output(parquet_file, predictions):
    nll = torch_nll(predictions)
    passing = run(
        "score", str(parquet_file), "--check", f"nll <= {nll + 0.01}", "--check", "rows == 2500"
    )
    assert passing.exit_code == 0, passing.output
    assert "checks: all passed" in passing.stdout
    failing = run(
        "score", str(parquet_file), "--check", f"nll < {nll - 0.01}", "--check", "rows == 2500"
    )
    assert failing.exit_code == 1
    assert "checks: 1 failed" in failing.stdout and "FAIL" in failing.stdout
    malformed = run("score", str(parquet_file), "--check", "nll <=")
    assert malformed.exit_code == 2 and "must be 'METRIC OP NUMBER'" in malformed.stderr


def test_json_checks_and_an_unlisted_level_is_computed(parquet_file):
    result = run("score", str(parquet_file), "--json", "--check", "coverage@0.85 >= 0.99")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["passed"] is False
    (check,) = payload["checks"]
    assert (check["metric"], check["op"], check["bound"], check["passed"]) == (
        "coverage@0.85",
        ">=",
        [0.99],
        False,
    )
    direct = score(str(parquet_file), ScoreOptions(device="cpu", levels=(0.85,)))
    assert check["value"] == direct.calibration.coverage[0]
    assert 0.85 in payload["calibration"]["levels"]


def test_calibration_check_with_no_calibration_is_a_usage_error(parquet_file):
    result = run("score", str(parquet_file), "--no-calibration", "--check", "mace < 0.1")
    assert result.exit_code == 2 and "drop --no-calibration" in result.stderr


def test_markdown_report(parquet_file, predictions):
    result = run(
        "score",
        str(parquet_file),
        "--format",
        "markdown",
        "--check",
        "nll < 100",
        "--check",
        "var_scale between 5 6",
    )
    assert result.exit_code == 1
    text = result.stdout
    assert text.startswith(f"### gaussnll score: `{parquet_file}`")
    assert f"| NLL (mean) | `nll` | {torch_nll(predictions):.6f} |" in text
    assert "| ✅ | `nll < 100` |" in text and "| ❌ | `var_scale between 5 6` |" in text
    assert "**1 check(s) failed**" in text


def test_junit_xml_parses_with_one_case_per_check(tmp_path, parquet_file):
    out = tmp_path / "checks.xml"
    result = run(
        "score",
        str(parquet_file),
        "--junit-xml",
        str(out),
        "--check",
        "nll < 100",
        "--check",
        "mace < 0",
        "--check",
        "coverage@0.9 between 0 1",
    )
    assert result.exit_code == 1
    root = ET.parse(out).getroot()
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["nll < 100", "mace < 0", "coverage@0.9 between 0 1"]
    assert [c.find("failure") is not None for c in cases] == [False, True, False]
    assert "expected < 0" in cases[1].find("failure").get("message")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checks.xml", "preds.parquet"]


# --- configuration -----------------------------------------------------------------------------


def project(tmp_path, monkeypatch, toml: str):
    columns = make_predictions(300, seed=8)
    write_table(
        pa.table({"mu": columns["mean"], "y": columns["target"], "s2": columns["var"]}),
        tmp_path / "p.parquet",
    )
    (tmp_path / "pyproject.toml").write_text(toml)
    nested = tmp_path / "sub" / "dir"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)  # the nearest pyproject.toml is found in a parent
    return tmp_path / "p.parquet", columns


def test_pyproject_settings_and_checks_apply(tmp_path, monkeypatch):
    toml = """
[tool.gaussnll]
mean_col = "mu"
target_col = "y"
var_col = "s2"
full = true
checks = ["nll < -100"]
levels = [0.6]
"""
    path, columns = project(tmp_path, monkeypatch, toml)
    result = run("score", str(path), "--json")
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["nll"] == pytest.approx(torch_nll(columns, full=True), rel=1e-12)
    assert payload["config"]["file"] == str(tmp_path / "pyproject.toml")
    assert payload["config"]["settings"]["mean_col"] == "mu"
    assert payload["calibration"]["levels"] == [0.6]
    assert [c["check"] for c in payload["checks"]] == ["nll < -100"]


def test_command_line_overrides_the_file(tmp_path, monkeypatch):
    toml = (
        '[tool.gaussnll]\nmean_col = "mu"\ntarget_col = "y"\nstd_col = "nope"\nfull = true\n'
        'checks = ["nll < -100"]\n'
    )
    path, columns = project(tmp_path, monkeypatch, toml)
    result = run(
        "score", str(path), "--json", "--var-col", "s2", "--no-full", "--check", "nll < 100"
    )
    assert result.exit_code == 1, result.output  # the file's check still applies, and fails
    payload = json.loads(result.stdout)
    assert payload["nll"] == pytest.approx(torch_nll(columns), rel=1e-12)
    # a --check adds to the file's checks (a gate kept in the repository is never dropped)
    assert [c["check"] for c in payload["checks"]] == ["nll < -100", "nll < 100"]
    assert payload["config"]["settings"]["checks"] == ["nll < -100", "nll < 100"]
    assert payload["columns"]["var"] == ["s2"]


def test_the_settings_name_the_spread_column_read(parquet_file):
    """One name per option: the resolved ``var_col`` is the column read, as ``columns.var``."""
    plain = json.loads(run("score", str(parquet_file), "--json", "-q").stdout)
    assert plain["columns"]["var"] == ["var"]
    spread = {
        key: plain["config"]["settings"][key] for key in ("var_col", "std_col", "log_var_col")
    }
    assert spread == {"var_col": "var", "std_col": None, "log_var_col": None}
    given = json.loads(run("score", str(parquet_file), "--json", "--std-col", "var").stdout)
    assert given["columns"]["std"] == ["var"]
    assert given["config"]["settings"]["var_col"] is None
    assert given["config"]["settings"]["std_col"] == "var"


def test_the_table_and_markdown_name_the_config_file_read(tmp_path, monkeypatch):
    path, _ = project(
        tmp_path,
        monkeypatch,
        '[tool.gaussnll]\nmean_col = "mu"\ntarget_col = "y"\nvar_col = "s2"\n',
    )
    config = str(tmp_path / "pyproject.toml")
    table = CliRunner().invoke(app, ["score", str(path)], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert any(
        line.split() == ["│", "options", "from", "│", "config", "│", config, "│"]
        for line in table.stdout.splitlines()
    )
    markdown = run("score", str(path), "--format", "markdown")
    assert f"Options from `{config}`." in markdown.stdout.splitlines()[:4]
    elsewhere = tmp_path.parent / "no-config"  # no pyproject.toml above it
    elsewhere.mkdir(exist_ok=True)
    monkeypatch.chdir(elsewhere)
    for output in (["--format", "markdown"], []):
        result = run(
            "score", str(path), "--mean-col", "mu", "--target-col", "y", "--var-col", "s2", *output
        )
        assert result.exit_code == 0, result.output
        assert "Options from" not in result.stdout and "config" not in result.stdout


def test_explicit_config_file_and_its_errors(tmp_path, monkeypatch):
    path, columns = project(tmp_path, monkeypatch, "[tool.other]\nx = 1\n")
    config = tmp_path / "gaussnll.toml"
    config.write_text('mean_col = "mu"\ntarget_col = "y"\nvar_col = "s2"\n')
    result = run("score", str(path), "--json", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["nll"] == pytest.approx(torch_nll(columns), rel=1e-12)
    config.write_text('mean_col = "mu"\nmean_column = "x"\n')
    unknown = run("score", str(path), "--config", str(config))
    assert unknown.exit_code == 2 and "unknown gaussnll setting 'mean_column'" in unknown.stderr
    config.write_text("eps = true\n")
    wrong = run("score", str(path), "--config", str(config))
    assert wrong.exit_code == 2 and "eps has the wrong type (bool)" in wrong.stderr
    config.write_text("eps = \n")
    broken = run("score", str(path), "--config", str(config))
    assert broken.exit_code == 2 and "not valid TOML" in broken.stderr
    missing = run("score", str(path), "--config", str(tmp_path / "absent.toml"))
    assert missing.exit_code == 2 and "No such file or directory" in missing.stderr
