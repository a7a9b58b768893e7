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
    """The same buckets, written out with numpy's integer division instead of bit shifts: the
    variances' float64 bits, two coarse bins per octave of var from 2^-68 to 2^68, then 4096
    buckets over the occupied coarse bins (a power of two per coarse bin) and cuts at the
    bucket boundaries nearest n·k/bins (every σ inside the range here)."""
    key = var.astype(np.float64).view(np.int64) - ((1023 - 68) << 52)
    half_octave = 1 << 51
    first, last = key.min() // half_octave, key.max() // half_octave
    per_coarse = 4096 // 2 ** math.ceil(math.log2(last - first + 1))
    width = half_octave // per_coarse
    bucket = key // width - first * per_coarse
    count = np.bincount(bucket, minlength=4096)
    cumulative = np.cumsum(count)
    n = cumulative[-1]
    cuts = []
    for k in range(1, bins):
        distance = np.abs(cumulative - n * k / bins)
        cuts.append(np.flatnonzero(distance == distance.min()).max())
    coarse_of_fine = np.array([sum(c < j for c in cuts) for j in range(len(count))])
    coarse = coarse_of_fine[bucket]

    def sigma(b: int) -> float:
        bits = np.int64((first * per_coarse + b) * width + ((1023 - 68) << 52))
        return math.sqrt(bits.view(np.float64))

    result: dict = {"edges": [], "counts": [], "rmv": [], "rmse": []}
    for k in range(bins):
        members = coarse == k
        if not members.any():
            continue
        occupied = np.flatnonzero((count > 0) & (coarse_of_fine == k))
        if not result["edges"]:
            result["edges"].append(sigma(occupied[0]))
        result["edges"].append(sigma(occupied[-1] + 1))
        result["counts"].append(int(members.sum()))
        result["rmv"].append(math.sqrt(var[members].mean()))
        result["rmse"].append(math.sqrt((r[members] ** 2).mean()))
    rmv, rmse = np.array(result["rmv"]), np.array(result["rmse"])
    result["ence"] = float(np.mean(np.abs(rmv - rmse) / rmv))
    return result


def equal_count_ence(var: np.ndarray, r: np.ndarray, bins: int) -> tuple[list[int], float]:
    """Levi et al.'s ENCE on the rows sorted by σ, cut into ``bins`` parts of equal count."""
    parts = np.array_split(np.argsort(var, kind="stable"), bins)
    rmv = np.array([math.sqrt(var[part].mean()) for part in parts])
    rmse = np.array([math.sqrt((r[part] ** 2).mean()) for part in parts])
    return [len(part) for part in parts], float(np.mean(np.abs(rmv - rmse) / rmv))


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
def test_coarse_bins_equal_a_search_of_the_variance_bounds(dtype):
    from gaussnll.core.state.uncertainty import coarse_bins, keys

    # Two per octave of var from 2^-68 to 2^68, each [lower, upper): 2^e and 1.5·2^e.
    bounds = np.array([m * 2.0**e for e in range(-68, 68) for m in (1.0, 1.5)] + [2.0**68])
    edges = torch.tensor(bounds, dtype=dtype)
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
    expected = np.searchsorted(bounds, values.double().numpy(), side="right")
    assert np.array_equal(coarse_bins(keys(values)).numpy(), expected)


def miscalibrated(n: int, seed: int, decades: float, shape: str) -> pd.DataFrame:
    """σ over ``decades`` decades, log-uniform or log-normal (±2 sd over the span), with an
    error scale that drifts with σ, so each bin's gap differs."""
    rng = np.random.default_rng(seed)
    half = decades / 2
    log_sigma = rng.uniform(-half, half, n) if shape == "uniform" else rng.normal(0, half / 2, n)
    sigma = 10.0**log_sigma
    mean = rng.normal(size=n)
    scale = 1 + 0.4 * np.sin(3 * log_sigma / decades)
    return pd.DataFrame(
        {"mean": mean, "target": mean + scale * sigma * rng.normal(size=n), "var": sigma**2}
    )


@pytest.mark.parametrize("shape", ["uniform", "normal"])
@pytest.mark.parametrize("decades", [0.3, 6.0])
def test_bins_hold_equal_counts_and_ence_is_levis_on_sorted_rows(decades, shape):
    frame = miscalibrated(100_000, 11, decades, shape)
    calibration = scored(frame).calibration
    counts = calibration.uncertainty_bins["counts"]
    assert len(counts) == 10
    assert max(abs(count - 10_000) for count in counts) <= 100  # within 1% of N/K
    var, r = frame["var"].to_numpy(), (frame["target"] - frame["mean"]).to_numpy()
    _, exact = equal_count_ence(var, r, 10)
    assert calibration.ence == pytest.approx(exact, rel=0.02)


def test_equal_sigma_is_never_split_across_bins():
    rng = np.random.default_rng(12)
    frame = predictions(10_000, 12)
    frame["var"] = rng.choice([0.5, 1.0, 2.0], p=[0.5, 0.3, 0.2], size=10_000)
    bins = scored(frame).calibration.uncertainty_bins
    assert bins["counts"] == [int((frame["var"] == v).sum()) for v in (0.5, 1.0, 2.0)]
    assert bins["rmv"] == pytest.approx([math.sqrt(0.5), 1.0, math.sqrt(2.0)], rel=1e-12)


@pytest.mark.parametrize("ascending", [True, False])
def test_a_range_growing_chunk_by_chunk_folds_to_the_same_bins(ascending):
    frame = predictions(20_000, 13, var_factor=0.9)
    whole = scored(frame).calibration  # one chunk
    ordered = frame.sort_values("var", ascending=ascending)  # the range grows in every chunk
    chunked = scored(ordered, chunk_size=700).calibration
    tensors = [torch.tensor(ordered[name].to_numpy()) for name in ("mean", "target", "var")]
    shards = [Scorer(device="cpu") for _ in range(3)]
    cuts = (slice(0, 5_000), slice(5_000, 6_000), slice(6_000, None))
    for shard, rows in zip(shards, cuts, strict=True):
        shard.update(*(t[rows] for t in tensors))
    shards[2].merge(shards[0])  # disjoint ranges, merged out of order
    shards[2].merge(shards[1])
    merged = shards[2].report().calibration
    for got in (chunked, merged):
        assert got.uncertainty_bins["counts"] == whole.uncertainty_bins["counts"]
        assert got.uncertainty_bins["edges"] == whole.uncertainty_bins["edges"]
        assert got.sigma_histogram == whole.sigma_histogram
        for name in ("rmv", "rmse"):
            assert got.uncertainty_bins[name] == pytest.approx(whole.uncertainty_bins[name], 1e-12)
        assert got.ence == pytest.approx(whole.ence, rel=1e-12)


def test_a_group_s_buckets_take_a_bounded_size():
    from gaussnll.core.state.uncertainty import COARSE_BINS, SLOTS, UncertaintyState

    state = UncertaintyState(2, torch.device("cpu"), grouped=True)
    assert state.bytes_per_group == 2 * 8 * (COARSE_BINS + 3 * SLOTS)  # 98 KB per output
