"""One-sided (quantile) calibration: equal to uncertainty-toolbox's ``prop_type="quantile"``
numbers and to a scipy re-computation of the PIT, for the single Gaussian, per output, per
group, merged, and for an ensemble's mixture; the point-mass and edge conventions the mixture
shares with the single Gaussian; and a recalibration map that is the minimiser of what it
scores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import uncertainty_toolbox.metrics_calibration as utc
from scipy import stats
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import ColumnSpec, Scorer, load_state, merge_states, recalibrate, score
from gaussnll.core.state.binning import Cells, LevelGrid, OneSidedGrid, QuantileGrid
from gaussnll.core.state.calibration import CALIBRATION_FAMILIES, grids_of

TAU = np.linspace(0, 1, 100)
QUANTILE = ("quantile_mace", "quantile_rmsce", "quantile_miscalibration_area")


def biased(rows: int, seed: int = 0, outputs: int = 1) -> dict[str, np.ndarray]:
    """Predictions whose targets sit a third of σ above the mean: central intervals cover
    nearly as they should, one-sided levels do not."""
    rng = np.random.default_rng(seed)
    shape = (rows, outputs) if outputs > 1 else (rows,)
    mean = rng.normal(size=shape)
    var = rng.uniform(0.05, 3.0, size=shape)
    target = mean + np.sqrt(var) * (0.35 + rng.standard_normal(shape))
    return {"mean": mean, "var": var, "target": target}


def toolbox(mean, var, target) -> dict[str, float]:
    """uncertainty-toolbox's one-sided numbers (its curve is reflected: residual mean - y)."""
    args = (mean, np.sqrt(var), target)
    _, reflected = utc.get_proportion_lists_vectorized(*args, prop_type="quantile")
    return {
        "quantile_mace": utc.mean_absolute_calibration_error(*args, prop_type="quantile"),
        "quantile_rmsce": utc.root_mean_squared_calibration_error(*args, prop_type="quantile"),
        "quantile_miscalibration_area": utc.miscalibration_area(
            *args, prop_type="quantile", vectorized=True
        ),
        "quantile_calibration_curve": 1 - reflected[::-1],
    }


def pit_curve(u: np.ndarray) -> np.ndarray:
    """The share of PIT values at or below each level (a numpy reference)."""
    return (u.reshape(-1, 1) <= TAU).mean(axis=0)


def assert_one_sided(calibration, expected: dict) -> None:
    for name in QUANTILE:
        assert getattr(calibration, name) == pytest.approx(expected[name], abs=1e-12), name
    assert calibration.quantile_calibration_curve == pytest.approx(
        list(expected["quantile_calibration_curve"]), abs=1e-12
    )


def test_single_gaussian_equals_uncertainty_toolbox_and_the_pit():
    data = biased(3000, seed=1)
    report = score(pd.DataFrame(data), device="cpu", chunk_size=700)
    calibration = report.calibration
    assert_one_sided(calibration, toolbox(data["mean"], data["var"], data["target"]))
    u = stats.norm.cdf((data["target"] - data["mean"]) / np.sqrt(data["var"]))
    assert calibration.quantile_calibration_curve == pytest.approx(list(pit_curve(u)), abs=1e-15)
    # The bias the central curve cannot see.
    assert calibration.mace < 0.03 < 0.09 < calibration.quantile_mace


def test_per_output_equals_uncertainty_toolbox():
    data = biased(800, seed=2, outputs=2)
    frame = pd.DataFrame({f"{role}{d}": data[role][:, d] for role in data for d in range(2)})
    columns = ColumnSpec(
        mean=["mean0", "mean1"], target=["target0", "target1"], spread=["var0", "var1"]
    )
    report = score(frame, device="cpu", columns=columns)
    for d, output in enumerate(report.outputs):
        expected = toolbox(data["mean"][:, d], data["var"][:, d], data["target"][:, d])
        assert_one_sided(output.calibration, expected)


def test_groups_chunks_and_merged_states_give_the_same_numbers(tmp_path):
    frame = pd.DataFrame(biased(1500, seed=3))
    frame["g"] = np.random.default_rng(4).choice(["a", "b", "c"], size=len(frame))
    by = ColumnSpec(by=("g",))
    chosen = "nll,one_sided"  # a group's curves only when asked for
    whole = score(frame, device="cpu", chunk_size=10_000, columns=by, group_metrics=chosen)
    chunked = score(frame, device="cpu", chunk_size=7, columns=by, group_metrics=chosen)
    states = [tmp_path / "first.json", tmp_path / "second.json"]
    for part, state in zip((frame[:600], frame[600:].iloc[::-1]), states, strict=True):
        score(part, device="cpu", chunk_size=97, columns=by, state_to=state, group_metrics=chosen)
    merged = merge_states([load_state(str(state)) for state in states]).report()
    everything = toolbox(frame["mean"].values, frame["var"].values, frame["target"].values)
    for report in (whole, chunked, merged):
        assert_one_sided(report.calibration, everything)
        assert [group.key for group in report.groups] == [("a",), ("b",), ("c",)]
        for group in report.groups:
            rows = frame[frame["g"] == group.key[0]]
            expected = toolbox(rows["mean"].values, rows["var"].values, rows["target"].values)
            assert_one_sided(group.report.calibration, expected)


