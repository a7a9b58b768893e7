"""The scoring rules use the variance as given, not the loss's ``eps`` floor: properscoring's and
scoringrules' CRPS, a scipy reference below ``eps``, and a zero variance as a point mass. The
NLL family keeps the floor."""

from __future__ import annotations

import math

import numpy as np
import properscoring
import pyarrow as pa
import pytest
import scoringrules
import torch
from calibration_reference import LEVELS, assert_equals_reference, reference
from conftest import make_predictions, report_numbers, torch_nll
from scipy import special

from gaussnll.core import ColumnSpec, Scorer, score
from gaussnll.core.loss import nll_terms
from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.calibration import CALIBRATION_FAMILIES, CalibrationState
from gaussnll.core.state.sinks import Placement

EPS = 1e-6
CHUNK_SIZES = [1, 7, 700, 10_000]


def metrics(report) -> dict[str, object]:
    return {**vars(report.calibration), **vars(report.accuracy)}


def per_element_crps(mean, target, std) -> list[float]:
    """Our CRPS of each element on its own, the spread given as a standard deviation."""
    crps = []
    for m, t, s in zip(mean.ravel(), target.ravel(), std.ravel(), strict=True):
        scorer = Scorer(device="cpu", columns=ColumnSpec(spread="std", spread_kind="std"))
        scorer.update(np.array([m]), np.array([t]), np.array([s]))
        crps.append(scorer.report().calibration.crps)
    return crps


def properscoring_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """properscoring's ``TestDistributionBasedCRPS`` data: one σ is 7.5e-5, below √eps."""
    np.random.seed(1983)
    shape = (2, 3)
    mu = np.random.normal(size=shape)
    sig = np.square(np.random.normal(size=shape))
    obs = np.random.normal(loc=mu, scale=sig, size=shape)
    return obs, mu, sig


def test_crps_equals_properscoring_including_its_small_sigma_case():
    obs, mu, sig = properscoring_case()
    assert sig.min() ** 2 < EPS  # the case the floor used to break
    ours = per_element_crps(mu, obs, sig)
    assert ours == pytest.approx(properscoring.crps_gaussian(obs, mu, sig).ravel(), rel=1e-12)
    # properscoring's test_crps_gaussian_consistent: against a 1000-member quantile ensemble.
    n = 1000
    quantiles = special.ndtri(np.linspace(0.5 / n, 1 - 0.5 / n, n))
    ensemble = quantiles.reshape(-1, 1, 1) * sig + mu
    expected = properscoring.crps_ensemble(obs, ensemble, axis=0)
    np.testing.assert_allclose(np.reshape(ours, obs.shape), expected, rtol=1e-4)


def test_crps_of_a_near_perfect_forecast_equals_scoringrules():
    rng = np.random.default_rng(4)
    mean = rng.normal(size=500)
    sigma = np.full(500, 1e-5)
    target = mean + sigma * rng.standard_normal(500)
    report = score(pa.table({"mean": mean, "target": target, "var": sigma**2}), device="cpu")
    expected = np.mean(scoringrules.crps_normal(target, mean, sigma))
    assert report.calibration.crps < 1e-4
    assert report.calibration.crps == pytest.approx(expected, rel=1e-9)


def below_eps(rows: int = 2_000, seed: int = 21) -> dict[str, np.ndarray]:
    """Predictions whose variances are mostly far below ``eps``, some near it, some above."""
    columns = make_predictions(rows, seed=seed)
    rng = np.random.default_rng(seed)
    tiny = 10.0 ** rng.uniform(-10, -6.5, size=rows)
    columns["var"] = np.where(np.arange(rows) % 4 == 0, columns["var"], tiny)
    columns["target"] = columns["mean"] + 1.1 * np.sqrt(columns["var"]) * rng.standard_normal(rows)
    return columns


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_rules_below_eps_equal_the_scipy_reference(chunk_size):
    columns = below_eps()
    report = score(pa.table(columns), device="cpu", chunk_size=chunk_size)
    assert_equals_reference(metrics(report), reference(**columns, eps=EPS))
    assert report.eps_floored == int(np.sum(columns["var"] < EPS))


def test_nll_family_keeps_the_floor():
    columns = below_eps()
    for full in (False, True):
        report = score(pa.table(columns), device="cpu", full=full, chunk_size=300)
        assert report.nll == pytest.approx(torch_nll(columns, full=full, eps=EPS), rel=1e-12)
        floored = np.maximum(columns["var"], EPS)
        scale = np.mean((columns["target"] - columns["mean"]) ** 2 / floored)
        cal = report.calibration
        assert cal.var_scale == pytest.approx(scale, rel=1e-12)
        rescaled = {**columns, "var": floored * scale}
        at_scale = torch_nll(rescaled, full=full, eps=0.0)  # already floored, then scaled
        assert cal.nll_at_var_scale == pytest.approx(at_scale, rel=1e-12)
        assert cal.nll_full == pytest.approx(torch_nll(columns, full=True, eps=EPS), rel=1e-12)


