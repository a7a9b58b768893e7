"""Group breakdowns (--by): each group equals its rows scored alone; sorting, top, gates."""

from __future__ import annotations

import itertools
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from conftest import assert_one_line_error, make_predictions, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import ColumnSpec, Scorer, UsageError, score

ALL = ("all",)  # every metric family per group, to compare each with its rows alone

# Every scalar a group reports, compared with the same group's rows scored on their own.
COMPARED = (
    "nll", "nll_sum", "rows", "eps_floored", "skipped_rows", "mace", "rmsce",
    "miscalibration_area", "crps", "check_score", "interval_score_avg", "nll_full",
    "sharpness", "z_mean", "z_std", "var_scale", "nll_at_var_scale", "mae", "rmse", "bias",
    "coverage@0.5", "coverage@0.9", "interval_width@0.8", "interval_score@0.95",
    "inside_counts@0.99",
)  # fmt: skip


def run(*args: str):
    return CliRunner().invoke(app, ["score", *args])


def frame_with_groups(rows: int, groups: int, seed: int, outputs: int = 1) -> pd.DataFrame:
    columns = make_predictions(rows, seed=seed, outputs=outputs)
    rng = np.random.default_rng(seed)
    data = {name: list(values) if outputs > 1 else values for name, values in columns.items()}
    frame = pd.DataFrame(data)
    frame["g"] = rng.integers(0, groups, rows)
    frame["h"] = rng.choice(["x", "y", None], rows)
    return frame


def assert_same_scores(group_report, alone) -> None:
    for name in COMPARED:
        assert group_report.metric(name) == pytest.approx(alone.metric(name), rel=1e-10), name
    assert group_report.calibration.pit_counts == alone.calibration.pit_counts
    for mine, theirs in zip(group_report.outputs, alone.outputs, strict=True):
        assert mine.nll_mean == pytest.approx(theirs.nll_mean, rel=1e-10)
        assert mine.calibration.crps == pytest.approx(theirs.calibration.crps, rel=1e-10)


@pytest.mark.parametrize("chunk_size", [13, 700, 100_000])
def test_each_group_equals_its_rows_scored_alone(chunk_size):
    frame = frame_with_groups(3_000, groups=7, seed=1)
    report = score(
        frame,
        device="cpu",
        chunk_size=chunk_size,
        columns=ColumnSpec(by=("g", "h")),
        group_metrics=ALL,
    )
    assert report.by == ("g", "h")
    keys = [group.key for group in report.groups]
    assert keys == sorted(keys, key=lambda k: (k[0], k[1] is None, k[1] or ""))
    assert len(keys) == report.groups_total == frame.groupby(["g", "h"], dropna=False).ngroups
    for group in report.groups:
        g, h = group.key
        rows = frame[(frame.g == g) & (frame.h.isna() if h is None else frame.h == h)]
        assert_same_scores(group.report, score(rows, device="cpu"))
    assert sum(group.report.rows for group in report.groups) == report.rows


def test_multi_output_groups():
    frame = frame_with_groups(900, groups=3, seed=2, outputs=2)
    table = pa.table(
        {
            **{
                name: pa.FixedSizeListArray.from_arrays(np.concatenate(frame[name].to_list()), 2)
                for name in ("mean", "var", "target")
            },
            "g": frame["g"],
        }
    )
    report = score(
        table, device="cpu", chunk_size=64, columns=ColumnSpec(by=("g",)), group_metrics=ALL
    )
    for group in report.groups:
        rows = table.filter(pa.compute.equal(table["g"], group.key[0]))
        assert_same_scores(group.report, score(rows, device="cpu"))


def test_many_groups_and_skipped_rows():
    """10^4 groups over few rows each: exact per group, skipped rows counted where they are."""
    frame = frame_with_groups(20_000, groups=10_000, seed=3)
    frame.loc[[5, 17, 4_000], "mean"] = np.nan
    report = score(
        frame,
        device="cpu",
        chunk_size=4_096,
        nan_policy="skip",
        columns=ColumnSpec(by=("g",)),
        group_metrics=ALL,
    )
    assert report.groups_total == frame["g"].nunique()
    by_key = {group.key[0]: group.report for group in report.groups}
    skipped = frame.loc[[5, 17, 4_000], "g"].value_counts()
    for key, count in skipped.items():
        assert by_key[key].skipped_rows == count
    sample = np.random.default_rng(4).choice(list(by_key), 40, replace=False)
    for key in sample:
        rows = frame[(frame.g == key) & frame["mean"].notna()]
        if len(rows):
            assert_same_scores(by_key[key], score(rows, device="cpu"))


