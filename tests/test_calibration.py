"""Calibration summaries: equal to an independent numpy/scipy computation
(``calibration_reference``), chunk-invariant, and right on analytic anchors."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F
from calibration_reference import LEVELS, assert_equals_reference, reference
from conftest import make_predictions, torch_nll, write_table
from scipy import stats

from gaussnll.core import ColumnSpec, ScoreOptions, score
from gaussnll.core.state.calibration import (
    CALIBRATION_FAMILIES,
    CalibrationState,
    area_between_curve_and_diagonal,
)


def flat(report_calibration, report_accuracy) -> dict[str, object]:
    return {**vars(report_calibration), **vars(report_accuracy)}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    columns = make_predictions(3_000, seed=9)
    columns["var"][:40] = 1e-9  # below eps: floored for the NLL, not for the scoring rules
    path = write_table(pa.table(columns), tmp_path_factory.mktemp("cal") / "p.parquet")
    return path, columns


def test_every_metric_equals_the_reference(data_file):
    path, columns = data_file
    report = score(str(path), ScoreOptions(device="cpu", chunk_size=700))
    ours = flat(report.calibration, report.accuracy)
    expected = reference(columns["mean"], columns["target"], columns["var"])
    assert_equals_reference(ours, expected)
    assert report.calibration.levels == list(LEVELS)
    assert report.calibration.nll_full == pytest.approx(torch_nll(columns, full=True), rel=1e-12)


def test_var_scale_is_the_nll_minimiser_and_its_nll_is_exact(data_file):
    path, columns = data_file
    for full in (False, True):
        report = score(str(path), ScoreOptions(device="cpu", full=full))
        scale = report.calibration.var_scale
        floored = {**columns, "var": np.maximum(columns["var"], 1e-6)}
        rescaled = {**floored, "var": floored["var"] * scale}
        assert report.calibration.nll_at_var_scale == pytest.approx(
            torch_nll(rescaled, full=full), rel=1e-12
        )
        for nudge in (0.97, 1.03):
            worse = {**floored, "var": floored["var"] * scale * nudge}
            assert torch_nll(worse, full=full) > report.calibration.nll_at_var_scale


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_chunk_invariance(data_file, chunk_size):
    path, _ = data_file
    whole = score(str(path), ScoreOptions(device="cpu", chunk_size=10_000))
    chunked = score(str(path), ScoreOptions(device="cpu", chunk_size=chunk_size))
    a, b = flat(whole.calibration, whole.accuracy), flat(chunked.calibration, chunked.accuracy)
    assert a["pit_counts"] == b["pit_counts"]
    assert a["coverage"] == b["coverage"]
    for key, value in a.items():
        if isinstance(value, float):
            assert b[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
        elif isinstance(value, list):
            assert b[key] == pytest.approx(value, rel=1e-12), key


def synthetic(rows: int, variance_factor: float, sigma: float = 2.0, seed: int = 3) -> dict:
    """Targets drawn from N(mean, sigma²); the model claims variance ``factor * sigma²``."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=rows)
    target = mean + sigma * rng.standard_normal(rows)
    return {"mean": mean, "target": target, "var": np.full(rows, variance_factor * sigma**2)}


def scored(tmp_path, columns, **options):
    path = write_table(pa.table(columns), tmp_path / "s.parquet")
    return score(str(path), ScoreOptions(device="cpu", **options))


def test_calibrated_data_anchors(tmp_path):
    rows, sigma = 200_000, 2.0
    report = scored(tmp_path, synthetic(rows, 1.0, sigma))
    cal = report.calibration
    assert cal.crps == pytest.approx(sigma / math.sqrt(math.pi), rel=0.01)
    for level, observed in zip(cal.levels, cal.coverage, strict=True):
        assert abs(observed - level) < 4 * math.sqrt(level * (1 - level) / rows)
    expected_bin = rows / cal.pit_bins
    assert all(abs(c - expected_bin) < 5 * math.sqrt(expected_bin) for c in cal.pit_counts)
    assert cal.mace < 0.005 and cal.var_scale == pytest.approx(1, abs=0.01)
    assert cal.sharpness == pytest.approx(sigma)


