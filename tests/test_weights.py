"""Row weights (``--weight-col``): integer weights are the rows repeated, for every number of
every report; other weights against independent weighted references; bad weights refused."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import properscoring
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, make_predictions
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import (
    ColumnSpec,
    Scorer,
    UsageError,
    compare,
    merge_states,
    recalibrate,
    score,
)
from gaussnll.core.run.intervals import weighted_quantiles

# Counts of the file's rows, not weighted by definition (docs/weights.md), and run details.
ROW_COUNTS = {"rows", "elements", "skipped_rows", "skipped_reasons", "eps_floored"}
RUN_DETAILS = {
    "seconds",
    "rows_per_second",
    "path",
    "columns",
    "weight_sum",
    "chunk_size",
    "config",
    "format",
}


def run(*args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def weighted_frame(rows: int = 900, seed: int = 0, outputs: int = 1) -> pd.DataFrame:
    """Predictions with integer weights 0..3, a group and a numeric column for intervals."""
    columns = make_predictions(rows, seed=seed, outputs=outputs)
    rng = np.random.default_rng(seed + 100)
    frame = pd.DataFrame(
        {
            f"{role}{j}": values.reshape(rows, outputs)[:, j]
            for role, values in columns.items()
            for j in range(outputs)
        }
    )
    frame["w"] = rng.integers(0, 4, rows).astype(np.float64)
    frame["g"] = rng.choice(["a", "b", "c"], rows)
    frame["x"] = rng.normal(size=rows)
    return frame


def repeated(frame: pd.DataFrame) -> pd.DataFrame:
    """Each row written as many times as its weight (weight 0: left out)."""
    return frame.loc[frame.index.repeat(frame["w"].astype(int))].reset_index(drop=True)


def spec(outputs: int = 1, **more: object) -> ColumnSpec:
    return ColumnSpec(
        mean=[f"mean{j}" for j in range(outputs)],
        target=[f"target{j}" for j in range(outputs)],
        spread=[f"var{j}" for j in range(outputs)],
        **more,
    )


def assert_same_numbers(weighted: object, plain: object, where: str = "") -> None:
    """Every number of two JSON values equal (floats to 1e-12 relative, the rest exactly),
    except the rows' own counts and the run's details."""
    if isinstance(weighted, dict):
        assert isinstance(plain, dict), where
        keys = set(weighted) - ROW_COUNTS - RUN_DETAILS
        assert keys == set(plain) - ROW_COUNTS - RUN_DETAILS, where
        for key in keys:
            assert_same_numbers(weighted[key], plain[key], f"{where}.{key}")
    elif isinstance(weighted, list):
        assert isinstance(plain, list) and len(weighted) == len(plain), where
        for k, (left, right) in enumerate(zip(weighted, plain, strict=True)):
            assert_same_numbers(left, right, f"{where}[{k}]")
    elif isinstance(weighted, float) or isinstance(plain, float):
        assert weighted is not None and plain is not None, where
        assert math.isclose(weighted, plain, rel_tol=1e-12, abs_tol=1e-300) or (
            math.isnan(weighted) and math.isnan(plain)
        ), (where, weighted, plain)
    else:
        assert weighted == plain, (where, weighted, plain)


def assert_weight_sum_is_the_rows(weighted: dict, plain: dict) -> None:
    assert weighted["weight_sum"] == plain["rows"]
    for group, plain_group in zip(weighted.get("groups", []), plain.get("groups", []), strict=True):
        assert group["weight_sum"] == plain_group["rows"]


CASES = {
    "plain": ({}, {}),
    "groups, chunked": ({"by": ("g",)}, {"chunk_size": 64}),
    "quantile bins": ({"by": ("x",)}, {"intervals": {"x": 4}}),
    "full, sum": ({}, {"full": True, "reduction": "sum", "levels": (0.3, 0.9)}),
    "float32": ({}, {"dtype": "float32", "pit_bins": 7, "uncertainty_bins": 4}),
}


@pytest.mark.parametrize("case", CASES)
def test_integer_weights_are_the_rows_repeated_for_every_number(case):
    columns, settings = CASES[case]
    frame = weighted_frame()
    weighted = score(frame, columns=spec(weight="w", **columns), device="cpu", **settings)
    plain = score(repeated(frame), columns=spec(**columns), device="cpu", **settings)
    assert_same_numbers(weighted.to_dict(), plain.to_dict())
    assert_weight_sum_is_the_rows(weighted.to_dict(), plain.to_dict())
    assert weighted.rows == int((frame["w"] > 0).sum())


def test_several_outputs_and_skipped_rows_weigh_the_same_way():
    frame = weighted_frame(outputs=2)
    frame.loc[[3, 10, 11], "target1"] = np.nan
    frame.loc[10, "w"] = 0.0  # left out, so not counted as skipped either
    settings = {"nan_policy": "skip", "device": "cpu", "chunk_size": 100}
    weighted = score(frame, columns=spec(2, weight="w", by=("g",)), **settings)
    plain = score(repeated(frame), columns=spec(2, by=("g",)), **settings)
    assert_same_numbers(weighted.to_dict(), plain.to_dict())
    nan_rows = frame.loc[[3, 11]]
    assert weighted.skipped_rows == int((nan_rows["w"] > 0).sum())


def test_an_ensemble_weighs_its_mixture_too():
    frame = weighted_frame(rows=400)
    rng = np.random.default_rng(5)
    members = {
        "mean": [list(row) for row in frame[["mean0"]].to_numpy() + rng.normal(size=(400, 3))],
        "var": [list(row) for row in frame[["var0"]].to_numpy() * rng.uniform(0.5, 2, (400, 3))],
    }
    ensemble = pd.DataFrame({**members, "target": frame["target0"], "w": frame["w"]})
    settings = {"ensemble": True, "device": "cpu", "member_weights": (1.0, 2.0, 1.0)}
    weighted = score(ensemble, columns=ColumnSpec(weight="w"), **settings)
    plain = score(repeated(ensemble), **settings)
    assert weighted.ensemble is not None
    assert_same_numbers(weighted.to_dict(), plain.to_dict())


def test_other_weights_against_independent_weighted_references():
    columns = make_predictions(3_000, seed=7)
    mean, var, target = columns["mean"], columns["var"], columns["target"]
    weight = np.random.default_rng(7).uniform(0.0, 5.0, len(mean))
    frame = pd.DataFrame({**columns, "w": weight})
    report = score(frame, columns=ColumnSpec(weight="w"), device="cpu", levels=(0.9,))
    loss = F.gaussian_nll_loss(
        torch.from_numpy(mean), torch.from_numpy(target), torch.from_numpy(var), reduction="none"
    ).numpy()
    assert report.weight_sum == pytest.approx(weight.sum(), rel=1e-14)
    assert report.nll == pytest.approx(np.average(loss, weights=weight), rel=1e-12)
    crps = properscoring.crps_gaussian(target, mean, np.sqrt(var))
    calibration, accuracy = report.calibration, report.accuracy
    assert calibration is not None and accuracy is not None
    assert calibration.crps == pytest.approx(np.average(crps, weights=weight), rel=1e-9)
    error = target - mean
    assert accuracy.mae == pytest.approx(np.average(np.abs(error), weights=weight), rel=1e-12)
    assert accuracy.rmse == pytest.approx(np.sqrt(np.average(error**2, weights=weight)), rel=1e-12)
    z2 = error**2 / var
    assert calibration.var_scale == pytest.approx(np.average(z2, weights=weight), rel=1e-12)
    pit = 0.5 * (1 + torch.erf(torch.from_numpy(error / np.sqrt(var)) / math.sqrt(2))).numpy()
    inside = np.abs(2 * pit - 1) <= 0.9
    assert calibration.coverage[0] == pytest.approx(np.average(inside, weights=weight), rel=1e-12)
    histogram = np.histogram(pit, bins=20, range=(0, 1), weights=weight)[0]
    np.testing.assert_allclose(calibration.pit_counts, histogram, rtol=1e-9)


def test_weighted_quantiles_are_numpys_of_the_repeated_values():
    rng = np.random.default_rng(3)
    levels = np.arange(1, 10) / 10
    for _ in range(100):
        size = int(rng.integers(1, 40))
        values = rng.normal(size=size).round(1)  # ties too
        weights = rng.integers(1, 5, size).astype(np.float64)
        expected = np.quantile(np.repeat(values, weights.astype(int)), levels)
        np.testing.assert_array_equal(weighted_quantiles(values, weights, levels), expected)


def test_the_cli_reads_the_weight_column_of_any_format(tmp_path):
    frame = weighted_frame(rows=300)
    csv, parquet = tmp_path / "w.csv", tmp_path / "w.parquet"
    frame.to_csv(csv, index=False)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet, row_group_size=70)
    repeated(frame).to_csv(tmp_path / "r.csv", index=False)
    args = ["--mean-col", "mean0", "--target-col", "target0", "--var-col", "var0", "--json"]
    plain = run("score", tmp_path / "r.csv", *args, "--by", "g")
    for path in (csv, parquet):
        result = run("score", path, *args, "--by", "g", "--weight-col", "w")
        assert result.exit_code == 0, result.output
        assert_same_numbers(json.loads(result.stdout), json.loads(plain.stdout))
    gate = ["--by", "g", "--weight-col", "w", "--check", "weight_sum >= 1e9"]
    gated = run("score", csv, *args[:-1], *gate)
    assert gated.exit_code == 1
    assert "weight_sum" in gated.stderr
    total = f"{frame['w'].sum():,.0f}"
    assert re.search(rf"│ weight sum +│ weight_sum +│ +{total} │", gated.stdout)
    assert re.search(rf"weight_sum\s+{total}\b", gated.stdout)  # (all) of the groups table


def test_a_zero_weight_leaves_the_row_out_unchecked_and_empty_per_row(tmp_path):
    frame = weighted_frame(rows=50)
    frame["w"] = 1.0
    frame.loc[4, ["w", "mean0"]] = [0.0, np.nan]  # under --nan-policy error, yet not an error
    frame.to_csv(tmp_path / "w.csv", index=False)
    frame.drop(index=4).to_csv(tmp_path / "without.csv", index=False)
    args = ["--mean-col", "mean0", "--target-col", "target0", "--var-col", "var0", "--json"]
    rows = tmp_path / "rows.parquet"
    weighted = run("score", tmp_path / "w.csv", *args, "--weight-col", "w", "--per-row", rows)
    without = run("score", tmp_path / "without.csv", *args)
    assert weighted.exit_code == 0, weighted.output
    assert_same_numbers(json.loads(weighted.stdout), json.loads(without.stdout))
    losses = pq.read_table(rows).column("nll").to_pylist()
    assert len(losses) == 50 and losses[4] is None
    assert sum(loss is None for loss in losses) == 1


BAD_WEIGHTS = [(-1.0, "-1.0"), (float("nan"), "nan"), (float("inf"), "inf"), (None, "nan")]


@pytest.mark.parametrize("policy", ["error", "skip", "propagate"])
@pytest.mark.parametrize(("bad", "shown"), BAD_WEIGHTS)
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_bad_weight_is_one_line_under_every_policy(tmp_path, policy, bad, shown, suffix):
    frame = weighted_frame(rows=40)
    weights = frame["w"].astype(object)
    weights[17] = bad
    table = pa.table(
        {**{c: frame[c] for c in frame if c != "w"}, "w": pa.array(weights, pa.float64())}
    )
    path = tmp_path / f"bad{suffix}"
    if suffix == ".csv":
        table.to_pandas().to_csv(path, index=False)
    else:
        pq.write_table(table, path)
    args = ["--mean-col", "mean0", "--target-col", "target0", "--var-col", "var0"]
    result = run("score", path, *args, "--weight-col", "w", "--nan-policy", policy)
    assert_one_line_error(result, "column 'w'", "row 18", "finite number >= 0", shown)


def test_a_missing_or_text_weight_column_is_one_line(tmp_path):
    frame = weighted_frame(rows=20)
    frame["label"] = "x"
    path = tmp_path / "w.parquet"
    frame.to_parquet(path)
    args = ["--mean-col", "mean0", "--target-col", "target0", "--var-col", "var0"]
    assert_one_line_error(run("score", path, *args, "--weight-col", "nope"), "nope")
    assert_one_line_error(run("score", path, *args, "--weight-col", "label"), "label")
    quantiles = run("score", path, *args, "--weight-col", "label", "--by", "x:q3")
    assert_one_line_error(quantiles, "label")


def test_compare_weighs_both_reports_and_the_paired_statistics(tmp_path):
    frame = weighted_frame(rows=600)
    candidate = frame.assign(mean0=frame["mean0"] + 0.05, var0=frame["var0"] * 1.2)
    args = ["--mean-col", "mean0", "--target-col", "target0", "--var-col", "var0", "--json"]
    paths = {}
    for name, data in {
        "base": frame,
        "cand": candidate,
        "base_r": repeated(frame),
        "cand_r": repeated(candidate),
    }.items():
        paths[name] = tmp_path / f"{name}.parquet"
        data.to_parquet(paths[name])
    weighted = run("compare", paths["base"], paths["cand"], *args, "--weight-col", "w")
    plain = run("compare", paths["base_r"], paths["cand_r"], *args)
    assert weighted.exit_code == 0, weighted.output
    left, right = json.loads(weighted.stdout), json.loads(plain.stdout)
    assert_same_numbers(left, right)
    assert left["weight_sum"] == right["rows"]
    assert left["rows"] == int((frame["w"] > 0).sum())


def test_compare_refuses_weights_that_differ_between_the_files(tmp_path):
    frame = weighted_frame(rows=60)
    other = frame.copy()
    other.loc[33, "w"] += 1
    frame.to_parquet(tmp_path / "a.parquet")
    other.to_parquet(tmp_path / "b.parquet")
    args = ["--mean-col", "mean0", "--target-col", "target0", "--var-col", "var0"]
    result = run(
        "compare", tmp_path / "a.parquet", tmp_path / "b.parquet", *args, "--weight-col", "w"
    )
    assert_one_line_error(result, "b.parquet", "column 'w'", "row 34", "same weights")


def test_scorer_tensors_states_and_merges_keep_the_weights():
    frame = weighted_frame(rows=500)
    tensors = {c: torch.from_numpy(frame[c].to_numpy()) for c in ("mean0", "target0", "var0", "w")}
    halves = []
    for part in (slice(0, 230), slice(230, None)):
        scorer = Scorer(device="cpu")
        scorer.update(*(tensors[c][part] for c in ("mean0", "target0", "var0")), tensors["w"][part])
        halves.append(scorer.state_dict())
    merged = merge_states(halves).report().to_dict()
    again = repeated(frame)
    plain_scorer = Scorer(device="cpu")
    plain_scorer.update(
        *(torch.from_numpy(again[c].to_numpy()) for c in ("mean0", "target0", "var0"))
    )
    plain = plain_scorer.report().to_dict()
    assert_same_numbers(merged, plain)
    assert merged["weight_sum"] == plain["rows"]
    unweighted = Scorer(device="cpu")
    unweighted.update(tensors["mean0"], tensors["target0"], tensors["var0"])
    with pytest.raises(UsageError, match="weighted"):
        merge_states([halves[0], unweighted.state_dict()])
    with pytest.raises(UsageError, match="every chunk or with none"):
        unweighted.update(tensors["mean0"], tensors["target0"], tensors["var0"], tensors["w"])


def test_states_of_weighted_and_unweighted_runs_refuse_to_merge(tmp_path):
    frame = weighted_frame(rows=100)
    path = tmp_path / "w.parquet"
    frame.to_parquet(path)
    args = ["--mean-col", "mean0", "--target-col", "target0", "--var-col", "var0", "-q"]
    for name, more in (("weighted", ["--weight-col", "w"]), ("plain", [])):
        result = run("score", path, *args, *more, "--save-state", tmp_path / f"{name}.json")
        assert result.exit_code == 0, result.output
    merged = run("merge", tmp_path / "weighted.json", tmp_path / "plain.json")
    assert_one_line_error(merged, "different options", "weight")


def test_recalibrate_fits_the_weighted_scale():
    frame = weighted_frame(rows=400)
    weighted = recalibrate(frame, columns=spec(weight="w", by=("g",)))
    plain = recalibrate(repeated(frame), columns=spec(by=("g",)))
    assert weighted.scale == pytest.approx(plain.scale, rel=1e-12)
    assert weighted.groups.keys() == plain.groups.keys()
    for key, scales in weighted.groups.items():
        assert scales == pytest.approx(plain.groups[key], rel=1e-12)


def test_worker_threads_give_the_repeated_rows_numbers():
    frame = weighted_frame()
    frame.loc[[5, 40], "mean0"] = np.nan  # skipped in threads as on one
    settings = {"device": "cpu", "chunk_size": 64, "nan_policy": "skip"}
    for columns in ({}, {"by": ("g",)}):
        weighted = score(frame, columns=spec(weight="w", **columns), workers=2, **settings)
        plain = score(repeated(frame), columns=spec(**columns), **settings)
        assert_same_numbers(weighted.to_dict(), plain.to_dict())
        assert_weight_sum_is_the_rows(weighted.to_dict(), plain.to_dict())


def test_compare_by_id_weighs_the_matched_rows_in_any_order(tmp_path):
    frame = weighted_frame(rows=600).assign(id=np.arange(600))
    candidate = frame.assign(mean0=frame["mean0"] + 0.05, var0=frame["var0"] * 1.2)
    baseline = frame.drop(index=range(0, 600, 37))  # unmatched rows on both sides
    candidate = candidate.drop(index=range(5, 600, 41))
    matched = baseline.merge(candidate[["id"]], on="id")["id"]
    paths = {}
    for name, data in {
        "base": baseline,
        "cand": candidate.sample(frac=1, random_state=1),
        "base_r": repeated(baseline[baseline["id"].isin(matched)]),
        "cand_r": repeated(candidate[candidate["id"].isin(matched)]),
    }.items():
        paths[name] = tmp_path / f"{name}.parquet"
        data.assign(id=np.arange(len(data)) if name.endswith("_r") else data["id"]).to_parquet(
            paths[name]
        )
    args = ["--mean-col", "mean0", "--target-col", "target0", "--var-col", "var0", "--json"]
    pairing = ["--id-col", "id", "--chunk-size", "64"]
    weighted = run("compare", paths["base"], paths["cand"], *args, *pairing, "--weight-col", "w")
    plain = run("compare", paths["base_r"], paths["cand_r"], *args, *pairing)
    assert weighted.exit_code == 0, weighted.output
    left, right = json.loads(weighted.stdout), json.loads(plain.stdout)
    assert (left["unmatched_baseline"], left["unmatched_candidate"]) == (
        len(baseline) - len(matched),
        len(candidate) - len(matched),
    )
    for side in (left, right):
        del side["unmatched_baseline"], side["unmatched_candidate"]
    assert_same_numbers(left, right)
    assert left["weight_sum"] == right["rows"]


def test_a_group_of_zero_weights_only_is_absent_like_its_rows():
    frame = weighted_frame(rows=300)
    frame.loc[frame["g"] == "b", "w"] = 0.0
    weighted = score(frame, columns=spec(weight="w", by=("g",)), device="cpu")
    plain = score(repeated(frame), columns=spec(by=("g",)), device="cpu")
    assert [group.key for group in weighted.groups] == [("a",), ("c",)]
    assert_same_numbers(weighted.to_dict(), plain.to_dict())
    fitted = recalibrate(frame, columns=spec(weight="w", by=("g",)))
    assert set(fitted.groups) == {("a",), ("c",)}


def test_relative_weights_find_the_quantile_bins_of_their_ratios():
    frame = weighted_frame(rows=2_000)
    frame["w"] = np.random.default_rng(4).uniform(0.1, 1.0, len(frame))
    edges = []
    for scale in (1 / frame["w"].sum(), 1.0, 1e3):  # summing to 1, to ~1100, to ~1e6
        scaled = frame.assign(w=frame["w"] * scale)
        report = score(scaled, columns=spec(weight="w", by=("x",)), intervals={"x": 4})
        edges.append([group.key[0] for group in report.groups])
    assert len(edges[0]) == 4
    for other in edges[1:]:
        assert [(i.low, i.high) for i in other] == [
            (pytest.approx(i.low, rel=1e-9), pytest.approx(i.high, rel=1e-9)) for i in edges[0]
        ]
    levels = np.arange(1, 4) / 4
    values = frame["x"].to_numpy()
    equal = weighted_quantiles(values, np.full(len(values), 0.3), levels)
    np.testing.assert_allclose(equal, np.quantile(values, levels), rtol=1e-12)


@pytest.mark.parametrize("kind", [pa.list_(pa.float64()), pa.list_(pa.float64(), 1)])
def test_a_list_column_as_the_weight_is_one_line(tmp_path, kind):
    frame = weighted_frame(rows=20)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.append_column("lw", pa.array([[1.0]] * 20, kind))
    pq.write_table(table, tmp_path / "w.parquet")
    args = ["--mean-col", "mean0", "--target-col", "target0", "--var-col", "var0"]
    result = run("score", tmp_path / "w.parquet", *args, "--weight-col", "lw")
    assert_one_line_error(result, "column 'lw'", "list", "one number per row")


def test_scorer_refuses_weights_not_one_per_row():
    mean, target, var = torch.zeros(10), torch.ones(10), torch.ones(10)
    for weight in (torch.ones(()), torch.ones(11), torch.ones(10, 2), torch.ones(5)):
        with pytest.raises(UsageError, match="one number per row"):
            Scorer(device="cpu").update(mean, target, var, weight)
    scorer = Scorer(device="cpu")
    scorer.update(mean, target, var, torch.full((10, 1), 2))
    assert scorer.report().weight_sum == 20.0


def test_all_weights_zero_says_so(tmp_path):
    frame = weighted_frame(rows=30).assign(w=0.0)
    path = tmp_path / "w.parquet"
    frame.to_parquet(path)
    args = ["--mean-col", "mean0", "--target-col", "target0", "--var-col", "var0"]
    result = run("score", path, *args, "--weight-col", "w")
    assert_one_line_error(result, "every row has weight 0")
    result = run("compare", path, path, *args, "--weight-col", "w")
    assert_one_line_error(result, "every paired row has weight 0")


def defer_weight_checks_as_on_a_gpu(monkeypatch):
    """Compare's checks as on a GPU: device flags, read at the end."""
    from gaussnll.core.run import chunk_checks as engine
    from gaussnll.core.run import comparison

    for checker in (engine.Validity, comparison._Agreement):
        original = checker.__init__

        def deferred(self, *args, original=original, **kwargs):
            original(self, *args, **kwargs)
            self._deferred = True

        monkeypatch.setattr(checker, "__init__", deferred)


