"""Bootstrap intervals (``--ci``): the replicate weights against a NumPy SplitMix64 and SciPy's
Poisson(1), the intervals against a naive NumPy Poisson bootstrap with the same weights, their
invariance to how the rows are chunked, threaded, ordered, sharded and spread over Dask, and
their coverage of the truth on simulated data."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.special
import scipy.stats
import torch
from conftest import assert_one_line_error, assert_same_report, make_predictions, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import ColumnSpec, ScoreOptions, score
from gaussnll.core.state.replicates import id_keys, replicate_weights, value_keys

MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
GAMMA, MIX1, MIX2 = (
    np.uint64(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
)


def run(*args: object):
    return CliRunner().invoke(app, [str(arg) for arg in args])


# --- a reference of the weights, in NumPy's uint64 (which wraps and shifts logically) ----------


def np_mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


def np_value_keys(*columns: np.ndarray) -> np.ndarray:
    key = np.zeros(len(columns[0]), dtype=np.uint64)
    for column in columns:
        values = np.asarray(column, dtype=np.float64).reshape(len(column), -1) + 0.0
        for bits in values.view(np.uint64).T:
            key = np_mix(key ^ bits)
    return key


def np_weights(keys: np.ndarray, seed: int, replicates: int) -> np.ndarray:
    """Poisson(1) by SciPy's inverse CDF at the midpoints of 16-bit uniforms, four from each
    SplitMix64 output, least significant first."""
    outputs = -(-replicates // 4)
    with np.errstate(over="ignore"):
        start = np_mix(keys ^ np_mix(np.array([seed], dtype=np.uint64)))
        counters = np.arange(1, outputs + 1, dtype=np.uint64) * GAMMA
        drawn = np_mix(start[:, None] + counters[None, :])
    shifts = np.arange(0, 64, 16, dtype=np.uint64)
    lanes = ((drawn[:, :, None] >> shifts) & np.uint64(0xFFFF)).reshape(len(keys), -1)
    uniform = (lanes[:, :replicates].astype(np.float64) + 0.5) / 2**16
    return scipy.stats.poisson.ppf(uniform, 1.0)


def test_replicate_weights_are_splitmix64_draws_of_poisson_1():
    columns = make_predictions(4_000, seed=3)
    keys = np_value_keys(columns["mean"], columns["target"], columns["var"])
    tensors = [torch.from_numpy(columns[name]) for name in ("mean", "target", "var")]
    mine = value_keys(tensors)
    assert np.array_equal(mine.numpy().view(np.uint64), keys)
    weights = replicate_weights(mine, 5, 64).numpy()
    assert np.array_equal(weights, np_weights(keys, 5, 64))
    # Poisson(1): mean 1, variance 1, P(0) = 1/e; replicates and seeds independent
    assert weights.mean() == pytest.approx(1.0, abs=0.01)
    assert weights.var() == pytest.approx(1.0, abs=0.02)
    assert (weights == 0).mean() == pytest.approx(math.exp(-1), abs=0.01)
    other_seed = replicate_weights(mine, 6, 64).numpy()
    assert abs(np.corrcoef(weights.ravel(), other_seed.ravel())[0, 1]) < 0.01
    for pair in ((0, 1), (0, 4), (3, 4)):  # lanes of one output, and of two
        assert abs(np.corrcoef(weights[:, pair[0]], weights[:, pair[1]])[0, 1]) < 0.05
    assert np.array_equal(replicate_weights(mine, 5, 7).numpy(), weights[:, :7])


def test_keys_come_from_the_values_or_the_id_never_the_position():
    values = [torch.tensor([1.0, -0.0, 2.0]), torch.tensor([3.0, 0.0, 3.0])]
    keys = value_keys(values)
    assert keys[0] != keys[2]
    assert value_keys([v.flip(0) for v in values]).flip(0).tolist() == keys.tolist()
    assert value_keys([torch.tensor([0.0]), torch.tensor([0.0])]) == keys[1]  # -0.0 is 0.0
    as_text = id_keys(pa.array(["a", "b", "a", None]))
    assert as_text[0] == as_text[2] and len(set(as_text.tolist())) == 3
    assert id_keys(pa.chunked_array([[7, 8], [7]])).tolist()[::2] == [id_keys(pa.array([7]))[0]] * 2


def test_ids_of_every_integer_width_and_bytes_are_keys():
    """uint64 ids past int64's range and binary ids (any bytes) key rows: an integer keys
    alike whatever its width, bytes hash like the text they spell."""
    big = pa.array([2**63 + 5, 7, 2**64 - 1], pa.uint64())
    keys = id_keys(big).tolist()
    assert len(set(keys)) == 3
    assert keys[1] == id_keys(pa.array([7], pa.int8()))[0]
    raw = id_keys(pa.array([b"\xff\xfe", b"ab", None], pa.binary())).tolist()
    assert raw[1] == id_keys(pa.array(["ab"]))[0] and len(set(raw)) == 3
    assert raw[2] == id_keys(pa.array([None], pa.string()))[0]


# --- the intervals against a naive bootstrap ---------------------------------------------------


def naive_intervals(columns, weight, level, replicates, seed, levels, poisson=None):
    """Each replicate's metrics from scratch (NumPy, SciPy), then the percentile interval;
    ``poisson``: the rows' Poisson weights (default: keyed by their values)."""
    mean, target, var = columns["mean"], columns["target"], columns["var"]
    if poisson is None:
        poisson = np_weights(np_value_keys(mean, target, var), seed, replicates)
    w = poisson * weight[:, None]
    r = target - mean
    sigma = np.sqrt(var)
    z = r / sigma
    e = scipy.special.erf(z / math.sqrt(2))
    total = w.sum(axis=0)

    def average(x):
        return (w * x[:, None]).sum(axis=0) / total

    pdf, cdf = scipy.stats.norm.pdf(z), scipy.stats.norm.cdf(z)
    curve = np.arange(100) / 99
    central = np.array([average(np.abs(e) <= p) for p in curve])
    one_sided = np.array([average(e <= 2 * tau - 1) for tau in curve])
    metrics = {
        "nll": average(0.5 * (np.log(var) + z**2)),
        "dss": average(np.log(var) + z**2),
        "crps": average(sigma * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))),
        "mace": np.abs(central - curve[:, None]).mean(axis=0),
        "quantile_mace": np.abs(one_sided - curve[:, None]).mean(axis=0),
        "rmse": np.sqrt(average(r**2)),
        "var_scale": average(z**2),
        "coverage": np.array([average(np.abs(e) <= p) for p in levels]).T,
    }
    q = [50 * (1 - level), 50 * (1 + level)]
    found = {}
    for name, values in metrics.items():
        low, high = np.percentile(values, q, axis=0)
        found[f"{name}_ci_low"], found[f"{name}_ci_high"] = low, high
    return found


