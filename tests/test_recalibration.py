"""Variance recalibration: fit on held-out data, apply it, write rescaled predictions."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, make_predictions, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import (
    ColumnSpec,
    InputError,
    RecalibrationMap,
    UsageError,
    recalibrate,
    score,
)


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def miscalibrated(rows: int, seed: int, factor: float = 0.5) -> pd.DataFrame:
    """Predictions whose variances are ``factor`` times the truth, in three regions whose
    true noise differs (so each region needs its own scale)."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["a", "b", "c"], rows)
    noise = np.select([region == "a", region == "b"], [0.5, 1.0], 2.0)
    mean = rng.normal(size=rows)
    return pd.DataFrame(
        {
            "mean": mean,
            "target": mean + noise * rng.standard_normal(rows),
            "var": factor * noise**2,
            "region": region,
        }
    )


def test_the_fitted_scale_is_mean_z_squared_overall_and_per_group():
    frame = miscalibrated(3_000, seed=1)
    fitted = recalibrate(frame, device="cpu", columns=ColumnSpec(by="region"))
    z2 = (frame["target"] - frame["mean"]) ** 2 / frame["var"]
    assert fitted.scale == pytest.approx((z2.mean(),), rel=1e-12)
    for region, rows in frame.groupby("region"):
        assert fitted.scale_of((region,)) == pytest.approx((z2[rows.index].mean(),), rel=1e-12)
    assert fitted.group_rows[("a",)] == int((frame["region"] == "a").sum())


def test_applying_a_map_equals_torch_on_the_rescaled_variances():
    frame = miscalibrated(2_000, seed=2)
    fitted = recalibrate(frame, device="cpu", columns=ColumnSpec(by="region"))
    applied = score(frame, device="cpu", recalibration=fitted, chunk_size=333)
    factor = frame["region"].map(lambda r: fitted.scale_of((r,))[0]).to_numpy()
    expected = F.gaussian_nll_loss(
        torch.tensor(frame["mean"].to_numpy()),
        torch.tensor(frame["target"].to_numpy()),
        torch.tensor(frame["var"].to_numpy()) * torch.tensor(factor),
    )
    assert applied.nll == pytest.approx(float(expected), rel=1e-12)
    assert applied.recalibration["unseen_rows"] == 0


def test_a_held_out_split_improves_and_an_unseen_key_uses_the_overall_scale():
    calibration, test = miscalibrated(4_000, seed=3), miscalibrated(4_000, seed=4)
    fitted = recalibrate(calibration, device="cpu", columns=ColumnSpec(by="region"))
    before = score(test, device="cpu")
    after = score(test, device="cpu", recalibration=fitted)
    assert after.nll < before.nll
    assert abs(after.calibration.var_scale - 1) < 0.1 < abs(before.calibration.var_scale - 1)
    test.loc[:9, "region"] = "new"
    unseen = score(test, device="cpu", recalibration=fitted)
    assert unseen.recalibration["unseen_rows"] == 10


def test_tensor_chunks_take_an_ungrouped_map_only():
    frame = miscalibrated(500, seed=5)
    fitted = recalibrate(frame, device="cpu")
    columns = [torch.tensor(frame[name].to_numpy()) for name in ("mean", "target", "var")]
    by_tensors = score([tuple(columns)], device="cpu", recalibration=fitted)
    assert by_tensors.nll == pytest.approx(score(frame, device="cpu", recalibration=fitted).nll)
    grouped = recalibrate(frame, device="cpu", columns=ColumnSpec(by="region"))
    with pytest.raises(UsageError, match="needs its key columns"):
        score([tuple(columns)], device="cpu", recalibration=grouped)