@pytest.mark.parametrize(
    ("baseline", "candidate", "expected"),
    [
        (1.0, 2.0, "paired rows have different weights"),
        (float("nan"), float("nan"), "negative spread or weight"),  # bad, not different
        (1.0, -1.0, "negative spread or weight"),  # the bad weight first
    ],
)
def test_deferred_weight_checks_in_compare(tmp_path, monkeypatch, baseline, candidate, expected):
    defer_weight_checks_as_on_a_gpu(monkeypatch)
    frame = weighted_frame(rows=60)
    for name, weight in (("a", baseline), ("b", candidate)):
        frame.assign(w=frame["w"].where(frame.index != 33, weight)).to_parquet(
            tmp_path / f"{name}.parquet"
        )
    args = ["--mean-col", "mean0", "--target-col", "target0", "--var-col", "var0"]
    paths = (tmp_path / "a.parquet", tmp_path / "b.parquet")
    result = run("compare", *paths, *args, "--weight-col", "w", "--device", "cpu")
    assert_one_line_error(result, expected)


def test_the_weight_may_also_be_the_target_or_a_binned_by_column_of_a_csv(tmp_path):
    frame = weighted_frame(rows=300).astype({"w": int})
    frame.to_csv(tmp_path / "w.csv", index=False)
    repeated(frame).to_csv(tmp_path / "r.csv", index=False)
    for target, by in (("w", []), ("target0", ["--by", "w:q2", "--by", "g"])):
        args = ["--mean-col", "mean0", "--target-col", target, "--var-col", "var0", *by]
        weighted = run("score", tmp_path / "w.csv", *args, "--json", "--weight-col", "w")
        plain = run("score", tmp_path / "r.csv", *args, "--json")
        assert weighted.exit_code == 0, weighted.output
        assert_same_numbers(json.loads(weighted.stdout), json.loads(plain.stdout))


def test_compare_progress_counts_the_rows_of_weight_0_it_read(tmp_path):
    frame = weighted_frame(rows=200)
    frame.loc[[4, 9], "mean0"] = np.nan  # skipped rows count too
    path = tmp_path / "w.parquet"
    frame.to_parquet(path)
    done = []
    compare(
        str(path),
        str(path),
        columns=spec(weight="w"),
        nan_policy="skip",
        chunk_size=64,
        on_progress=lambda rows, *_: done.append(rows),
    )
    assert done[-1] == 200 and (frame["w"] == 0).any()