def test_rows_without_an_id_are_keyed_by_their_values():
    """A missing id (null, NaN) is no id: such rows are not one cluster weighed alike, each
    is keyed by its values, the others by their ids."""
    rows = 400
    columns = make_predictions(rows, seed=13)
    ids = np.arange(rows, dtype=np.float64)
    ids[::3] = np.nan
    missing = np.isnan(ids)
    table = pa.table({**columns, "id": pa.array(ids, mask=np.arange(rows) % 6 == 0)})
    report = score(table, device="cpu", ci=0.9, ci_replicates=50, levels=(0.9,), id_col="id")
    text = id_keys(pa.array(ids[~missing])).numpy().view(np.uint64)
    keys = np_value_keys(columns["mean"], columns["target"], columns["var"])
    keys[~missing] = text
    want = naive_intervals(columns, np.ones(rows), 0.9, 50, 0, (0.9,), np_weights(keys, 0, 50))
    got = report.to_dict()["ci"]
    for name, value in want.items():
        assert got[name] == pytest.approx(np.asarray(value).tolist(), rel=1e-12, abs=1e-14), name


@pytest.mark.parametrize("weighted", [False, True])
def test_intervals_equal_a_naive_poisson_bootstrap_with_the_same_weights(weighted):
    rows, levels = 600, (0.5, 0.9)
    columns = make_predictions(rows, seed=11)
    rng = np.random.default_rng(2)
    weight = rng.uniform(0, 3, size=rows) if weighted else np.ones(rows)
    table = pa.table({**columns, "w": weight})
    options = {"weight_col": "w"} if weighted else {}
    report = score(
        table, device="cpu", ci=0.9, ci_replicates=80, ci_seed=3, levels=levels, **options
    )
    want = naive_intervals(columns, weight, 0.9, 80, 3, levels)
    got = report.to_dict()["ci"]
    for name, value in want.items():
        assert got[name] == pytest.approx(np.asarray(value).tolist(), rel=1e-12, abs=1e-14), name
    assert (got["level"], got["replicates"], got["seed"], got["key"]) == (0.9, 80, 3, "values")
    assert got["nll_ci_low"] < report.nll < got["nll_ci_high"]