def test_the_family_is_chosen_per_scope():
    frame = pd.DataFrame(biased(300, seed=5))
    frame["g"] = np.arange(300) % 2
    by = ColumnSpec(by=("g",))
    left_out = score(frame, device="cpu", columns=by, metrics="nll,calibration")
    assert left_out.calibration.quantile_mace is None
    assert left_out.calibration.quantile_calibration_curve is None
    assert left_out.calibration.mace is not None
    whole_only = score(frame, device="cpu", columns=by, group_metrics="nll,crps")
    assert whole_only.calibration.quantile_mace is not None
    assert whole_only.groups[0].report.calibration.quantile_mace is None
    default = score(frame, device="cpu", columns=by)  # a group's curves only when asked for
    assert default.groups[0].report.calibration.quantile_mace is None
    asked = score(frame, device="cpu", columns=by, group_metrics="nll,one_sided")
    assert asked.groups[0].report.calibration.quantile_mace is not None


def mixture_numbers(mean, var, target) -> dict:
    """The mixture's one-sided numbers from its CDF by scipy, with uncertainty-toolbox's
    formulas on the proportions (the mean, the root mean square and its area)."""
    cdf = stats.norm.cdf(target[:, None], mean, np.sqrt(var)).mean(axis=1)
    curve = pit_curve(cdf)
    return {
        "mixture_quantile_mace": np.mean(np.abs(curve - TAU)),
        "mixture_quantile_rmsce": np.sqrt(np.mean((curve - TAU) ** 2)),
        "mixture_quantile_miscalibration_area": utc.miscalibration_area_from_proportions(
            TAU, curve
        ),
        "mixture_quantile_calibration_curve": curve,
    }


@pytest.mark.parametrize("chunk_size", [13, 10_000])
def test_the_mixture_equals_a_reference_on_its_cdf(chunk_size):
    rng = np.random.default_rng(6)
    rows, members = 900, 4
    truth = rng.normal(size=(rows, 1))
    mean = truth + rng.normal(scale=0.7, size=(rows, members))
    var = rng.uniform(0.05, 2.0, size=(rows, members))
    target = truth[:, 0] + 0.4 + rng.normal(scale=1.2, size=rows)
    frame = pd.DataFrame({"mean": list(mean), "var": list(var), "target": target})
    section = score(frame, device="cpu", ensemble=True, chunk_size=chunk_size).ensemble
    expected = mixture_numbers(mean, var, target)
    for name, value in expected.items():
        assert getattr(section, name) == pytest.approx(value, abs=1e-12), name