def test_pit_shapes_for_over_and_under_confident(tmp_path):
    over = scored(tmp_path, synthetic(50_000, 0.3)).calibration
    under = scored(tmp_path, synthetic(50_000, 3.0)).calibration
    edges = lambda counts: counts[0] + counts[-1]  # noqa: E731
    middle = lambda counts: counts[len(counts) // 2 - 1] + counts[len(counts) // 2]  # noqa: E731
    assert edges(over.pit_counts) > 3 * middle(over.pit_counts)  # U: over-confident
    assert middle(under.pit_counts) > 3 * edges(under.pit_counts)  # hump: under-confident
    assert over.var_scale == pytest.approx(1 / 0.3, rel=0.03)
    assert under.var_scale == pytest.approx(1 / 3.0, rel=0.03)
    assert all(c < p for c, p in zip(over.coverage, over.levels, strict=True))
    assert all(c > p for c, p in zip(under.coverage, under.levels, strict=True))


def test_crps_and_scores_at_z_zero(tmp_path):
    sigma = 1.5
    report = scored(tmp_path, {"mean": [1.0], "target": [1.0], "var": [sigma**2]})
    cal = report.calibration
    assert cal.crps == pytest.approx(sigma * (math.sqrt(2) - 1) / math.sqrt(math.pi), rel=1e-14)
    assert cal.coverage == [1.0] * 5 and cal.z_mean == 0.0
    widths = [2 * sigma * stats.norm.ppf(0.5 + p / 2) for p in LEVELS]
    assert cal.interval_score == pytest.approx(widths, rel=1e-12)
    assert report.accuracy.mae == report.accuracy.bias == 0.0


def test_multi_output_metrics_per_column_equal_single_runs(tmp_path):
    columns = make_predictions(800, seed=12, outputs=2)
    table = pa.table(
        {k: pa.FixedSizeListArray.from_arrays(v.ravel(), 2) for k, v in columns.items()}
    )
    path = write_table(table, tmp_path / "m.parquet")
    report = score(str(path), ScoreOptions(device="cpu", chunk_size=300))
    for j, output in enumerate(report.outputs):
        single = scored(tmp_path, {k: v[:, j] for k, v in columns.items()})
        assert output.calibration.pit_counts == single.calibration.pit_counts
        assert output.calibration.crps == pytest.approx(single.calibration.crps, rel=1e-12)
        assert output.accuracy.rmse == pytest.approx(single.accuracy.rmse, rel=1e-12)
    both = reference(columns["mean"].ravel(), columns["target"].ravel(), columns["var"].ravel())
    assert report.calibration.crps == pytest.approx(both["crps"], rel=1e-10)
    assert report.calibration.pit_counts == both["pit_counts"]


def test_homoscedastic_broadcast_in_calibration(tmp_path):
    columns = make_predictions(500, seed=13, outputs=2)
    table = pa.table(
        {
            "m0": columns["mean"][:, 0],
            "m1": columns["mean"][:, 1],
            "t0": columns["target"][:, 0],
            "t1": columns["target"][:, 1],
            "v": columns["var"][:, 0],
        }
    )
    spec = ColumnSpec(mean=("m0", "m1"), target=("t0", "t1"), spread="v")
    report = score(
        str(write_table(table, tmp_path / "h.csv")), ScoreOptions(columns=spec, device="cpu")
    )
    shared = np.repeat(columns["var"][:, :1], 2, axis=1)
    expected = reference(columns["mean"].ravel(), columns["target"].ravel(), shared.ravel())
    assert report.calibration.sharpness == pytest.approx(expected["sharpness"], rel=1e-12)
    assert report.calibration.check_score == pytest.approx(expected["check_score"], rel=1e-10)


def test_no_calibration_and_custom_levels(data_file):
    path, columns = data_file
    bare = score(str(path), ScoreOptions(device="cpu", calibration=False))
    assert bare.calibration is None and bare.accuracy is None
    assert bare.to_dict()["calibration"] is None
    custom = score(str(path), ScoreOptions(device="cpu", levels=(0.25, 0.6), pit_bins=7))
    expected = reference(
        columns["mean"], columns["target"], columns["var"], pit_bins=7, levels=(0.25, 0.6)
    )
    assert custom.calibration.coverage == pytest.approx(expected["coverage"], rel=1e-12)
    assert custom.calibration.pit_counts == expected["pit_counts"]


def test_float32_calibration_is_close_to_float64(data_file):
    path, _ = data_file
    f64 = score(str(path), ScoreOptions(device="cpu")).calibration
    f32 = score(str(path), ScoreOptions(device="cpu", dtype="float32")).calibration
    assert f32.crps == pytest.approx(f64.crps, rel=1e-5)
    assert sum(f32.pit_counts) == sum(f64.pit_counts)


def test_area_between_curve_and_diagonal_with_a_crossing():
    expected = [0.0, 0.5, 1.0]
    observed = [0.0, 0.7, 0.8]  # above the diagonal, then crossing below it
    grid = np.linspace(0, 1, 2_000_001)
    dense = np.trapezoid(np.abs(np.interp(grid, expected, observed) - grid), grid)

    def area(expected, observed):  # one curve through the batched function
        curve = torch.tensor([observed], dtype=torch.float64)
        return area_between_curve_and_diagonal(torch.tensor(expected, dtype=torch.float64), curve)

    assert area(expected, observed).item() == pytest.approx(dense, rel=1e-6)
    assert area([0.0, 1.0], [0.0, 1.0]).item() == 0.0


def test_torch_reference_sanity(data_file):
    """The calibration pass does not change the NLL itself."""
    path, columns = data_file
    with_cal = score(str(path), ScoreOptions(device="cpu"))
    tensors = [torch.from_numpy(columns[k]) for k in ("mean", "target", "var")]
    assert with_cal.nll_mean == pytest.approx(F.gaussian_nll_loss(*tensors).item(), rel=1e-12)


def test_grouped_and_ungrouped_states_do_not_merge():
    """A grouped state counts per coarser cell: its sums cannot be added to an ungrouped one's."""
    grouped, plain = (
        CalibrationState(1, CALIBRATION_FAMILIES, LEVELS, 20, torch.device("cpu"), grouped=grouped)
        for grouped in (True, False)
    )
    with pytest.raises(ValueError, match="grouped"):
        grouped.merge(plain)