def test_several_outputs_bootstrap_rows_and_average_their_elements():
    """Two outputs: a row's weight weighs both its elements; the numbers are over elements."""
    columns = make_predictions(400, seed=8, outputs=2)
    names = {
        f"{role}{j}": columns[role][:, j] for role in ("mean", "target", "var") for j in (0, 1)
    }
    report = score(
        pa.table(names),
        device="cpu",
        ci=0.95,
        ci_replicates=60,
        levels=(0.8,),
        mean_col=["mean0", "mean1"],
        target_col=["target0", "target1"],
        var_col=["var0", "var1"],
    )
    keys = np_value_keys(columns["mean"], columns["target"], columns["var"])
    flat = {role: columns[role].ravel() for role in ("mean", "target", "var")}
    weights = np_weights(keys, 0, 60)
    # each element its row's weights: the naive bootstrap of the elements with those weights
    want = naive_intervals(flat, np.ones(800), 0.95, 60, 0, (0.8,), np.repeat(weights, 2, 0))
    got = report.to_dict()["ci"]
    for name, value in want.items():
        assert got[name] == pytest.approx(np.asarray(value).tolist(), rel=1e-12, abs=1e-14), name


def test_skipped_rows_get_no_weight():
    columns = make_predictions(300, seed=4)
    broken = {name: values.copy() for name, values in columns.items()}
    broken["var"][[5, 77]] = np.nan
    kept = {name: np.delete(values, [5, 77]) for name, values in columns.items()}
    skipped = score(pa.table(broken), device="cpu", ci=0.95, nan_policy="skip")
    assert skipped.skipped_rows == 2
    assert skipped.ci == score(pa.table(kept), device="cpu", ci=0.95).ci


# --- invariance: chunks, threads, order, shards, Dask -----------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("intervals")
    columns = make_predictions(3_000, seed=21)
    table = pa.table({**columns, "id": np.arange(3_000), "w": np.linspace(0.5, 2, 3_000)})
    return write_table(table, folder / "data.parquet"), table


def ci_of(*args: object) -> dict:
    result = run("score", *args, "--ci", "--ci-replicates", "40", "--json", "-q")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["ci"]


@pytest.mark.parametrize("extra", [[], ["--weight-col", "w"], ["--id-col", "id"]])
def test_intervals_do_not_depend_on_chunks_threads_order_or_shards(tmp_path, data, extra):
    path, table = data
    whole = ci_of(path, *extra)
    assert_same_report(ci_of(path, "--chunk-size", "97", *extra), whole)
    assert_same_report(ci_of(path, "--chunk-size", "50", "--workers", "2", *extra), whole)
    order = np.random.default_rng(0).permutation(table.num_rows)
    shuffled = write_table(table.take(order), tmp_path / "shuffled.parquet")
    assert_same_report(ci_of(shuffled, *extra), whole)
    states = []
    for k, part in enumerate(np.array_split(order, 3)):  # shards of rows from anywhere
        shard = write_table(table.take(part), tmp_path / f"shard{k}.parquet")
        states.append(tmp_path / f"shard{k}.state.json")
        saved = run(
            "score",
            shard,
            "--ci",
            "--ci-replicates",
            "40",
            "-q",
            "--save-state",
            states[-1],
            *extra,
        )
        assert saved.exit_code == 0, saved.output
    merged = run("merge", *reversed(states), "--json", "-q")
    assert merged.exit_code == 0, merged.output
    assert_same_report(json.loads(merged.stdout)["ci"], whole)