def test_one_key_column_across_null_chunks_and_key_types(tmp_path):
    """The Arrow lookup of one key column: an all-null chunk first, then keys whose integer
    width changes from one file to the next; every row lands in its key's group."""
    first = frame_with_groups(600, groups=5, seed=6)
    first["g"] = first["g"].where(first.index >= 100).astype("Int64")
    second = frame_with_groups(900, groups=8, seed=7)
    paths = []
    for name, frame, key_type in (("a", first, pa.int32()), ("b", second, pa.int64())):
        keys = pa.array(frame["g"], key_type, from_pandas=True)
        table = pa.Table.from_pandas(frame[["mean", "var", "target"]]).append_column("g", keys)
        paths.append(str(write_table(table, tmp_path / f"{name}.parquet")))
    report = score(
        paths, device="cpu", chunk_size=100, columns=ColumnSpec(by=("g",)), group_metrics=ALL
    )
    keys = pd.concat([first["g"], second["g"].astype("Int64")])
    expected = keys.value_counts(dropna=False)
    assert {group.key[0]: group.report.rows for group in report.groups} == {
        (None if pd.isna(key) else int(key)): count for key, count in expected.items()
    }
    alone = pd.concat([first[first.index >= 100], second])
    rows = alone[alone["g"] == 3]
    assert_same_scores(
        next(g for g in report.groups if g.key == (3,)).report, score(rows, device="cpu")
    )


def test_scorers_with_different_groups_merge_exactly():
    frame = frame_with_groups(2_000, groups=30, seed=5)
    whole = score(frame, device="cpu", columns=ColumnSpec(by=("g",)), group_metrics=ALL)
    halves = [
        Scorer(device="cpu", columns=ColumnSpec(by=("g",)), group_metrics=ALL) for _ in range(2)
    ]
    # The halves meet the groups in different orders, so their group numbers differ.
    for scorer, part in zip(halves, (frame[:1_000], frame[1_000:].iloc[::-1]), strict=True):
        from gaussnll.core.run.api import _labelled
        from gaussnll.core.run.engine import to_chunks

        batches = _labelled(
            pa.Table.from_pandas(part).to_batches(), ["mean", "target", "var", "g"], 300
        )
        for chunk in to_chunks(batches, scorer.options, scorer.device, scorer.group_keys):
            scorer.add(chunk)
    halves[0].merge(halves[1])
    merged = halves[0].report()
    for mine, theirs in zip(merged.groups, whole.groups, strict=True):
        assert mine.key == theirs.key
        assert_same_scores(mine.report, theirs.report)


def test_sort_top_json_and_frame(tmp_path):
    frame = frame_with_groups(3_000, groups=12, seed=6)
    path = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "g.parquet")
    result = run(str(path), "--by", "g", "--sort-by", "nll", "--top", "5", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["by"] == ["g"] and payload["groups_total"] == 12
    nlls = [group["nll"] for group in payload["groups"]]
    assert len(nlls) == 5 and nlls == sorted(nlls, reverse=True)
    everything = score(str(path), device="cpu", columns=ColumnSpec(by=("g",)))
    assert nlls[0] == pytest.approx(max(g.report.nll for g in everything.groups), rel=1e-12)
    assert set(payload["groups"][0]) >= {"key", "rows", "nll", "calibration", "accuracy"}
    ascending = json.loads(
        run(str(path), "--by", "g", "--sort-by", "coverage@0.9:asc", "--json").stdout
    )
    coverages = [g["calibration"]["coverage"][2] for g in ascending["groups"]]
    assert coverages == sorted(coverages)
    table = everything.to_frame()
    assert list(table["g"]) == sorted(frame["g"].unique()) and len(table) == 12
    assert table["nll"].tolist() == [g.report.nll for g in everything.groups]


def test_per_group_checks_name_the_failing_groups(tmp_path):
    frame = frame_with_groups(4_000, groups=4, seed=7)
    bad = frame["g"] == 2
    frame.loc[bad, "var"] = frame.loc[bad, "var"] / 20  # group 2 far over-confident
    path = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "g.parquet")
    limit = score(frame[~bad], device="cpu").nll + 0.5
    junit = tmp_path / "checks.xml"
    args = [str(path), "--by", "g", "--check", f"nll <= {limit}", "--per-group"]
    result = run(*args, "--json", "--junit-xml", str(junit))
    assert result.exit_code == 1, result.output
    check = json.loads(result.stdout)["checks"][0]
    assert check["per_group"] is True and check["groups"] == 4
    assert [f["key"] for f in check["failed_groups"]] == [{"g": 2}]
    assert check["failed_groups"][0]["value"] > limit
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert "1 of 4 groups fail: 2 (" in failure.get("message")
    table = run(*args)
    assert table.exit_code == 1 and "1 of 4 groups fail" in table.stdout
    passing = run(str(path), "--by", "g", "--check", "nll <= 1000", "--per-group")
    assert passing.exit_code == 0 and "all 4 groups pass" in passing.stdout
    markdown = run(*args, "--format", "markdown")
    assert "**by g: 4 groups**" in markdown.stdout and "| (all) |" in markdown.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--top", "3"], "--top applies to the groups of --by COLUMN"),
        (["--per-group", "--check", "nll < 1"], "--per-group applies to the groups"),
        (["--by", "g", "--per-group"], "--per-group applies the checks to each group"),
        (["--by", "g", "--top", "0"], "--top must be at least 1"),
        (["--by", "g", "--sort-by", "nope"], "--sort-by must be METRIC or METRIC:asc"),
        (["--by", "g", "--sort-by", "nll:up"], "--sort-by must be METRIC or METRIC:asc"),
        (["--by", "region"], "column 'region': no such column"),
    ],
)
def test_grouping_usage_errors(tmp_path, args, fragment):
    frame = frame_with_groups(50, groups=2, seed=8)
    path = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "g.parquet")
    assert_one_line_error(run(str(path), *args), fragment)


