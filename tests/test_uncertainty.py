"""Error against predicted uncertainty: the σ bins of nearly equal count and ENCE, against an
independent numpy computation, analytic values, and chunk, group and merge invariance."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import ColumnSpec, OptionError, ScoreOptions, Scorer, score


def predictions(n: int, seed: int, var_factor: float = 1.0) -> pd.DataFrame:
    """True σ log-uniform over four decades; the model predicts ``var_factor`` × the truth."""
    rng = np.random.default_rng(seed)
    sigma = 10.0 ** rng.uniform(-2, 2, n)
    mean = rng.normal(size=n)
    return pd.DataFrame(
        {
            "mean": mean,
            "target": mean + sigma * rng.normal(size=n),
            "var": var_factor * sigma**2,
            "g": rng.choice(["a", "b", "c"], n),
        }
    )


def reference(var: np.ndarray, r: np.ndarray, bins: int) -> dict:
    """The same binning, written out with numpy and loops: σ = √var in 8 log bins per decade
    over 1e-10..1e10 (plus under/overflow), cuts at the boundaries nearest n·k/bins."""
    edges = np.logspace(-10, 10, 20 * 8 + 1)
    bounds = np.concatenate([[0.0], edges, [np.inf]])
    fine = np.searchsorted(edges, np.sqrt(var), side="left")
    count = np.bincount(fine, minlength=len(bounds) - 1)
    cumulative = np.cumsum(count)
    n = cumulative[-1]
    cuts = []
    for k in range(1, bins):
        distance = np.abs(cumulative - n * k / bins)
        cuts.append(np.flatnonzero(distance == distance.min()).max())
    coarse_of_fine = np.array([sum(c < j for c in cuts) for j in range(len(count))])
    coarse = coarse_of_fine[fine]
    result: dict = {"edges": [], "counts": [], "rmv": [], "rmse": []}
    for k in range(bins):
        members = coarse == k
        if not members.any():
            continue
        occupied = np.flatnonzero((count > 0) & (coarse_of_fine == k))
        if not result["edges"]:
            result["edges"].append(bounds[occupied[0]])
        result["edges"].append(bounds[occupied[-1] + 1])
        result["counts"].append(int(members.sum()))
        result["rmv"].append(math.sqrt(var[members].mean()))
        result["rmse"].append(math.sqrt((r[members] ** 2).mean()))
    rmv, rmse = np.array(result["rmv"]), np.array(result["rmse"])
    result["ence"] = float(np.mean(np.abs(rmv - rmse) / rmv))
    return result


def scored(frame: pd.DataFrame, **settings) -> object:
    return score(
        frame[["mean", "target", "var", *settings.pop("keep", ())]], device="cpu", **settings
    )


def test_a_calibrated_model_has_an_ence_near_zero():
    calibration = scored(predictions(200_000, 1)).calibration
    assert calibration.ence < 0.02
    assert sum(calibration.uncertainty_bins["counts"]) == 200_000
    assert len(calibration.uncertainty_bins["counts"]) == 10


def test_variances_half_the_truth_give_the_analytic_ence():
    calibration = scored(predictions(200_000, 2, var_factor=0.5)).calibration
    expected = abs(math.sqrt(0.5) - 1) / math.sqrt(0.5)
    assert calibration.ence == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("bins", [1, 4, 10, 37])
def test_bins_and_ence_match_an_independent_numpy_computation(bins):
    frame = predictions(20_000, 3, var_factor=0.7)
    calibration = scored(frame, uncertainty_bins=bins).calibration
    expected = reference(
        frame["var"].to_numpy(), (frame["target"] - frame["mean"]).to_numpy(), bins
    )
    got = calibration.uncertainty_bins
    assert got["counts"] == expected["counts"]
    assert got["edges"] == pytest.approx(expected["edges"], rel=1e-12)
    assert got["rmv"] == pytest.approx(expected["rmv"], rel=1e-10)
    assert got["rmse"] == pytest.approx(expected["rmse"], rel=1e-10)
    assert calibration.ence == pytest.approx(expected["ence"], rel=1e-10)


def test_sigma_is_the_variance_as_given_before_the_eps_floor():
    frame = predictions(5_000, 4)
    frame["var"] = 1e-8  # all below the floor: σ = 1e-4, not √eps
    calibration = scored(frame, eps=1.0).calibration
    assert (
        calibration.uncertainty_bins["edges"][0] < 1e-4 <= calibration.uncertainty_bins["edges"][-1]
    )
    assert calibration.uncertainty_bins["rmv"] == pytest.approx([1e-4])
    histogram = calibration.sigma_histogram
    assert histogram["counts"] == [5_000]
    assert histogram["edges"][0] < 1e-4 <= histogram["edges"][1]


def test_a_zero_variance_falls_in_the_lowest_bin():
    frame = predictions(1_000, 5)
    frame.loc[:9, "var"] = 0.0
    histogram = scored(frame).calibration.sigma_histogram
    assert histogram["edges"][0] == 0.0 and histogram["counts"][0] == 10


def test_chunk_size_and_merge_do_not_change_the_bins():
    frame = predictions(30_000, 6, var_factor=1.3)
    whole = scored(frame).calibration
    chunked = scored(frame, chunk_size=777).calibration
    assert chunked.uncertainty_bins["counts"] == whole.uncertainty_bins["counts"]
    assert chunked.uncertainty_bins["rmv"] == pytest.approx(whole.uncertainty_bins["rmv"], 1e-12)
    assert chunked.ence == pytest.approx(whole.ence, rel=1e-12)
    left, right = Scorer(device="cpu"), Scorer(device="cpu")
    tensors = [torch.tensor(frame[name].to_numpy()) for name in ("mean", "target", "var")]
    left.update(*(t[:12_345] for t in tensors))
    right.update(*(t[12_345:] for t in tensors))
    left.merge(right)
    merged = left.report().calibration
    assert merged.uncertainty_bins["counts"] == whole.uncertainty_bins["counts"]
    assert merged.ence == pytest.approx(whole.ence, rel=1e-12)


def test_each_group_equals_scoring_its_rows_alone():
    frame = predictions(30_000, 7, var_factor=0.8)
    report = scored(
        frame,
        keep=("g",),
        columns=ColumnSpec(by=("g",)),
        chunk_size=1_000,
        group_metrics="nll,uncertainty",  # ENCE's bins per group only when asked
    )
    for group in report.groups:
        (key,) = group.key
        alone = scored(frame[frame["g"] == key]).calibration
        mine = group.report.calibration
        assert mine.uncertainty_bins["counts"] == alone.uncertainty_bins["counts"]
        assert mine.uncertainty_bins["rmse"] == pytest.approx(alone.uncertainty_bins["rmse"], 1e-12)
        assert mine.sigma_histogram == alone.sigma_histogram
        assert mine.ence == pytest.approx(alone.ence, rel=1e-12)


def test_several_outputs_bin_every_element_and_each_output():
    rng = np.random.default_rng(8)
    mean, var = rng.normal(size=(4_000, 2)), 10.0 ** rng.uniform(-1, 1, (4_000, 1))
    target = mean + np.sqrt(var) * rng.normal(size=(4_000, 2))
    scorer = Scorer(device="cpu")
    scorer.update(torch.tensor(mean), torch.tensor(target), torch.tensor(var))  # width-1 var
    report = scorer.report()
    assert sum(report.calibration.uncertainty_bins["counts"]) == 8_000
    both = np.concatenate([var[:, 0], var[:, 0]])
    expected = reference(both, (target - mean).T.reshape(-1), 10)
    assert report.calibration.ence == pytest.approx(expected["ence"], rel=1e-10)
    first = reference(var[:, 0], target[:, 0] - mean[:, 0], 10)
    assert report.outputs[0].calibration.ence == pytest.approx(first["ence"], rel=1e-10)


def test_uncertainty_bins_must_be_a_sensible_count():
    with pytest.raises(OptionError, match="uncertainty_bins"):
        ScoreOptions(uncertainty_bins=0)


def test_cli_reports_ence_and_gates_on_it(tmp_path):
    path = tmp_path / "half.parquet"
    predictions(20_000, 9, var_factor=0.5).to_parquet(path)
    runner = CliRunner()
    result = runner.invoke(app, ["score", str(path), "--json", "--uncertainty-bins", "5"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)["calibration"]
    assert len(payload["uncertainty_bins"]["counts"]) == 5
    assert payload["ence"] == pytest.approx(0.41, abs=0.03)
    assert len(payload["calibration_curve"]) == 100
    failed = runner.invoke(app, ["score", str(path), "--check", "ence <= 0.1", "-q"])
    assert failed.exit_code == 1
    passed = runner.invoke(app, ["score", str(path), "--check", "ence <= 0.5", "-q"])
    assert passed.exit_code == 0
    bad = runner.invoke(app, ["score", str(path), "--uncertainty-bins", "0"])
    assert bad.exit_code == 2 and "--uncertainty-bins" in bad.stderr


def test_calibration_curve_is_the_observed_coverage_at_100_levels():
    from scipy.stats import norm

    frame = predictions(10_000, 10, var_factor=0.6)
    calibration = scored(frame).calibration
    z = (frame["target"] - frame["mean"]).to_numpy() / np.sqrt(frame["var"].to_numpy())
    a = np.abs(2 * norm.cdf(z) - 1)
    levels = np.linspace(0, 1, 100)
    expected = [(a <= p).mean() for p in levels]
    assert calibration.calibration_curve == pytest.approx(expected, abs=1e-12)
    assert np.mean(np.abs(np.array(expected) - levels)) == pytest.approx(calibration.mace)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fine_bins_equal_a_search_of_the_squared_edges(dtype):
    from gaussnll.core.state.uncertainty import SIGMA_EDGES, fine_bins

    edges = (SIGMA_EDGES * SIGMA_EDGES).to(dtype)
    tiny, huge = torch.finfo(dtype).tiny, torch.finfo(dtype).max
    values = torch.cat(
        [
            edges,
            torch.nextafter(edges, torch.zeros_like(edges)),
            torch.nextafter(edges, torch.full_like(edges, huge)),
            torch.tensor([0.0, tiny, huge, math.inf, math.nan], dtype=dtype),
            10.0 ** torch.empty(10_000, dtype=torch.float64).uniform_(-30, 30).to(dtype),
        ]
    )
    expected = np.searchsorted(edges.numpy(), values.numpy(), side="left")
    assert np.array_equal(fine_bins(values).numpy(), expected)
