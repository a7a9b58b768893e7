"""Quantile predictions (--quantiles): every number against scoringrules, numpy or Bracher et
al.'s formula on the same rows, crossing quantiles and weights included; chunking, groups,
states, renderers and bad input as for the Gaussian."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scoringrules
from conftest import assert_one_line_error, assert_scored_alike_however_cut, write_table
from test_html import svgs
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import SCORE_METRICS, ColumnSpec, OptionError, evaluate, score
from gaussnll.core.report.checks import parse_check

LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
NAMES = ("q05", "q25", "q50", "q75", "q95")
REL = 1e-10
ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "quantiles.md").read_text()


def make_quantiles(rows: int, seed: int = 0, levels=LEVELS) -> dict[str, np.ndarray]:
    """A Gaussian's quantiles with noise of their own, so some rows' quantiles cross."""
    rng = np.random.default_rng(seed)
    mean, std = rng.normal(size=rows), rng.uniform(0.2, 2.0, rows)
    target = mean + std * rng.normal(size=rows) * 1.3
    quantiles = np.stack(
        [mean + std * NormalDist().inv_cdf(t) + 0.4 * std * rng.normal(size=rows) for t in levels],
        axis=1,
    )
    return {
        "target": target,
        "quantiles": quantiles,
        "weight": rng.integers(0, 4, rows).astype(float),
        "g": rng.integers(0, 3, rows),
    }


def as_table(data: dict[str, np.ndarray], names=NAMES) -> pa.Table:
    columns = {name: data["quantiles"][:, k] for k, name in enumerate(names)}
    return pa.table({"target": data["target"], **columns, "weight": data["weight"], "g": data["g"]})


def scored(data: dict[str, np.ndarray], levels=LEVELS, **settings) -> dict:
    names = NAMES[: len(levels)]
    columns = ColumnSpec(quantiles=names, **settings.pop("columns", {}))
    report = score(
        as_table(data, names), device="cpu", columns=columns, quantiles=levels, **settings
    )
    return report.to_dict()


def reference(data: dict[str, np.ndarray], weight: np.ndarray | None = None) -> dict:
    """The section from scoringrules and numpy; WIS by Bracher et al. (2021), eq. (3)."""
    y, q = data["target"], data["quantiles"]
    alpha = np.array(LEVELS)

    def mean(values):
        return np.average(values, weights=weight, axis=0)

    scores = [mean(scoringrules.quantile_score(y, q[:, k], t)) for k, t in enumerate(LEVELS)]
    pairs = [(1, 3), (0, 4)]  # (0.25, 0.75): level 0.5; (0.05, 0.95): level 0.9
    interval = [
        scoringrules.interval_score(y, q[:, low], q[:, high], 2 * LEVELS[low])
        for low, high in pairs
    ]
    wis = (
        0.5 * np.abs(y - q[:, 2])
        + sum(LEVELS[low] * score for (low, _), score in zip(pairs, interval, strict=True))
    ) / (len(pairs) + 0.5)
    coverage = [mean((y <= q[:, k]).astype(float)) for k in range(len(LEVELS))]
    return {
        "quantile_score": scores,
        "quantile_score_mean": np.mean(scores),
        "wis": mean(wis),
        "interval_coverage": [
            mean(((q[:, low] <= y) & (y <= q[:, high])).astype(float)) for low, high in pairs
        ],
        "quantile_interval_score": [mean(values) for values in interval],
        "quantile_coverage": coverage,
        "quantile_mace": np.mean(np.abs(np.array(coverage) - alpha)),
        "crps_quantile": mean(scoringrules.crps_quantile(y, q, alpha)),
        "crossing_rows": int((np.diff(q, axis=1) < 0).any(axis=1).sum()),
    }


def assert_section(section: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert section[name] == pytest.approx(value, rel=REL, abs=1e-14), name


def test_every_number_matches_scoringrules_with_crossing_quantiles():
    data = make_quantiles(3_000)
    report = scored(data)
    section = report["quantiles"]
    expected = reference(data)
    assert expected["crossing_rows"] > 100  # the references score crossed quantiles as given
    assert_section(section, expected)
    assert section["levels"] == list(LEVELS)
    assert section["interval_levels"] == pytest.approx([0.5, 0.9])
    assert report["nll"] is None and report["nll_mean"] is None and report["dss"] is None
    assert report["calibration"] is None and report["accuracy"] is None


def test_wis_is_two_over_2k_plus_1_times_the_summed_pinball_losses():
    data = make_quantiles(500, seed=4)
    section = scored(data)["quantiles"]
    pinball = sum(
        scoringrules.quantile_score(data["target"], data["quantiles"][:, k], t)
        for k, t in enumerate(LEVELS)
    )
    assert section["wis"] == pytest.approx(np.mean(2 / len(LEVELS) * pinball), rel=REL)


def test_weighted_numbers_are_the_weighted_references():
    data = make_quantiles(2_000, seed=2)
    report = scored(data, columns={"weight": "weight"})
    kept = data["weight"] > 0
    expected = reference({k: v[kept] for k, v in data.items()}, data["weight"][kept])
    expected["crossing_rows"] = int(
        (np.diff(data["quantiles"][kept], axis=1) < 0).any(axis=1).sum()
    )
    assert_section(report["quantiles"], expected)
    assert report["weight_sum"] == data["weight"].sum()


def test_integer_weights_equal_repeated_rows():
    data = make_quantiles(300, seed=5)
    repeats = data["weight"].astype(int)
    repeated = {k: np.repeat(v, repeats, axis=0) for k, v in data.items()}
    weighted = scored(data, columns={"weight": "weight"})["quantiles"]
    plain = scored(repeated)["quantiles"]
    for name in ("quantile_score", "wis", "interval_coverage", "quantile_coverage"):
        assert weighted[name] == pytest.approx(plain[name], rel=1e-12), name


@pytest.mark.parametrize("chunk_size", [1, 7, 256])
def test_chunk_size_changes_nothing(chunk_size):
    data = make_quantiles(1_000, seed=3)
    whole = scored(data, chunk_size=100_000, columns={"weight": "weight"})["quantiles"]
    chunked = scored(data, chunk_size=chunk_size, columns={"weight": "weight"})["quantiles"]
    for name, value in whole.items():
        assert chunked[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name


def test_each_group_is_its_rows_scored_alone_and_the_whole_is_unchanged():
    data = make_quantiles(1_500, seed=6)
    grouped = scored(data, columns={"by": ("g",)}, chunk_size=97)
    assert grouped["quantiles"] == scored(data, chunk_size=97)["quantiles"]
    report = score(
        as_table(data),
        device="cpu",
        columns=ColumnSpec(quantiles=NAMES, by="g"),
        quantiles=LEVELS,
        chunk_size=97,
    )
    for group in report.groups:
        (g,) = group.key
        rows = data["g"] == g
        alone = reference({k: v[rows] for k, v in data.items()})
        assert_section(group.to_dict(("g",))["quantiles"], alone)


def test_one_list_column_is_the_same_as_a_column_per_level():
    data = make_quantiles(400, seed=7)
    table = pa.table({"target": data["target"], "q": list(data["quantiles"])})
    listed = score(table, device="cpu", columns=ColumnSpec(quantiles="q"), quantiles=LEVELS)
    assert listed.to_dict()["quantiles"] == scored(data)["quantiles"]


def test_without_a_median_there_is_no_wis_and_pairs_are_found():
    levels = (0.1, 0.2, 0.8, 0.9)
    data = make_quantiles(300, seed=8, levels=levels)
    section = scored(data, levels=levels)["quantiles"]
    assert section["wis"] is None
    assert section["interval_levels"] == pytest.approx([0.6, 0.8])
    y, q = data["target"], data["quantiles"]
    assert section["quantile_interval_score"][1] == pytest.approx(
        np.mean(scoringrules.interval_score(y, q[:, 0], q[:, 3], 0.2)), rel=REL
    )


@pytest.mark.parametrize(
    ("levels", "fragment"),
    [
        ((0.5, 0.25, 0.75), "strictly increasing"),
        ((0.0, 0.5, 0.9), "strictly increasing"),
        ((0.25, 0.5, 1.0), "strictly increasing"),
        ((0.25, 0.5), "one list column or 2 columns"),
    ],
)
def test_bad_levels_are_refused(levels, fragment):
    data = make_quantiles(10)
    with pytest.raises(OptionError, match=fragment):
        score(
            as_table(data), device="cpu", columns=ColumnSpec(quantiles=NAMES[:3]), quantiles=levels
        )


# The command line.

QUANTILE_ARGS = ("--quantiles", ",".join(map(str, LEVELS)), "--quantile-cols", ",".join(NAMES))


def run(*args):
    return CliRunner().invoke(app, ["score", *map(str, args)])


@pytest.fixture
def quantile_file(tmp_path):
    return write_table(as_table(make_quantiles(600, seed=9)), tmp_path / "q.parquet")


def test_cli_json_table_and_markdown_show_the_section(quantile_file):
    result = run(quantile_file, *QUANTILE_ARGS, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["nll"] is None and payload["quantiles"]["wis"] > 0
    table = run(quantile_file, *QUANTILE_ARGS)
    assert table.exit_code == 0, table.output
    scalars = [
        m.name
        for m in SCORE_METRICS.metrics.values()
        if m.section == "quantiles" and not m.per_level
    ]
    for text in (*scalars, "quantile_score@τ", "interval_coverage@p"):
        assert re.search(rf"[│ ]{re.escape(text)}[ │]", table.stdout), text
    markdown = run(quantile_file, *QUANTILE_ARGS, "--format", "markdown")
    assert "| WIS | `wis` |" in markdown.stdout
    assert "**central intervals of the quantile pairs**" in markdown.stdout


def test_checks_on_every_new_field(quantile_file):
    checks = [
        "wis < 100",
        "crps_quantile < 100",
        "quantile_score_mean < 100",
        "quantile_score@0.05 < 100",
        "quantile_coverage@0.95 > 0",
        "quantile_mace < 1",
        "interval_coverage@0.9 > 0",
        "quantile_interval_score@0.5 < 100",
        "crossing_rows >= 0",
    ]
    args = [arg for check in checks for arg in ("--check", check)]
    assert run(quantile_file, *QUANTILE_ARGS, *args, "--json").exit_code == 0
    failed = run(quantile_file, *QUANTILE_ARGS, "--check", "quantile_coverage@0.05 > 0.9")
    assert failed.exit_code == 1
    assert "quantile_coverage@0.05" in failed.stderr


def test_every_quantile_metric_is_checkable_and_equals_its_json_value():
    data = make_quantiles(300, seed=14)
    columns = ColumnSpec(quantiles=NAMES, weight="weight")
    report = score(as_table(data), device="cpu", columns=columns, quantiles=LEVELS)
    section = report.to_dict()["quantiles"]
    metrics = [m for m in SCORE_METRICS.entries() if m.section == "quantiles"]
    assert len(metrics) == 9
    for metric in metrics:
        value = section[metric.name]
        if metric.per_level:
            levels = section["interval_levels" if "interval" in metric.name else "levels"]
            name, value = f"{metric.name}@{levels[-1]:g}", value[-1]
        else:
            name = metric.name
        (result,) = evaluate([parse_check(f"{name} > -1e300")], report)
        assert result.value == pytest.approx(value, rel=1e-15), name
        assert result.passed, name


@pytest.mark.parametrize("metric", ["nll", "dss", "mace"])
def test_a_check_on_a_density_metric_is_a_usage_error(quantile_file, metric):
    assert_one_line_error(
        run(quantile_file, *QUANTILE_ARGS, "--check", f"{metric} < 1"), "no density", metric
    )


def test_states_of_parts_merge_to_the_whole(tmp_path):
    data = make_quantiles(900, seed=10)
    table = as_table(data)
    states = []
    for part, rows in enumerate((table.slice(0, 400), table.slice(400))):
        path = write_table(rows, tmp_path / f"part{part}.parquet")
        states.append(tmp_path / f"part{part}.state.json")
        saved = run(path, *QUANTILE_ARGS, "--by", "g", "--save-state", states[-1], "-q")
        assert saved.exit_code == 0, saved.output
    merged = CliRunner().invoke(app, ["merge", *map(str, states), "--json"])
    assert merged.exit_code == 0, merged.output
    whole = scored(data, columns={"by": ("g",)})
    got = json.loads(merged.stdout)
    sections = [(got["quantiles"], whole["quantiles"])]
    sections += [
        (a["quantiles"], b["quantiles"])
        for a, b in zip(got["groups"], whole["groups"], strict=True)
    ]
    assert len(sections) == 4
    for mine, theirs in sections:
        for name, value in theirs.items():
            assert mine[name] == pytest.approx(value, rel=1e-12), name


def test_the_page_command_scores_the_sample_data_as_scoringrules_does():
    block = PAGE.split("```console\n")[1].split("\n...")[0]  # the first command, its lines joined
    command = block.replace("\\\n", " ").removeprefix("$ gaussnll ")
    result = CliRunner().invoke(app, [*shlex.split(command), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    section = json.loads(result.stdout)["quantiles"]
    table = pq.read_table(ROOT / "sample_data" / "quantiles.parquet")
    preds = pq.read_table(ROOT / "sample_data" / "preds.parquet")
    assert table.column("id").equals(preds.column("id"))
    assert table.column("target").equals(preds.column("target"))
    y = table.column("target").to_numpy()
    q = np.stack([table.column(name).to_numpy() for name in NAMES], axis=1)
    assert section["crossing_rows"] == int((np.diff(q, axis=1) < 0).any(axis=1).sum()) > 0
    assert section["crps_quantile"] == pytest.approx(
        np.mean(scoringrules.crps_quantile(y, q, np.array(LEVELS))), rel=REL
    )


def test_per_row_holds_each_rows_wis(tmp_path):
    data = make_quantiles(300, seed=11)
    path = write_table(as_table(data), tmp_path / "q.parquet")
    rows = tmp_path / "rows.parquet"
    result = run(path, *QUANTILE_ARGS, "--per-row", rows, "--weight-col", "weight", "--full")
    assert result.exit_code == 0, result.output
    written = pq.read_table(rows)
    assert written.column_names == ["wis"]
    y, q = data["target"], data["quantiles"]
    pinball = sum(scoringrules.quantile_score(y, q[:, k], t) for k, t in enumerate(LEVELS))
    expected = np.where(data["weight"] > 0, 2 / len(LEVELS) * pinball, np.nan)
    np.testing.assert_allclose(written.column("wis").to_numpy(), expected, rtol=REL)


def test_per_row_wis_is_the_same_without_the_quantile_sums_and_with_groups(tmp_path):
    """The rows' WIS come from the quantile sums' pinball losses, or (``--metrics nll``: no
    such sums) are computed on their own: the same numbers."""
    path = write_table(as_table(make_quantiles(200, seed=15)), tmp_path / "q.parquet")
    written = []
    for k, extra in enumerate((["--metrics", "nll"], ["--by", "g"], [])):
        rows = tmp_path / f"rows{k}.parquet"
        assert run(path, *QUANTILE_ARGS, *extra, "--per-row", rows, "-q").exit_code == 0
        written.append(pq.read_table(rows).column("wis").to_pylist())
    assert written[0] == written[1] == written[2]


@pytest.mark.parametrize(
    ("change", "args", "fragments"),
    [
        ("nan", (), ("q.parquet", "'q50'", "row 4", "finite")),
        ("none", ("--quantiles", "0.05,0.5,1.2"), ("--quantiles", "(0, 1)")),
        ("none", ("--quantiles", "0.05,0.5"), ("--quantile-cols", "2 columns")),
        ("list", ("--quantile-cols", "q"), ("q.parquet", "'q'", "4 quantiles per row", "5")),
        ("ragged", ("--quantile-cols", "q"), ("q.parquet", "'q'", "row 3", "number of quantiles")),
    ],
)
def test_bad_input_is_one_line(tmp_path, change, args, fragments):
    data = make_quantiles(20, seed=12)
    table = as_table(data)
    if change == "nan":
        values = data["quantiles"][:, 2].copy()
        values[3] = np.nan
        table = table.set_column(table.schema.get_field_index("q50"), "q50", pa.array(values))
    if change == "list":
        table = table.append_column("q", pa.array(list(data["quantiles"][:, :4])))
    if change == "ragged":  # the third row has a quantile less
        rows = [list(row) for row in data["quantiles"]]
        rows[2] = rows[2][:4]
        table = table.append_column("q", pa.array(rows))
    path = write_table(table, tmp_path / "q.parquet")
    given = dict(zip(QUANTILE_ARGS[::2], QUANTILE_ARGS[1::2], strict=True))
    given.update(dict(zip(args[::2], args[1::2], strict=True)))
    assert_one_line_error(run(path, *[x for pair in given.items() for x in pair]), *fragments)


def test_nan_rows_are_skipped_under_the_skip_policy(tmp_path):
    data = make_quantiles(200, seed=13)
    data["quantiles"][5, 1] = np.nan
    data["target"][9] = np.inf
    report = scored(data, nan_policy="skip")
    kept = np.ones(200, dtype=bool)
    kept[[5, 9]] = False
    assert report["skipped_rows"] == 2 and report["rows"] == 198
    assert_section(report["quantiles"], reference({k: v[kept] for k, v in data.items()}))


def test_a_nan_after_a_left_out_row_names_its_file_row(tmp_path):
    table = pa.table(
        {
            "target": [1.0, 2, 3, 4],
            "a": [0.0, 1, np.nan, 2],
            "b": [1.0, 2, 3, 4],
            "w": [1.0, 0, 1, 1],
        }
    )
    path = write_table(table, tmp_path / "w.parquet")
    args = ("--quantiles", "0.1,0.9", "--quantile-cols", "a,b", "--weight-col", "w")
    assert_one_line_error(run(path, *args), "w.parquet", "'a'", "row 3", "nan")
    table = table.set_column(3, "w", pa.array([1.0, 1, 0, 1]))  # the NaN's row left out
    path = write_table(table, tmp_path / "w.parquet")
    assert run(path, *args).exit_code == 0


def test_files_workers_merges_and_dask_give_one_report(tmp_path, local_dask):
    table = as_table(make_quantiles(900, seed=14))
    args = [*QUANTILE_ARGS, "--weight-col", "weight", "--by", "g"]
    report = assert_scored_alike_however_cut(tmp_path, table, args, local_dask)
    assert report["quantiles"]["wis"] > 0 and len(report["groups"]) == 3


def test_the_page_draws_the_quantile_calibration_and_each_intervals_coverage(quantile_file):
    page = quantile_file.with_suffix(".html")
    assert run(quantile_file, *QUANTILE_ARGS, "-q", "--html", page).exit_code == 0
    titles = [" ".join("".join(e.itertext()).split()) for e in svgs(page.read_text())]
    assert len(titles) == 2
    assert "Quantile calibration" in titles[0] and "Coverage per interval" in titles[1]