def point_masses(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Means on, above and below the targets (a third each), for zero variances."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=rows)
    mean = target + rng.choice([-1.0, 0.0, 1.0], size=rows)
    return mean, target


def test_a_one_member_ensemble_of_point_masses_is_the_gaussian():
    """A zero variance on the target: PIT ½ in the mixture as in the Gaussian, so it is inside
    every interval in both; off the target, PIT 0 or 1 in both."""
    mean, target = point_masses(600, seed=7)
    gaussian = Scorer(device="cpu")
    gaussian.update(torch.from_numpy(mean), torch.from_numpy(target), torch.zeros(600))
    ensemble = Scorer(device="cpu", ensemble=True)
    ensemble.update(torch.from_numpy(mean[:, None]), torch.from_numpy(target), torch.zeros(600, 1))
    single, mixture = gaussian.report().calibration, ensemble.report().ensemble
    on_target = int((mean == target).sum())
    assert single.inside_counts == [on_target] * len(single.levels)
    assert mixture.mixture_inside_counts == single.inside_counts
    assert mixture.mixture_pit_counts == single.pit_counts
    assert mixture.mixture_quantile_calibration_curve == single.quantile_calibration_curve
    above = (mean > target).mean()  # PIT 0: at or below every level, τ = 0 included
    assert single.quantile_calibration_curve[0] == pytest.approx(above, abs=1e-15)
    assert single.quantile_calibration_curve[50] == pytest.approx(above + (mean == target).mean())
    assert mixture.mixture_quantile_mace == single.quantile_mace


def test_mixture_pit_bins_put_an_edge_value_in_the_bin_nearer_a_half():
    """Four point masses give the mixture CDF 0, ¼, ½, ¾ or 1 exactly: ¼ is an edge below ½
    (its upper bin), ¾ one above (its lower bin), as the Gaussian's ``QuantileGrid``."""
    rng = np.random.default_rng(8)
    target = rng.normal(size=400)
    below = rng.integers(0, 5, size=400)  # members below the target: the CDF is below/4
    offsets = np.where(np.arange(4) < below[:, None], -1.0, 1.0)
    scorer = Scorer(device="cpu", ensemble=True, pit_bins=20)
    scorer.update(
        torch.from_numpy(target[:, None] + offsets), torch.from_numpy(target), torch.zeros(400, 4)
    )
    section = scorer.report().ensemble
    grid = QuantileGrid(20)
    expected = np.bincount([grid.bin(2 * (b / 4) - 1) for b in below], minlength=20)
    assert section.mixture_pit_counts == expected.tolist()
    assert expected[14] == (below == 3).sum() and expected[15] == 0
    cdf = below / 4
    assert section.mixture_quantile_calibration_curve == pytest.approx(
        list(pit_curve(cdf)), abs=1e-15
    )


def test_one_sided_levels_are_inclusive():
    grid = OneSidedGrid(99)
    for k in range(99):
        epsilon = math.copysign(abs(2 * k - 99) / 99, 2 * k - 99)
        assert grid.bin(epsilon) == k  # u = τ_k counts at τ_k
        assert grid.bin(math.nextafter(epsilon, 2.0)) == k + 1
    # Through the shared lookup of every family's edges: u = τ_k at or below τ_k, and the
    # central curve's bound -p still inside its interval (the adjacent edge below it).
    cells = Cells(grids_of(CALIBRATION_FAMILIES, (0.5, 0.9), 20))
    boundaries = torch.tensor(grid.edges(), dtype=torch.float64)
    cell = cells.lookup(torch.device("cpu"))(boundaries)
    assert cells.bin_of_cell["one_sided"][cell].tolist() == list(range(99))
    central = cells.bin_of_cell["curve"][cell]
    assert central.tolist() == [
        LevelGrid(tuple(k / 99 for k in range(99))).bin(e) for e in grid.edges()
    ]
    levels = torch.arange(99, dtype=torch.float64) / 99
    assert grid.u_bins(levels).tolist() == list(range(99))
    assert grid.u_bins(torch.tensor([math.nan, 1.0], dtype=torch.float64)).tolist() == [100, 99]


def test_a_map_fitted_with_a_large_eps_is_the_minimiser_of_what_it_scores():
    data = biased(4000, seed=9)
    data["var"] = np.random.default_rng(10).uniform(0.01, 1.0, size=4000)
    frame = pd.DataFrame(data)
    eps = 0.3  # floors about a third of the variances
    fitted = recalibrate(frame, device="cpu", eps=eps)
    before = score(frame, device="cpu", eps=eps)
    after = score(frame, device="cpu", eps=eps, recalibration=fitted)
    assert before.eps_floored > 1000
    assert after.calibration.var_scale == pytest.approx(1.0, abs=1e-9)
    assert after.nll_mean == pytest.approx(before.calibration.nll_at_var_scale, rel=1e-12)
    # The NLL of the map is torch's loss on the floored variance times the scale.
    floored = np.maximum(data["var"], eps) * fitted.scale[0]
    expected = torch.nn.functional.gaussian_nll_loss(
        torch.from_numpy(data["mean"]), torch.from_numpy(data["target"]), torch.from_numpy(floored)
    )
    assert after.nll_mean == pytest.approx(expected.item(), rel=1e-12)
    # The scoring rules use the variance as given, times the scale.
    rescaled = score(pd.DataFrame({**data, "var": data["var"] * fitted.scale[0]}), device="cpu")
    assert after.calibration.crps == pytest.approx(rescaled.calibration.crps, rel=1e-12)


SAMPLE = "sample_data/ensemble.parquet"


def test_the_sample_ensemble_passes_central_mace_and_fails_quantile_mace():
    runner = CliRunner()
    central = runner.invoke(app, ["score", SAMPLE, "--ensemble", "-q", "--check", "mace < 0.05"])
    assert central.exit_code == 0, central.output
    result = runner.invoke(
        app, ["score", SAMPLE, "--ensemble", "-q", "--check", "quantile_mace < 0.05"]
    )
    assert result.exit_code == 1
    assert "check failed: quantile_mace < 0.05 (got 0.07494)" in result.stderr
    markdown = runner.invoke(app, ["score", SAMPLE, "--ensemble", "--format", "markdown"])
    assert "| one-sided MACE | `quantile_mace` | 0.074940 |" in markdown.stdout
    assert "| mixture one-sided MACE | 0.069120 |" in markdown.stdout