def test_dask_gives_the_in_process_intervals(tmp_path, data, local_dask):
    path, table = data
    folder = tmp_path / "parts"
    folder.mkdir()
    for k, part in enumerate(np.array_split(np.arange(table.num_rows), 3)):
        pq.write_table(table.take(part), folder / f"part{k}.parquet", row_group_size=400)
    assert_same_report(ci_of(folder, "--dask", local_dask), ci_of(path))


def test_ensembles_key_every_member_and_chunks_do_not_matter(tmp_path):
    rng = np.random.default_rng(5)
    means, var = rng.normal(size=(500, 4)), rng.uniform(0.2, 2, size=(500, 4))
    target = means.mean(axis=1) + rng.normal(size=500)
    table = pa.table({"mean": list(means), "var": list(var), "target": target})
    path = write_table(table, tmp_path / "ensemble.parquet")
    whole = ci_of(path, "--ensemble")
    assert whole["nll_ci_low"] is not None
    assert_same_report(ci_of(path, "--ensemble", "--chunk-size", "30"), whole)
    # another member's value is another row: its weights change
    means[0, 3] += 1.0
    table = pa.table({"mean": list(means), "var": list(var), "target": target})
    other = ci_of(write_table(table, tmp_path / "other.parquet"), "--ensemble")
    assert other["nll_ci_low"] != whole["nll_ci_low"]


def test_samples_key_every_draw(tmp_path):
    table = pq.read_table("sample_data/samples.parquet").slice(0, 400)
    path = write_table(table, tmp_path / "samples.parquet")
    whole = ci_of(path, "--samples", "draws")
    assert whole["crps_ci_low"] is not None
    assert_same_report(ci_of(path, "--samples", "draws", "--chunk-size", "64"), whole)


def test_the_table_shows_each_interval_beside_its_number(data):
    path, _ = data
    result = CliRunner().invoke(
        app, ["score", str(path), "--ci", "--ci-replicates", "20", "-q"], env={"COLUMNS": "200"}
    )
    payload = json.loads(run("score", path, "--ci", "--ci-replicates", "20", "--json").stdout)
    grid = result.stdout.split("bootstrap intervals", 1)[1]
    assert re.search("┃ name +┃ +value ┃ NAME_ci_low ┃ NAME_ci_high ┃", grid)
    ci = payload["ci"]
    for name in ("nll", "dss", "crps", "mace", "quantile_mace", "rmse", "var_scale"):
        low, high = (f"{ci[f'{name}_ci_{end}']:.6f}" for end in ("low", "high"))
        assert re.search(rf"│ {name} +│ +\S+ │ +{low} │ +{high} │", grid), name
    low, high = (f"{ci[f'coverage_ci_{end}'][2]:.6f}" for end in ("low", "high"))
    assert re.search(rf"│ coverage@0.9 +│ +0\.\d+ │ +{low} │ +{high} │", grid)


def test_markdown_and_html_show_the_intervals(tmp_path, data):
    path, _ = data
    args = ["score", path, "--ci", "--ci-replicates", "20", "-q"]
    markdown = run(*args, "--format", "markdown")
    title = "**95% bootstrap intervals (20 replicates, rows keyed by their values)**"
    assert title in markdown.stdout
    assert "| crps |" in markdown.stdout and "| coverage@0.9 |" in markdown.stdout
    page = tmp_path / "report.html"
    assert run(*args, "--id-col", "id", "--html", page).exit_code == 0
    html = page.read_text()
    assert "rows keyed by id column id" in html and "quantile_mace" in html


