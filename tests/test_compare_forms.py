"""compare across input forms (#28 item 3): a Gaussian, samples and quantiles paired on the
scores they share, each delta against scoringrules, scipy and Bracher et al.'s WIS computed in
numpy on the same rows; chunking, pairing by id, groups, weights, per-row output, checks and
bad combinations."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scoringrules
from conftest import assert_one_line_error, make_predictions, write_table
from scipy.stats import norm
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import ScoreOptions, compare
from gaussnll.core.options import with_settings

LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
NAMES = ("q05", "q25", "q50", "q75", "q95")
ROWS, DRAWS = 600, 7
REL = 1e-10
Z_95 = norm.ppf(0.975)
QUANTILE_SETTINGS = {"quantiles": LEVELS, "quantile_cols": NAMES}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One set of targets; a Gaussian, a quantile model (crossing in places) and samples of
    it, each in its own file, the quantile model's and the samples' rows shuffled."""
    tmp = tmp_path_factory.mktemp("forms")
    rng = np.random.default_rng(28)
    gaussian = make_predictions(ROWS, seed=28)
    y = gaussian["target"]
    sigma = rng.uniform(0.3, 2.0, ROWS)
    centre = y + rng.normal(scale=0.7, size=ROWS)
    quantiles = centre[:, None] + sigma[:, None] * norm.ppf(LEVELS)
    quantiles += 0.3 * sigma[:, None] * rng.normal(size=(ROWS, len(LEVELS)))
    draws = centre[:, None] + sigma[:, None] * rng.normal(size=(ROWS, DRAWS))
    ids = np.arange(ROWS)
    weight = rng.integers(0, 4, ROWS).astype(float)
    group = rng.integers(0, 3, ROWS)
    base = pa.table({"id": ids, **gaussian, "w": weight, "g": group})
    order = rng.permutation(ROWS)
    q_table = pa.table(
        {"id": ids, "target": y, "w": weight, **{n: quantiles[:, k] for k, n in enumerate(NAMES)}}
    )
    s_table = pa.table(
        {
            "id": ids,
            "target": y,
            "w": weight,
            "draws": pa.FixedSizeListArray.from_arrays(draws.ravel(), DRAWS),
        }
    )
    paths = {
        "gaussian": write_table(base, tmp / "gaussian.parquet"),
        "quantiles": write_table(q_table.take(order), tmp / "quantiles.parquet"),
        "samples": write_table(s_table.take(order), tmp / "samples.parquet"),
    }
    data = {"gaussian": gaussian, "quantiles": quantiles, "draws": draws, "y": y}
    return {
        "paths": {k: str(v) for k, v in paths.items()},
        "tmp": tmp,
        **data,
        "w": weight,
        "g": group,
    }


