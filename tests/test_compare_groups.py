"""compare --by: each group's paired NLL difference equals the comparison of its rows alone;
the worst groups first; --per-group gates; the key columns read from the baseline only."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from conftest import assert_one_line_error, make_predictions, write_table
from test_compare import candidate_of, paired_reference
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import ColumnSpec, compare

ROWS = 900
PAIRED = ("rows", "delta_nll", "delta_nll_std", "delta_nll_ci_low", "candidate_better")


def run(*args: str):
    return CliRunner().invoke(app, ["compare", *args, "--quiet"])


@pytest.fixture
def models(tmp_path):
    """A baseline with a key column ``g`` (and ids), and a candidate of the same targets
    without the key, its rows shuffled."""
    baseline = make_predictions(ROWS, seed=21)
    candidate = candidate_of(baseline, seed=22)
    keys = np.random.default_rng(23).choice(["a", "b", "c", "d"], size=ROWS)
    ids = np.arange(ROWS)
    order = np.random.default_rng(24).permutation(ROWS)
    paths = (
        write_table(pa.table({**baseline, "g": keys, "id": ids}), tmp_path / "base.parquet"),
        write_table(
            pa.table({**{k: v[order] for k, v in candidate.items()}, "id": ids[order]}),
            tmp_path / "cand.parquet",
        ),
        write_table(pa.table({**candidate, "g": keys}), tmp_path / "cand_in_order.parquet"),
    )
    return baseline, candidate, keys, paths


@pytest.mark.parametrize("chunk_size", [50, 100_000])
def test_each_group_equals_its_rows_compared_alone(models, chunk_size):
    baseline, candidate, keys, (base, cand, _) = models
    report = compare(
        str(base), str(cand), columns=ColumnSpec(by="g", id="id"), chunk_size=chunk_size
    )
    assert report.groups_total == 4
    for group in report.groups:
        rows = keys == group.key[0]
        expected = paired_reference(
            {k: v[rows] for k, v in baseline.items()}, {k: v[rows] for k, v in candidate.items()}
        )
        paired = group.report.paired
        for name in PAIRED:
            assert getattr(paired, name) == pytest.approx(expected[name], rel=1e-10), name
    whole = paired_reference(baseline, candidate)
    assert report.paired.delta_nll == pytest.approx(whole["delta_nll"], rel=1e-10)
    assert report.baseline.groups == () and report.candidate.groups == ()


def test_groups_come_worst_first_and_pair_by_order_too(models):
    _, _, _, (base, _, in_order) = models
    by_id = compare(str(base), str(models[3][1]), columns=ColumnSpec(by="g", id="id"))
    by_order = compare(str(base), str(in_order), columns=ColumnSpec(by="g"))
    deltas = [group.report.paired.delta_nll for group in by_order.groups]
    assert deltas == sorted(deltas, reverse=True)
    assert [g.key for g in by_order.groups] == [g.key for g in by_id.groups]
    for mine, theirs in zip(by_order.groups, by_id.groups, strict=True):
        assert mine.report.paired.delta_nll == pytest.approx(theirs.report.paired.delta_nll)


def test_weighted_groups_equal_repeated_rows(tmp_path):
    baseline = make_predictions(300, seed=31)
    candidate = candidate_of(baseline, seed=32)
    keys = np.arange(300) % 3
    weight = np.random.default_rng(33).integers(0, 4, size=300).astype(float)
    repeat = weight.astype(int)
    files = []
    for name, table in (
        ("bw", {**baseline, "g": keys, "w": weight}),
        ("cw", {**candidate, "w": weight}),
        ("br", {k: np.repeat(v, repeat) for k, v in {**baseline, "g": keys}.items()}),
        ("cr", {k: np.repeat(v, repeat) for k, v in candidate.items()}),
    ):
        files.append(str(write_table(pa.table(table), tmp_path / f"{name}.parquet")))
    weighted = compare(files[0], files[1], columns=ColumnSpec(by="g", weight="w"))
    repeated = compare(files[2], files[3], columns=ColumnSpec(by="g"))
    for mine, theirs in zip(weighted.groups, repeated.groups, strict=True):
        assert mine.key == theirs.key
        assert mine.report.paired.delta_nll == pytest.approx(
            theirs.report.paired.delta_nll, rel=1e-12
        )
        assert mine.report.paired.weight_sum == theirs.report.paired.rows


def test_json_table_and_markdown_list_the_groups(models):
    _, _, _, (base, cand, _) = models
    args = [str(base), str(cand), "--id-col", "id", "--by", "g"]
    payload = json.loads(run(*args, "--json").stdout)
    assert payload["by"] == ["g"] and payload["groups_total"] == 4
    first = payload["groups"][0]
    assert set(first["key"]) == {"g"} and {"delta_nll", "verdict", "rows"} <= set(first)
    deltas = [group["delta_nll"] for group in payload["groups"]]
    assert deltas == sorted(deltas, reverse=True)
    table = CliRunner().invoke(app, ["compare", *args, "-q"], env={"COLUMNS": "200"}).stdout
    assert "by g: 4 groups, the largest delta_nll first" in table
    markdown = run(*args, "--format", "markdown").stdout
    assert "**by g: 4 groups, the largest delta\\_nll first**" in markdown


def test_per_group_gates_name_the_failing_groups(models):
    _, _, _, (base, cand, _) = models
    args = [str(base), str(cand), "--id-col", "id", "--by", "g", "--per-group"]
    worst = json.loads(run(*args[:-1], "--json").stdout)["groups"][0]
    failing = run(*args, "--check", f"delta_nll < {worst['delta_nll']}")
    assert failing.exit_code == 1
    assert f"in group g={worst['key']['g']}" in failing.stderr
    assert run(*args, "--check", f"delta_nll <= {worst['delta_nll']}").exit_code == 0


def test_grouping_mistakes_are_one_line(models):
    _, _, _, (base, cand, _) = models
    pair = [str(base), str(cand), "--id-col", "id"]
    assert_one_line_error(run(*pair, "--per-group", "--check", "delta_nll < 0"), "--by")
    assert_one_line_error(run(*pair, "--by", "nope"), "nope")
    assert_one_line_error(
        run(*pair, "--by", "g", "--per-group", "--check", "candidate.ence < 1"),
        "--group-metrics",
    )


def test_quantile_bins_of_the_baseline(tmp_path):
    baseline = make_predictions(400, seed=41)
    candidate = candidate_of(baseline, seed=42)
    x = np.random.default_rng(43).uniform(size=400)
    base = write_table(pa.table({**baseline, "x": x}), tmp_path / "b.parquet")
    cand = write_table(pa.table(candidate), tmp_path / "c.parquet")
    report = compare(str(base), str(cand), columns=ColumnSpec(by="x"), intervals={"x": 4})
    assert report.groups_total == 4
    assert sum(group.report.paired.rows for group in report.groups) == 400