# --- compare: the calibration differences of paired replicates ------------------------------


def naive_maces(columns, poisson):
    """Each replicate's MACE and one-sided MACE of a model under the weights ``poisson``."""
    z = (columns["target"] - columns["mean"]) / np.sqrt(columns["var"])
    e = scipy.special.erf(z / math.sqrt(2))
    total = poisson.sum(axis=0)
    curve = np.arange(100) / 99
    central = np.array([(poisson * (np.abs(e) <= p)[:, None]).sum(0) / total for p in curve])
    one_sided = np.array([(poisson * (e <= 2 * t - 1)[:, None]).sum(0) / total for t in curve])
    levels = ScoreOptions().levels
    coverage = np.array([(poisson * (np.abs(e) <= p)[:, None]).sum(0) / total for p in levels])
    return {
        "mace": np.abs(central - curve[:, None]).mean(axis=0),
        "quantile_mace": np.abs(one_sided - curve[:, None]).mean(axis=0),
        "coverage": coverage.T,  # (replicates, levels)
    }


def compared_models(rows: int):
    base = make_predictions(rows, seed=31)
    rng = np.random.default_rng(32)
    cand = {
        "mean": base["mean"] + rng.normal(scale=0.2, size=rows),
        "var": base["var"] * rng.uniform(0.7, 1.6, size=rows),
        "target": base["target"],
    }
    return base, cand