def point_masses() -> dict[str, np.ndarray]:
    """Zero variances: two targets below the mean, three on it, two above."""
    mean = np.array([0.5, -1.0, 2.0, 0.0, -3.0, 1.0, 4.0])
    error = np.array([-2.0, -0.25, 0.0, 0.0, 0.0, 1.5, 3.0])
    return {"mean": mean, "target": mean + error, "var": np.zeros(7)}


@pytest.mark.parametrize("chunk_size", [1, 3, 100])
def test_a_zero_variance_is_a_point_mass_for_every_rule(chunk_size):
    columns = point_masses()
    error = columns["target"] - columns["mean"]
    report = score(pa.table(columns), device="cpu", chunk_size=chunk_size)
    cal, n = report.calibration, len(error)
    on_mean = np.mean(error == 0)
    mean_abs = np.mean(np.abs(error))
    ensemble = properscoring.crps_ensemble(columns["target"], columns["mean"][:, None])
    assert cal.crps == pytest.approx(np.mean(ensemble), rel=1e-15) == mean_abs
    pit = [0] * cal.pit_bins
    pit[0], pit[cal.pit_bins // 2], pit[-1] = 2, 3, 2  # PIT 0 below, 1/2 on, 1 above the mean
    assert cal.pit_counts == pit
    assert cal.coverage == [on_mean] * len(LEVELS) and cal.inside_counts == [3] * len(LEVELS)
    assert cal.interval_width == [0.0] * len(LEVELS) and cal.sharpness == 0.0
    weights = 2 / (1 - np.array(LEVELS))
    assert cal.interval_score == pytest.approx(weights * mean_abs, rel=1e-14)
    score_weights = 2 / (1 - np.linspace(0.01, 0.99, 99))
    assert cal.interval_score_avg == pytest.approx(np.mean(score_weights) * mean_abs, rel=1e-14)
    assert cal.check_score == pytest.approx(mean_abs / 2, rel=1e-14)  # the mean τ is 1/2
    curve = np.append(np.full(99, on_mean), 1.0)  # every element is inside the interval p = 1
    assert cal.mace == pytest.approx(np.mean(np.abs(curve - np.linspace(0, 1, 100))), rel=1e-14)
    nll_z = error / math.sqrt(EPS)
    assert cal.z_mean == pytest.approx(np.mean(nll_z), rel=1e-14)
    assert cal.z2_mean == pytest.approx(np.mean(nll_z**2), rel=1e-14)
    assert report.nll == pytest.approx(torch_nll(columns, eps=EPS), rel=1e-14)
    assert report.eps_floored == n
    assert math.isnan(cal.ence)  # every bin holds point masses: no normalised error (null)
    numbers = report_numbers(report)
    assert sum(math.isnan(x) for x in numbers) == 2  # ENCE, whole input and its one output
    assert all(math.isfinite(x) for x in numbers if not math.isnan(x))


@pytest.mark.parametrize("chunk_size", [1, 5, 1000])
def test_point_masses_among_other_variances_equal_the_reference(chunk_size):
    columns = below_eps(500, seed=5)
    zero = np.arange(500) % 3 == 1
    columns["var"][zero] = 0.0
    columns["target"][zero & (np.arange(500) % 2 == 0)] = columns["mean"][
        zero & (np.arange(500) % 2 == 0)
    ]
    report = score(pa.table(columns), device="cpu", chunk_size=chunk_size)
    assert_equals_reference(metrics(report), reference(**columns, eps=EPS))
    assert all(math.isfinite(x) for x in report_numbers(report))


def test_groups_and_a_std_column_apply_the_same_rules():
    columns = below_eps(600, seed=8)
    columns["var"][::5] = 0.0
    columns["target"][::10] = columns["mean"][::10]
    keys = np.arange(600) % 3
    table = pa.table({**columns, "std": np.sqrt(columns["var"]), "g": keys})
    spec = ColumnSpec(spread="std", spread_kind="std", by="g")
    report = score(table, device="cpu", chunk_size=64, columns=spec, group_metrics="all")
    for group in report.groups:
        rows = keys == group.key[0]
        subset = {name: values[rows] for name, values in columns.items()}
        assert_equals_reference(metrics(group.report), reference(**subset, eps=EPS))


def test_a_chunk_with_nothing_floored_gives_the_same_bits_either_way():
    """On the CPU ``ScoreState.floored`` hands back the variance itself when nothing is below
    ``eps`` (on a GPU, always a clamped copy): both must add the same bits."""
    columns = make_predictions(5_000, seed=30)
    mean, target, var = (
        torch.from_numpy(columns[k]).unsqueeze(1) for k in ("mean", "target", "var")
    )
    error = target - mean
    terms = nll_terms(error, var)
    states = [
        CalibrationState(1, CALIBRATION_FAMILIES, LEVELS, 20, torch.device("cpu")) for _ in range(2)
    ]
    states[0].update(RowBatch(terms, error, var, var, Placement()))
    states[1].update(RowBatch(terms, error, var, var.clone(), Placement()))
    same, copied = (state.totals() for state in states)
    assert all(torch.equal(same[name], copied[name]) for name in same)