def test_maps_that_do_not_fit_the_data_are_refused(tmp_path):
    frame = miscalibrated(300, seed=6)
    fitted = recalibrate(frame, device="cpu", columns=ColumnSpec(by="region"))
    with pytest.raises(UsageError, match="fitted with eps"):
        score(frame, device="cpu", eps=1e-3, recalibration=fitted)
    two = pd.DataFrame({"m0": frame["mean"], "m1": frame["mean"], "t0": frame["target"],
                        "t1": frame["target"], "v0": frame["var"], "v1": frame["var"],
                        "region": frame["region"]})  # fmt: skip
    spec = ColumnSpec(mean=("m0", "m1"), target=("t0", "t1"), spread=("v0", "v1"))
    with pytest.raises(InputError, match="the recalibration map has 1 output"):
        score(two, device="cpu", columns=spec, recalibration=fitted)
    with pytest.raises(InputError, match="region"):
        score(frame.drop(columns="region"), device="cpu", recalibration=fitted)
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "gaussnll.recalibration/1", "outputs": ["mean"], "scale": [-1]}')
    with pytest.raises(InputError, match="finite positive"):
        RecalibrationMap.load(str(broken))


def test_the_map_round_trips_through_json():
    frame = miscalibrated(300, seed=7)
    fitted = recalibrate(frame, device="cpu", columns=ColumnSpec(by="region"))
    assert RecalibrationMap.from_dict(json.loads(json.dumps(fitted.to_dict()))) == fitted


@pytest.mark.parametrize("kind", ["var", "std", "log_var"])
def test_cli_recalibrate_then_score_and_rescale_in_the_input_form(tmp_path, kind):
    frame = miscalibrated(1_000, seed=8)
    spread = {"var": frame["var"], "std": np.sqrt(frame["var"]), "log_var": np.log(frame["var"])}
    frame = frame.drop(columns="var").assign(spread=spread[kind])
    cal = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "cal.parquet")
    flag = f"--{kind.replace('_', '-')}-col"
    fitted = tmp_path / "map.json"
    shown = run(
        "recalibrate", str(cal), flag, "spread", "--by", "region", "-o", str(fitted), "--json"
    )
    assert shown.exit_code == 0, shown.stderr
    payload = json.loads(shown.stdout)
    assert payload["after"]["nll"] < payload["before"]["nll"]
    assert payload["after"]["var_scale"] == pytest.approx(1.0, abs=1e-9)
    scored = run("score", str(cal), flag, "spread", "--recalibration", str(fitted), "--json")
    assert json.loads(scored.stdout)["nll"] == pytest.approx(payload["after"]["nll"], rel=1e-12)
    out = tmp_path / "rescaled.csv"
    rescaled = run("rescale", str(fitted), str(cal), flag, "spread", "-o", str(out))
    assert rescaled.exit_code == 0, rescaled.stderr
    written = pd.read_csv(out)
    assert list(written.columns) == list(frame.columns)
    assert (written["region"] == frame["region"]).all()
    again = run("score", str(out), flag, "spread", "--json")
    assert json.loads(again.stdout)["nll"] == pytest.approx(payload["after"]["nll"], rel=1e-9)


def test_cli_errors_are_one_line(tmp_path):
    path = write_table(pa.table(make_predictions(50)), tmp_path / "p.parquet")
    assert_one_line_error(run("recalibrate", str(path)), "--output FILE is required")
    assert_one_line_error(
        run("recalibrate", str(path), "-o", "m.txt"), "--output must name a .json"
    )
    missing = run("score", str(path), "--recalibration", str(tmp_path / "absent.json"))
    assert_one_line_error(missing, "absent.json", "cannot read the map")