def test_compare_pairs_the_replicates_of_both_models_by_the_baselines_rows(tmp_path):
    base, cand = compared_models(700)
    paths = [
        write_table(pa.table(m), tmp_path / f"{n}.parquet") for n, m in (("b", base), ("c", cand))
    ]
    result = run(
        "compare", *paths, "--ci", "--ci-replicates", "60", "--ci-level", "0.9", "--json", "-q"
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    # paired by order: both rows of a pair weighed by the baseline row's key
    poisson = np_weights(np_value_keys(base["mean"], base["target"], base["var"]), 0, 60)
    mine, theirs = naive_maces(base, poisson), naive_maces(cand, poisson)
    for name in ("mace", "quantile_mace"):
        low, high = np.percentile(theirs[name] - mine[name], [5, 95])
        assert got[f"delta_{name}_ci_low"] == pytest.approx(low, rel=1e-12, abs=1e-15), name
        assert got[f"delta_{name}_ci_high"] == pytest.approx(high, rel=1e-12, abs=1e-15), name
        delta = got["candidate"]["calibration"][name] - got["baseline"]["calibration"][name]
        assert got[f"delta_{name}"] == pytest.approx(delta, rel=1e-12)
    low, high = np.percentile(theirs["coverage"] - mine["coverage"], [5, 95], axis=0)
    assert got["delta_coverage_ci_low"] == pytest.approx(low, rel=1e-12, abs=1e-15)
    assert got["delta_coverage_ci_high"] == pytest.approx(high, rel=1e-12, abs=1e-15)
    sides = [np.array(got[side]["calibration"]["coverage"]) for side in ("baseline", "candidate")]
    assert got["delta_coverage"] == pytest.approx(sides[1] - sides[0], rel=1e-12)
    assert got["levels"] == list(ScoreOptions().levels)
    # each model's own intervals are the score's of its rows under the same weights
    assert got["baseline"]["ci"]["mace_ci_low"] == pytest.approx(np.percentile(mine["mace"], 5))
    # ... the candidate's keyed by its pair's baseline row, as its key says
    assert got["candidate"]["ci"]["mace_ci_low"] == pytest.approx(np.percentile(theirs["mace"], 5))
    assert (got["baseline"]["ci"]["key"], got["candidate"]["ci"]["key"]) == (
        "values",
        "baseline values",
    )


def test_compare_by_id_pairs_shuffled_rows_and_chunks_do_not_matter(tmp_path):
    base, cand = compared_models(600)
    ids = np.arange(600)
    order = np.random.default_rng(1).permutation(600)
    baseline = write_table(pa.table({**base, "id": ids}), tmp_path / "b.parquet")
    shuffled = pa.table({**cand, "id": ids}).take(order)
    candidate = write_table(shuffled, tmp_path / "c.parquet")

    def deltas(*args: object) -> dict:
        result = run("compare", baseline, candidate, "--id-col", "id", "--ci", "--json", "-q",
                     "--ci-replicates", "40", *args)  # fmt: skip
        assert result.exit_code == 0, result.output
        return {k: v for k, v in json.loads(result.stdout).items() if "mace" in k}

    whole = deltas()
    assert whole["delta_mace_ci_low"] < whole["delta_mace"] < whole["delta_mace_ci_high"]
    assert_same_report(deltas("--chunk-size", "77"), whole)
    same = run("compare", baseline, baseline, "--ci", "--ci-replicates", "20", "--json", "-q")
    zero = json.loads(same.stdout)
    assert zero["delta_mace_ci_low"] == zero["delta_mace_ci_high"] == 0.0
    gate = run("compare", baseline, candidate, "--id-col", "id", "--ci", "-q",
               "--check", "delta_quantile_mace_ci_high <= -1")  # fmt: skip
    assert gate.exit_code == 1
    assert gate.stderr.startswith("gaussnll: check failed: delta_quantile_mace_ci_high <= -1")
    per_level = run("compare", baseline, candidate, "--id-col", "id", "--ci", "-q",
                    "--check", "delta_coverage_ci_low@0.9 >= 1")  # fmt: skip
    assert per_level.exit_code == 1
    assert per_level.stderr.startswith("gaussnll: check failed: delta_coverage_ci_low@0.9 >= 1")


def test_compare_pairs_uint64_ids_past_int64s_range(tmp_path):
    """uint64 ids from 2^63 pair (the join took them as int64: exit 3) and key the
    replicates by their bits; beside signed ids they cannot pair, and say so in one line."""
    base, cand = compared_models(300)
    ids = np.arange(300, dtype=np.uint64) + np.uint64(2**63)
    order = np.random.default_rng(2).permutation(300)
    baseline = write_table(pa.table({**base, "id": ids}), tmp_path / "b.parquet")
    candidate = write_table(pa.table({**cand, "id": ids}).take(order), tmp_path / "c.parquet")
    result = run("compare", baseline, candidate, "--id-col", "id", "--ci", "--json", "-q",
                 "--ci-replicates", "40")  # fmt: skip
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["rows"] == 300
    poisson = np_weights(np_mix(ids), 0, 40)
    mine, theirs = naive_maces(base, poisson), naive_maces(cand, poisson)
    low, high = np.percentile(theirs["mace"] - mine["mace"], [2.5, 97.5])
    assert got["delta_mace_ci_low"] == pytest.approx(low, rel=1e-12, abs=1e-15)
    assert got["delta_mace_ci_high"] == pytest.approx(high, rel=1e-12, abs=1e-15)
    signed = pa.table({**cand, "id": np.arange(300) - 5})
    mixed = run("compare", baseline, write_table(signed, tmp_path / "s.parquet"), "--id-col", "id")
    assert_one_line_error(mixed, "b.parquet", "'id'", "unsigned id 9223372036854776107")


def test_compare_without_calibration_families_shows_no_empty_grid():
    """--metrics nll: no calibration difference to show, so no grid of none (table, Markdown)."""
    args = ["sample_data/preds.parquet", "sample_data/preds_candidate.parquet", "--id-col", "id"]
    for shown in ([], ["--format", "markdown"]):
        result = run("compare", *args, "--ci", "--ci-replicates", "10", "--metrics", "nll",
                     "-q", *shown)  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "calibration differences" not in result.stdout
        assert "NAME_ci_low" not in result.stdout


# --- coverage of the truth --------------------------------------------------------------------


def test_intervals_cover_the_truth_about_as_often_as_their_level():
    """A calibrated model on 200 fresh rows per seed: the true mean NLL (0.5 (E log v + 1)),
    var_scale (1) and coverage@0.9 (0.9) fall in the 90% interval in about 90% of 100 seeds."""
    low_v, high_v = 0.5, 2.0
    expected_log_v = (high_v * math.log(high_v) - high_v - low_v * math.log(low_v) + low_v) / (
        high_v - low_v
    )
    truth = {"nll": 0.5 * (expected_log_v + 1), "var_scale": 1.0}
    hits = dict.fromkeys([*truth, "coverage"], 0)
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        mean, var = rng.normal(size=200), rng.uniform(low_v, high_v, size=200)
        target = mean + np.sqrt(var) * rng.standard_normal(200)
        report = score(
            pa.table({"mean": mean, "var": var, "target": target}),
            device="cpu",
            ci=0.9,
            ci_replicates=100,
            ci_seed=seed,
            levels=(0.9,),
            metrics=("var_scale", "coverage"),
        )
        ci = report.ci
        assert ci is not None
        for name, value in truth.items():
            hits[name] += getattr(ci, f"{name}_ci_low") <= value <= getattr(ci, f"{name}_ci_high")
        low, high = ci.coverage_ci_low, ci.coverage_ci_high
        assert low is not None and high is not None
        hits["coverage"] += low[0] <= 0.9 <= high[0]
    for name, count in hits.items():
        assert 80 <= count <= 98, (name, count)


# --- options and gates ------------------------------------------------------------------------


def test_a_gate_on_an_interval_end(data):
    path, _ = data
    passed = run("score", path, "--ci", "--ci-replicates", "20", "--check", "mace_ci_high <= 0.5")
    assert passed.exit_code == 0, passed.output
    failed = run(
        "score",
        path,
        "--ci",
        "--ci-replicates",
        "20",
        "-q",
        "--check",
        "coverage_ci_low@0.9 >= 0.99",
    )
    assert failed.exit_code == 1
    assert failed.stderr.startswith("gaussnll: check failed: coverage_ci_low@0.9 >= 0.99 (got 0.")


def test_by_groups_keeps_intervals_for_the_whole_input_only(data):
    _, table = data
    grouped_table = table.append_column("g", pa.array(np.arange(table.num_rows) % 3))
    grouped = score(
        grouped_table, device="cpu", ci=0.95, ci_replicates=20, columns=ColumnSpec(by="g")
    )
    plain = score(table, device="cpu", ci=0.95, ci_replicates=20)
    assert grouped.ci == plain.ci
    entry = grouped.to_dict()["groups"][0]
    assert "ci" not in entry


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--ci", "--ci-replicates", "1"], ["--ci-replicates must be between 2 and"]),
        (["--ci", "--ci-level", "1"], ["--ci-level must be a level in (0, 1)"]),
        (["--ci-seed", "3"], ["--ci-seed sets the intervals of --ci: add --ci"]),
        (["--check", "nll_ci_high < 1"], ["a --check uses a bootstrap interval: add --ci"]),
        (["--ci", "--by", "g", "--group-metrics", "ci"], ["whole input only"]),
        (
            ["--ci", "--by", "g", "--per-group", "--check", "mace_ci_high < 1"],
            ["mace_ci_high", "whole input only", "no --per-group"],
        ),
        (["--ci", "--by", "g", "--sort-by", "nll_ci_low"], ["nll_ci_low", "whole input only"]),
        (
            ["--ci", "--metrics", "nll", "--check", "mace_ci_high < 1"],
            ["mace_ci_high", "add calibration to --metrics"],
        ),
        (
            ["--ci", "--metrics", "nll", "--check", "coverage_ci_low@0.9 > 0"],
            ["coverage_ci_low@0.9", "add coverage to --metrics"],
        ),
    ],
)
def test_bad_interval_options_are_one_line(tmp_path, args, fragments):
    columns = make_predictions(50, seed=1)
    path = write_table(pa.table({**columns, "g": np.arange(50) % 2}), tmp_path / "p.parquet")
    result = run("score", path, *args)
    assert result.exit_code == 2
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize(
    ("check", "family"),
    [
        ("delta_mace < 1", "calibration"),
        ("delta_quantile_mace_ci_high < 1", "one_sided"),
        ("delta_coverage_ci_low@0.9 < 1", "coverage"),
    ],
)
def test_a_compare_check_of_a_calibration_difference_needs_its_family(check, family):
    """Not 'check failed (got missing)': the family that computes it is named."""
    result = run(
        "compare", "sample_data/preds.parquet", "sample_data/preds_candidate.parquet",
        "--ci", "--metrics", "nll", "--check", check,
    )  # fmt: skip
    assert_one_line_error(result, check.split()[0], f"add {family} to --metrics")