def test_group_config_and_comma_separated_columns(tmp_path, monkeypatch):
    frame = frame_with_groups(600, groups=3, seed=9)
    path = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "g.csv")
    (tmp_path / "pyproject.toml").write_text('[tool.gaussnll]\nby = ["g,h"]\ntop = 2\n')
    monkeypatch.chdir(tmp_path)
    payload = json.loads(run(str(path), "--json").stdout)
    assert payload["by"] == ["g", "h"] and len(payload["groups"]) == 2
    assert payload["groups_total"] == frame.groupby(["g", "h"], dropna=False).ngroups
    assert payload["groups"][0]["key"] == {"g": 0, "h": ""}  # CSV reads an empty text cell as ""


def test_ungrouped_state_matches_torch_sum():
    """The grouped pass leaves the whole-input numbers as they were (compensated)."""
    frame = frame_with_groups(5_000, groups=50, seed=10)
    grouped = score(frame, device="cpu", chunk_size=333, columns=ColumnSpec(by=("g",)))
    plain = score(frame, device="cpu", chunk_size=333)
    tensors = [torch.tensor(frame[k].to_numpy()) for k in ("mean", "target", "var")]
    expected = torch.nn.functional.gaussian_nll_loss(*tensors).item()
    assert grouped.nll == plain.nll == pytest.approx(expected, rel=1e-12)
    assert grouped.calibration == plain.calibration
    assert not math.isnan(grouped.groups[0].report.nll)