@pytest.mark.parametrize("pair_by", [(), ("--id-col", "id")])
def test_compare_applies_the_map_to_the_candidate_only(tmp_path, pair_by):
    frame = miscalibrated(1_500, seed=9).assign(id=np.arange(1_500))
    path = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "p.parquet")
    fitted = tmp_path / "map.json"
    assert run("recalibrate", str(path), "--by", "region", "-o", str(fitted)).exit_code == 0
    result = run(
        "compare", str(path), str(path), *pair_by, "--recalibration", str(fitted), "--json"
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    plain = json.loads(run("score", str(path), "--json").stdout)
    recalibrated = json.loads(
        run("score", str(path), "--recalibration", str(fitted), "--json").stdout
    )
    assert payload["baseline"]["nll"] == pytest.approx(plain["nll"], rel=1e-12)
    assert payload["candidate"]["nll"] == pytest.approx(recalibrated["nll"], rel=1e-12)
    assert payload["baseline"]["recalibration"] is None
    assert payload["candidate"]["recalibration"]["by"] == ["region"]
    assert payload["delta_nll"] == pytest.approx(recalibrated["nll"] - plain["nll"], rel=1e-9)
    assert payload["verdict"] == "better"


def test_every_format_names_the_map_applied_literally(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the map named without the folder's underscores
    frame = miscalibrated(600, seed=9)
    data = tmp_path / "preds.parquet"
    frame.to_parquet(data)
    odd = Path("m [bold]x<b>|\x1b[31m.json")
    fit = run("recalibrate", str(data), "--by", "region", "-o", str(odd), "-q")
    assert fit.exit_code == 0, fit.output
    shown = str(odd).replace("\x1b", "\\x1b")  # as ``literal`` writes it
    args = ["score", str(data), "--recalibration", str(odd), "-q"]
    table = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert f"variances recalibrated by {shown} (scale " in table.stdout
    assert "3 group(s) by region; 0 row(s) of other keys took the overall scale)" in table.stdout
    markdown = run(*args, "--format", "markdown").stdout
    escaped = shown.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    escaped = escaped.replace("<", "\\<").replace(">", "\\>").replace("|", "\\|")
    assert f"Variances recalibrated by {escaped} (scale " in markdown
    page = tmp_path / "page.html"
    assert run(*args, "--html", str(page)).exit_code == 0
    text = page.read_text(encoding="utf-8")
    assert f"variances recalibrated by {html.escape(shown)} (scale " in text
    assert "<b>" not in text and "\x1b" not in text
    assert json.loads(run(*args, "--json").stdout)["recalibration"]["file"] == str(odd)


def test_recalibrate_prints_markdown_and_rescale_takes_no_format(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    miscalibrated(500, seed=10).to_parquet("cal|x.parquet")
    result = run("recalibrate", "cal|x.parquet", "-o", "map.json", "--format", "markdown", "-q")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("### gaussnll recalibrate: cal\\|x.parquet → map.json (scale ")
    assert lines[2:4] == ["| metric | before | after |", "| --- | ---: | ---: |"]
    assert (
        lines[4].startswith("| `nll` | ")
        and lines[-1] == "The map fits the scale of each variance."
    )
    assert not any(line.startswith(("┃", "│")) for line in lines)
    for flag in ("--format", "--json"):
        refused = run("rescale", "map.json", "cal|x.parquet", "-o", "out.csv", flag, "json")
        assert refused.exit_code == 2 and "No such option" in refused.output
    assert "--format" not in run("rescale", "--help").stdout


def test_a_fit_without_a_finite_positive_scale_is_refused_naming_the_group(tmp_path):
    frame = miscalibrated(600, seed=12)
    exact = frame["region"] == "b"
    frame.loc[exact, "target"] = frame.loc[exact, "mean"]  # a group the model predicts exactly
    cal = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "cal.parquet")
    fitted = tmp_path / "map.json"
    result = run("recalibrate", str(cal), "--by", "region", "-o", str(fitted))
    assert_one_line_error(result, "cal.parquet", "group region='b'", "it is 0.0")
    assert not fitted.exists()
    assert run("recalibrate", str(cal), "-o", str(fitted), "-q").exit_code == 0  # overall > 0
    frame.loc[3, "target"] = np.nan
    cal = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "nan.parquet")
    result = run(
        "recalibrate", str(cal), "--nan-policy", "propagate", "-o", str(tmp_path / "n.json")
    )
    assert_one_line_error(result, "nan.parquet", "it is nan", "--nan-policy propagate")
    perfect = frame.assign(target=frame["mean"])
    with pytest.raises(InputError, match=r"output 'mean': it is 0\.0"):
        recalibrate(perfect, device="cpu")