def test_a_compare_check_of_an_interval_needs_ci():
    result = run(
        "compare", "sample_data/preds.parquet", "sample_data/preds_candidate.parquet",
        "--id-col", "id", "--check", "delta_mace_ci_high < 0",
    )  # fmt: skip
    assert result.exit_code == 2
    assert_one_line_error(result, "a --check uses a bootstrap interval: add --ci")


def test_compare_names_the_flag_that_made_a_quantile_model_beside_ci():
    result = run(
        "compare", "sample_data/preds.parquet", "sample_data/quantiles.parquet", "--id-col",
        "id", "--candidate-quantiles", "0.05,0.25,0.5,0.75,0.95", "--candidate-quantile-cols",
        "q05,q25,q50,q75,q95", "--ci",
    )  # fmt: skip
    assert_one_line_error(result, "--candidate-quantiles cannot be combined with --ci")


def test_a_quantile_model_has_no_intervals_and_says_so():
    result = run(
        "score",
        "sample_data/quantiles.parquet",
        "--quantiles",
        "0.05,0.25,0.5,0.75,0.95",
        "--quantile-cols",
        "q05,q25,q50,q75,q95",
        "--ci",
    )
    assert result.exit_code == 2
    assert_one_line_error(result, "--ci", "quantile model")


def test_states_of_other_interval_settings_do_not_merge(tmp_path, data):
    path, _ = data
    states = [tmp_path / "a.state.json", tmp_path / "b.state.json"]
    for state, seed in zip(states, ("1", "2"), strict=True):
        saved = run(
            "score",
            path,
            "--ci",
            "--ci-replicates",
            "10",
            "--ci-seed",
            seed,
            "-q",
            "--save-state",
            state,
        )
        assert saved.exit_code == 0, saved.output
    merged = run("merge", *states)
    assert merged.exit_code == 2
    assert_one_line_error(merged, "ci_seed (1 and 2)")


def test_a_merge_of_interval_states_gates_on_their_intervals(tmp_path, data):
    """merge has no --ci: the states' replicates say whether a check of an interval applies."""
    path, _ = data
    state = tmp_path / "s.state.json"
    saved = run("score", path, "--ci", "--ci-replicates", "10", "-q", "--save-state", state)
    assert saved.exit_code == 0, saved.output
    high = json.loads(run("merge", state, "--json", "-q").stdout)["ci"]["nll_ci_high"]
    passed = run("merge", state, "-q", "--check", f"nll_ci_high <= {high + 1e-6}")
    assert passed.exit_code == 0, passed.output
    failed = run("merge", state, "-q", "--check", f"nll_ci_high <= {high - 1e-6}")
    assert failed.exit_code == 1, failed.output
    assert failed.stderr.startswith("gaussnll: check failed: nll_ci_high <=")
    plain = tmp_path / "p.state.json"
    assert run("score", path, "-q", "--save-state", plain).exit_code == 0
    assert_one_line_error(
        run("merge", plain, "--check", "nll_ci_high < 1"), "save the states with --ci"
    )