def test_json_group_without_scored_rows_has_nulls(tmp_path):
    frame = frame_with_groups(400, groups=3, seed=8)
    frame.loc[frame.g == 1, "mean"] = np.nan
    path = write_table(pa.Table.from_pandas(frame), tmp_path / "p.parquet")
    result = run(str(path), "--by", "g", "--nan-policy", "skip", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    groups = {g["key"]["g"]: g for g in json.loads(result.output)["groups"]}
    assert groups[1]["rows"] == 0 and groups[1]["skipped_rows"] == (frame.g == 1).sum()
    assert groups[1]["nll"] is None and groups[1]["calibration"]["crps"] is None
    assert math.isfinite(groups[0]["nll"]) and groups[0]["calibration"]["pit_bins"] == 20


def test_table_and_markdown_show_100_groups_unless_told(tmp_path):
    frame = frame_with_groups(3_000, groups=150, seed=9)
    path = write_table(pa.Table.from_pandas(frame), tmp_path / "p.parquet")
    for fmt in ("table", "markdown"):
        shown = run(str(path), "--by", "g", "--format", fmt, "--quiet", "--no-calibration")
        assert "100 of 150 groups (--top K for more" in shown.output
    assert "by g: 150 groups" in run(str(path), "--by", "g", "--top", "200", "-q").output
    payload = json.loads(run(str(path), "--by", "g", "--json", "--quiet").output)
    assert len(payload["groups"]) == payload["groups_total"] == 150


def test_sort_by_a_level_outside_levels_computes_it(tmp_path):
    frame = frame_with_groups(3_000, groups=6, seed=10)
    path = write_table(pa.Table.from_pandas(frame), tmp_path / "p.parquet")
    result = run(
        str(path), "--by", "g", "--levels", "0.5", "--sort-by", "coverage@0.7:asc", "--json", "-q"
    )
    payload = json.loads(result.output)
    at = payload["calibration"]["levels"].index(0.7)
    coverage = [group["calibration"]["coverage"][at] for group in payload["groups"]]
    assert coverage == sorted(coverage) and len(set(coverage)) > 1
    bad = run(str(path), "--by", "g", "--sort-by", "coverage@1.5")
    assert_one_line_error(bad, "--sort-by must be METRIC")


# Breakdowns by intervals of a numeric column (--by COLUMN:EDGES, --by COLUMN:qK).


@pytest.mark.parametrize("chunk_size", [17, 100_000])
def test_each_interval_group_equals_its_rows_scored_alone(chunk_size):
    frame = frame_with_groups(2_000, groups=3, seed=4)
    frame["u"] = np.random.default_rng(9).uniform(-2, 2, len(frame))
    frame.loc[5, "u"] = np.nan  # a NaN key value falls in the null group
    frame.loc[6, "u"] = 0.5  # a value on an edge falls in the interval it opens
    edges = (-1.0, 0.5, 1.0)
    columns = ColumnSpec(by=("u", "h"))
    report = score(
        frame,
        device="cpu",
        chunk_size=chunk_size,
        columns=columns,
        intervals={"u": edges},
        group_metrics=ALL,
    )
    bounds = [-math.inf, *edges, math.inf]
    expected = {}
    for low, high in itertools.pairwise(bounds):
        inside = frame[(frame.u >= low) & (frame.u < high)]
        for h, rows in inside.groupby("h", dropna=False):
            expected[(str(low), str(high), None if pd.isna(h) else h)] = rows
    seen = set()
    for group in report.groups:
        interval, h = group.key
        if interval is None:
            alone = score(frame[frame.u.isna()], device="cpu")
            assert group.report.rows == 1
        else:
            rows = expected[(str(interval.low), str(interval.high), h)]
            alone = score(rows, device="cpu")
            seen.add((interval.low, h))
        assert_same_scores(group.report, alone)
    assert len(seen) == len(expected)
    labels = {str(group.key[0]) for group in report.groups if group.key[0] is not None}
    assert labels == {"(-inf, -1.0)", "[-1.0, 0.5)", "[0.5, 1.0)", "[1.0, inf)"}


def test_quantile_bins_hold_nearly_equal_counts_and_name_their_edges(tmp_path):
    frame = frame_with_groups(3_001, groups=3, seed=5)
    frame["u"] = np.random.default_rng(3).lognormal(size=len(frame))
    path = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "q.parquet")
    result = run(str(path), "--by", "u:q4", "--json", "--chunk-size", "500")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    counts = [group["rows"] for group in payload["groups"]]
    assert len(counts) == 4 and max(counts) - min(counts) <= 1
    edges = np.quantile(frame["u"], [0.25, 0.5, 0.75])
    first = payload["groups"][0]["key"]["u"]
    assert first == f"(-inf, {float(edges[0])!r})"