def wis_rows(y: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Bracher et al. (2021), eq. (3): (½|y - m| + Σ_k α_k/2 · IS_αk) / (K + ½)."""
    total = 0.5 * np.abs(y - q[:, 2])
    for low, high in ((1, 3), (0, 4)):
        alpha = 2 * LEVELS[low]
        lower, upper = q[:, low], q[:, high]
        interval = (
            (upper - lower)
            + 2 / alpha * np.maximum(lower - y, 0)
            + 2 / alpha * np.maximum(y - upper, 0)
        )
        total += alpha / 2 * interval
    return total / 2.5


def quantile_reference(y: np.ndarray, q: np.ndarray) -> dict[str, np.ndarray]:
    """Each row's quantile scores by scoringrules and the paper."""
    pinball = np.stack([scoringrules.quantile_score(y, q[:, k], t) for k, t in enumerate(LEVELS)])
    return {
        "quantile_score": pinball.mean(axis=0),
        "wis": wis_rows(y, q),
        "crps_quantile": scoringrules.crps_quantile(y, q, np.array(LEVELS)),
        "coverage": (y[:, None] <= q).astype(float),
    }


def gaussian_quantiles(gaussian: dict) -> np.ndarray:
    return norm.ppf(LEVELS, loc=gaussian["mean"][:, None], scale=np.sqrt(gaussian["var"])[:, None])


def paired(d: np.ndarray, w: np.ndarray | None = None) -> dict[str, float]:
    """A paired difference's mean, spread and interval, weights as frequencies."""
    w = np.ones_like(d) if w is None else w
    n = w.sum()
    mean = (w * d).sum() / n
    std = math.sqrt(((w * d * d).sum() - n * mean * mean) / (n - 1))
    se = std / math.sqrt(n)
    return {
        "": mean,
        "_std": std,
        "_se": se,
        "_ci_low": mean - Z_95 * se,
        "_ci_high": mean + Z_95 * se,
    }


def assert_delta(payload: dict, score: str, d: np.ndarray, w: np.ndarray | None = None) -> None:
    for suffix, value in paired(d, w).items():
        name = f"delta_{score}{suffix}"
        assert payload[name] == pytest.approx(value, rel=REL, abs=1e-13), name


def options(**settings) -> ScoreOptions:
    return with_settings(ScoreOptions(device="cpu"), {"id_col": "id", **settings})


@pytest.mark.parametrize("chunk_size", [1, 37, ROWS])
def test_gaussian_against_a_quantile_model(models, chunk_size):
    """The Gaussian's quantiles are scipy's norm.ppf; every delta is the reference's."""
    base = options(chunk_size=chunk_size)
    report = compare(
        models["paths"]["gaussian"],
        models["paths"]["quantiles"],
        base,
        candidate_options=with_settings(base, QUANTILE_SETTINGS),
    )
    payload = report.to_dict()
    y = models["y"]
    mine = quantile_reference(y, gaussian_quantiles(models["gaussian"]))
    theirs = quantile_reference(y, models["quantiles"])
    for score in ("wis", "quantile_score", "crps_quantile"):
        assert_delta(payload, score, theirs[score] - mine[score])
        assert payload["means"][score]["baseline"] == pytest.approx(mine[score].mean(), rel=REL)
    coverage = (theirs["coverage"] - mine["coverage"]).mean(axis=0)
    np.testing.assert_allclose(payload["delta_quantile_coverage"], coverage, rtol=REL, atol=1e-15)
    assert list(payload["compared"]) == ["wis", "quantile_score", "crps_quantile"]
    assert payload["headline"] == "wis" and payload["delta_nll"] is None
    assert set(payload["not_compared"]) == {"nll", "crps", "dss"}
    assert "no density" in payload["not_compared"]["nll"]
    d = theirs["wis"] - mine["wis"]
    assert payload["candidate_better"] == pytest.approx(np.mean(d < 0))
    assert report.verdict in ("better", "worse", "inconclusive")


def test_samples_against_a_gaussian_and_against_quantiles(models):
    """The draws' energy CRPS (scoringrules' nrg) against the closed form (crps_normal); the
    draws' empirical quantiles (numpy's linear rule) against a quantile model."""
    base = options()
    samples = with_settings(base, {"samples": "draws"})
    report = compare(
        models["paths"]["gaussian"], models["paths"]["samples"], base, candidate_options=samples
    )
    gaussian, y, draws = models["gaussian"], models["y"], models["draws"]
    closed = scoringrules.crps_normal(y, gaussian["mean"], np.sqrt(gaussian["var"]))
    energy = scoringrules.crps_ensemble(y, draws, estimator="nrg")
    payload = report.to_dict()
    assert list(payload["compared"]) == ["crps"]
    assert_delta(payload, "crps", energy - closed)
    assert "moment-matched" in payload["not_compared"]["nll"]
    report = compare(
        models["paths"]["samples"],
        models["paths"]["quantiles"],
        samples,
        candidate_options=with_settings(base, QUANTILE_SETTINGS),
    )
    empirical = np.quantile(draws, LEVELS, axis=1).T
    mine, theirs = quantile_reference(y, empirical), quantile_reference(y, models["quantiles"])
    for score in ("wis", "quantile_score", "crps_quantile"):
        assert_delta(report.to_dict(), score, theirs[score] - mine[score])


def test_two_gaussians_compare_on_nll_crps_and_dss(models, tmp_path):
    gaussian, y = models["gaussian"], models["y"]
    other = {"mean": gaussian["mean"] + 0.3, "var": gaussian["var"] * 0.7, "target": y}
    path = write_table(pa.table({"id": np.arange(ROWS), **other}), tmp_path / "other.parquet")
    payload = compare(models["paths"]["gaussian"], str(path), options()).to_dict()
    assert list(payload["compared"]) == ["nll", "crps", "dss"]

    def rows(model: dict) -> dict[str, np.ndarray]:
        var = np.maximum(model["var"], 1e-6)
        z2 = (y - model["mean"]) ** 2 / var
        return {
            "nll": 0.5 * (np.log(var) + z2),
            "dss": z2 + np.log(var),
            "crps": scoringrules.crps_normal(y, model["mean"], np.sqrt(model["var"])),
        }

    mine, theirs = rows(gaussian), rows(other)
    for score in ("nll", "crps", "dss"):
        assert_delta(payload, score, theirs[score] - mine[score])


def test_weights_and_groups_apply_to_every_delta(models):
    base = options(weight_col="w", by="g")
    report = compare(
        models["paths"]["gaussian"],
        models["paths"]["quantiles"],
        base,
        candidate_options=with_settings(base, QUANTILE_SETTINGS),
    )
    y, w, g = models["y"], models["w"], models["g"]
    mine = quantile_reference(y, gaussian_quantiles(models["gaussian"]))
    theirs = quantile_reference(y, models["quantiles"])
    d = {score: theirs[score] - mine[score] for score in ("wis", "crps_quantile")}
    payload = report.to_dict()
    for score, values in d.items():
        assert_delta(payload, score, values, w)
    assert payload["weight_sum"] == w.sum()
    assert report.groups_total == 3
    for group in report.groups:
        rows = g == group.key[0]
        for score, values in d.items():
            assert_delta(group.report.to_dict(), score, values[rows], w[rows])
    worst = [group.report.paired.delta_wis for group in report.groups]
    assert worst == sorted(worst, reverse=True)  # the largest delta of the headline first


def run(*args: str):
    return CliRunner().invoke(app, ["compare", *args])


QUANTILE_FLAGS = ("--candidate-quantiles", ",".join(map(str, LEVELS)))
QUANTILE_COLS = ("--candidate-quantile-cols", ",".join(NAMES))


def test_cli_per_row_output_checks_and_formats(models):
    paths, tmp = models["paths"], models["tmp"]
    out = tmp / "rows.parquet"
    result = run(
        paths["gaussian"], paths["quantiles"], "--id-col", "id", *QUANTILE_FLAGS, *QUANTILE_COLS,
        "--per-row", str(out), "--json", "-q", "--check", "delta_wis_ci_high < 100",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pydict()
    assert list(rows)[:4] == ["id", "wis_baseline", "wis_candidate", "delta_wis"]
    mine = quantile_reference(models["y"], gaussian_quantiles(models["gaussian"]))
    theirs = quantile_reference(models["y"], models["quantiles"])
    np.testing.assert_allclose(rows["wis_baseline"], mine["wis"], rtol=REL)
    np.testing.assert_allclose(
        rows["delta_crps_quantile"],
        theirs["crps_quantile"] - mine["crps_quantile"],
        rtol=1e-9,
        atol=1e-12,
    )
    assert json.loads(result.stdout)["checks"][0]["passed"]
    table = run(
        paths["gaussian"],
        paths["quantiles"],
        "--id-col",
        "id",
        *QUANTILE_FLAGS,
        *QUANTILE_COLS,
        "-q",
    )
    assert table.exit_code == 0, table.output
    assert "paired WIS difference" in table.stdout and "not compared: nll, dss" in table.stdout
    markdown = run(
        paths["gaussian"], paths["quantiles"], "--id-col", "id", *QUANTILE_FLAGS, *QUANTILE_COLS,
        "-q", "--format", "markdown",
    )  # fmt: skip
    assert "(`delta_wis`)" in markdown.stdout and "- not compared: crps:" in markdown.stdout


def test_a_check_of_a_score_not_compared_is_exit_2_naming_why(models):
    paths = models["paths"]
    common = (
        paths["gaussian"],
        paths["quantiles"],
        "--id-col",
        "id",
        *QUANTILE_FLAGS,
        *QUANTILE_COLS,
    )
    assert_one_line_error(
        run(*common, "--check", "delta_nll_se < 1"),
        "delta_nll_se",
        "nll was not compared",
        "no density",
    )
    assert_one_line_error(
        run(*common, "--max-regression", "0"), "--max-regression 0", "nll was not compared"
    )


def test_bad_combinations_are_one_line(models, tmp_path):
    paths = models["paths"]
    levels = ("--quantiles", "0.05,0.25,0.5,0.75,0.95", "--quantile-cols", ",".join(NAMES))
    other = (
        "--baseline-quantiles",
        "0.1,0.25,0.5,0.75,0.9",
        "--baseline-quantile-cols",
        ",".join(NAMES),
    )
    assert_one_line_error(
        run(paths["quantiles"], paths["quantiles"], "--id-col", "id", *levels, *other),
        "levels differ", "0.1,0.25,0.5,0.75,0.9",
    )  # fmt: skip
    two = make_predictions(50, seed=3, outputs=2)
    table = pa.table(
        {
            "id": np.arange(50),
            "a": two["mean"][:, 0],
            "b": two["mean"][:, 1],
            "va": two["var"][:, 0],
            "vb": two["var"][:, 1],
            "target": two["target"][:, 0],
            **{n: np.sort(two["mean"], axis=1)[:, 0] + k for k, n in enumerate(NAMES)},
        }
    )
    path = str(write_table(table, tmp_path / "two.parquet"))
    assert_one_line_error(
        run(
            path, path, "--id-col", "id", "--mean-col", "a,b", "--var-col", "va,vb",
            *QUANTILE_FLAGS, *QUANTILE_COLS,
        ),
        "2 outputs per row", "a quantile model has one",
    )  # fmt: skip


def test_an_ensemble_meets_a_quantile_model_as_its_moment_matched_gaussian(models, tmp_path):
    rng = np.random.default_rng(5)
    y = models["y"]
    means = y[:, None] + rng.normal(size=(ROWS, 4))
    variances = rng.uniform(0.2, 1.5, size=(ROWS, 4))
    table = pa.table(
        {
            "id": np.arange(ROWS),
            "target": y,
            "mean": pa.FixedSizeListArray.from_arrays(means.ravel(), 4),
            "var": pa.FixedSizeListArray.from_arrays(variances.ravel(), 4),
        }
    )
    path = str(write_table(table, tmp_path / "ensemble.parquet"))
    base = options(ensemble=True)
    quantile_model = with_settings(base, {**QUANTILE_SETTINGS, "ensemble": False})
    report = compare(path, models["paths"]["quantiles"], base, candidate_options=quantile_model)
    matched_mean = means.mean(axis=1)
    matched_var = (variances + means**2).mean(axis=1) - matched_mean**2
    gaussian = {"mean": matched_mean, "var": matched_var}
    mine = quantile_reference(y, gaussian_quantiles(gaussian))
    theirs = quantile_reference(y, models["quantiles"])
    assert_delta(report.to_dict(), "wis", theirs["wis"] - mine["wis"])


def test_checks_of_one_models_form_read_that_models_families(models):
    paths = models["paths"]
    result = run(
        paths["gaussian"], paths["samples"], "--id-col", "id", "--candidate-samples", "draws",
        "-q", "--json", "--check", "candidate.sample_crps_fair < 100",
        "--check", "delta_crps < 100",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [c["passed"] for c in json.loads(result.stdout)["checks"]] == [True, True]