def test_quantile_bins_are_shown_rounded_and_their_json_keeps_the_exact_edges(tmp_path):
    """Quantile edges carry float noise (0.9383086056368581): a table and Markdown show them
    with the fewest significant digits that keep the bins apart (one here: -1.0, -0.007, 0.9);
    the JSON and a failed check's line keep every digit."""
    frame = frame_with_groups(997, groups=3, seed=5)
    frame["u"] = np.random.default_rng(3).uniform(-2, 2, len(frame))
    path = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "q.parquet")
    exact = np.quantile(frame["u"], [0.25, 0.5, 0.75])
    assert exact.tolist() == [-1.022183236021439, -0.006922103146143943, 0.9383086056368581]
    shown = ["(-inf, -1.0)", "[-1.0, -0.007)", "[-0.007, 0.9)", "[0.9, inf)"]
    table = CliRunner().invoke(
        app, ["score", str(path), "--by", "u:q4", "--check", "nll < -9", "--per-group"],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert table.exit_code == 1, table.output
    rows = [line.split("│")[1].strip() for line in table.stdout.splitlines() if "│" in line]
    assert [row for row in rows if row[:1] in "([" and ", " in row] == shown
    assert "in group u=[0.9383086056368581, inf)" in table.stderr  # a log line: exact
    markdown = run(str(path), "--by", "u:q4", "--format", "markdown")
    assert all(f"| {label.replace('[', chr(92) + '[')} |" in markdown.stdout for label in shown)
    payload = json.loads(run(str(path), "--by", "u:q4", "--json").stdout)
    bounds = [-math.inf, *exact.tolist(), math.inf]
    assert [group["key"]["u"] for group in payload["groups"]] == [
        f"{'(' if math.isinf(low) else '['}{low!r}, {high!r})"
        for low, high in itertools.pairwise(bounds)
    ]


def test_composite_key_with_intervals_and_bad_interval_specs(parquet_file, tmp_path):
    frame = frame_with_groups(300, groups=3, seed=6)
    path = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "c.parquet")
    both = run(str(path), "--by", "h,mean:0,0.5", "--json")
    assert both.exit_code == 0, both.stderr
    keys = {tuple(g["key"].values()) for g in json.loads(both.stdout)["groups"]}
    assert ("x", "[0.0, 0.5)") in keys and (None, "[0.5, inf)") in keys
    assert_one_line_error(run(str(path), "--by", "mean:abc"), "'mean:abc'")  # a column name
    assert_one_line_error(run(str(path), "--by", "mean:1,0"), "increasing order")
    assert_one_line_error(run(str(path), "--by", "h:0,1"), "intervals need a numeric column")


def test_many_groups_of_floats_warn_on_stderr_and_many_ids_do_not(tmp_path):
    """A column of floats broken into 10,050 groups is continuous: intervals are its fix.
    10,050 ids (integers or text, as a forecast's series) are many groups on purpose."""
    frame = frame_with_groups(10_050, groups=3, seed=7)
    frame["u"] = np.arange(len(frame)) * 0.5
    frame["series"] = np.arange(len(frame))
    frame["name"] = [f"s{k}" for k in range(len(frame))]
    path = write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "w.parquet")
    many = run(str(path), "--by", "u", "--no-calibration", "--top", "1")
    assert many.exit_code == 0
    assert "warning: --by u made 10,050 groups" in many.stderr
    assert "floating-point values of u" in many.stderr and "--by u:q10" in many.stderr
    composite = run(str(path), "--by", "h,u", "--no-calibration", "--top", "1")
    assert composite.exit_code == 0 and "--by u:q10" in composite.stderr
    for quiet in (["--by", "u:q10"], ["--by", "series"], ["--by", "name"], ["--by", "h,series"]):
        few = run(str(path), *quiet, "--no-calibration", "--top", "1")
        assert few.exit_code == 0 and "warning" not in few.stderr, quiet


def test_a_scorer_refuses_quantile_bins_it_cannot_find():
    with pytest.raises(UsageError, match="quantile bins need a first pass"):
        Scorer(device="cpu", columns=ColumnSpec(by=("u",)), intervals={"u": 4})


@pytest.mark.parametrize("chunk_size", [7, 1000])
def test_a_categorical_key_column_groups_as_its_values(tmp_path, chunk_size):
    """A pandas category (an Arrow dictionary) with a null and an unused category: the
    groups, their order and rows of the same keys as plain text (it was exit 3: the null's
    index is null), and no group for a category no row holds."""
    rng = np.random.default_rng(6)
    keys = rng.choice(["a", "b", "c", None], size=60).tolist()
    columns = make_predictions(60, seed=6)
    plain = pa.table({**columns, "k": pa.array(keys)})
    category = pd.Categorical(keys, categories=["unused", "c", "b", "a"])
    coded = pa.table({**columns, "k": pa.Array.from_pandas(category)})
    assert pa.types.is_dictionary(coded.schema.field("k").type)
    reports = [
        score(table, device="cpu", columns=ColumnSpec(by="k"), chunk_size=chunk_size)
        for table in (plain, coded)
    ]
    groups = [[(g.key, g.report.rows, g.report.nll) for g in r.groups] for r in reports]
    assert groups[1] == groups[0]
    assert [key for key, _, _ in groups[1]] == [("a",), ("b",), ("c",), (None,)]
    path = write_table(coded, tmp_path / "coded.parquet")
    result = run(str(path), "--by", "k", "--chunk-size", str(chunk_size), "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["groups"]) == 4
