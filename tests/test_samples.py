"""Samples (--samples): M draws per row, scored as the draws (the samples section) and as their
moment-matched Gaussian (the rest of the report), against independent references
(scoringrules, properscoring, numpy, torch)."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import properscoring
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scoringrules
import torch
import torch.nn.functional as F
from conftest import assert_scored_alike_however_cut, write_table
from test_ensemble import one_line
from test_html import svgs
from test_merge import _scored_shards, _shards, assert_same_report
from test_readme import ROOT
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import SCORE_METRICS, ColumnSpec, OptionError, ScoreOptions, Scorer, score
from gaussnll.core.report.checks import evaluate, parse_check
from gaussnll.core.report.fields import declared
from gaussnll.core.report.report import SamplesSummary
from gaussnll.core.state.samples import sorted_draws

LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)
PIT_BINS = 20
REL = 1e-10


def make_samples(rows: int, members: int, seed: int = 0, decimals: int | None = None):
    """Draws ``(rows, M)`` of a model a little off its targets ``(rows,)``; rounded to
    ``decimals``, draws and targets tie."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=rows)
    draws = centre[:, None] + rng.normal(scale=0.8, size=(rows, members))
    target = centre + rng.normal(size=rows)
    if decimals is not None:
        draws, target = np.round(draws, decimals), np.round(target, decimals)
    return draws, target


def table_of(draws: np.ndarray, target: np.ndarray, **more) -> pa.Table:
    return pa.table({"draws": list(draws), "target": target, **more})


def reference(draws: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None) -> dict:
    """The section's numbers from the draws by numpy and the peers' scoring rules."""
    w = np.ones(len(target)) if weight is None else weight
    m = draws.shape[1]
    below = (draws < target[:, None]).sum(axis=1)
    tied = (draws == target[:, None]).sum(axis=1)
    pit = [Fraction(int(2 * b + t), 2 * m) for b, t in zip(below, tied, strict=True)]
    inside = []
    for level in LEVELS:
        low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=1)
        inside.append(float((w * ((low <= target) & (target <= high))).sum()))
    ranks = np.zeros(m + 1)
    for row in range(len(target)):  # ties split evenly between the ranks the target may take
        ranks[below[row] : below[row] + tied[row] + 1] += w[row] / (tied[row] + 1)
    bins = [min(math.floor(u * PIT_BINS), PIT_BINS - 1) for u in pit]
    taus = [Fraction(j, 99) for j in range(100)]
    under = np.array([[u <= tau for tau in taus] for u in pit])
    observed = (w[:, None] * under).sum(axis=0) / w.sum()
    fair = scoringrules.crps_ensemble(target, draws, estimator="fair") if m > 1 else None
    return {
        "sample_members": m,
        "sample_crps": np.average(
            scoringrules.crps_ensemble(target, draws, estimator="nrg"), weights=w
        ),
        "properscoring": np.average(properscoring.crps_ensemble(target, draws), weights=w),
        "sample_crps_fair": None if fair is None else np.average(fair, weights=w),
        "sample_inside_counts": inside,
        "sample_coverage": [count / w.sum() for count in inside],
        "sample_rank_counts": ranks.tolist(),
        "sample_pit_counts": np.bincount(bins, weights=w, minlength=PIT_BINS).tolist(),
        "sample_quantile_mace": np.abs(np.linspace(0, 1, 100) - observed).mean(),
    }


def assert_section(section, expected: dict) -> None:
    assert section.sample_members == expected["sample_members"]
    assert section.sample_crps == pytest.approx(expected["sample_crps"], rel=REL)
    assert section.sample_crps == pytest.approx(expected["properscoring"], rel=REL)
    if expected["sample_crps_fair"] is None:
        assert section.sample_crps_fair is None
    else:
        assert section.sample_crps_fair == pytest.approx(expected["sample_crps_fair"], rel=REL)
    for name in ("sample_inside_counts", "sample_coverage", "sample_rank_counts"):
        assert getattr(section, name) == pytest.approx(expected[name], rel=REL), name
    assert section.sample_pit_counts == pytest.approx(expected["sample_pit_counts"], rel=REL)
    assert section.sample_quantile_mace == pytest.approx(expected["sample_quantile_mace"], rel=REL)


@pytest.mark.parametrize(
    ("members", "decimals"), [(1, None), (2, None), (2, 0), (9, None), (16, 1), (40, None)]
)
def test_the_section_matches_scoringrules_properscoring_and_numpy(tmp_path, members, decimals):
    draws, target = make_samples(300, members, seed=members, decimals=decimals)
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    report = score(str(path), samples="draws", device="cpu", levels=LEVELS)
    assert_section(report.samples, reference(draws, target))
    if decimals is not None:  # the rounding made ties, which the references split
        assert ((draws == target[:, None]).any(axis=1)).sum() > 0


def test_the_report_is_the_moment_matched_gaussians(tmp_path):
    """NLL: torch's loss of the mean of the draws and their population variance; the
    calibration section describes that Gaussian (its closed-form CRPS)."""
    draws, target = make_samples(500, 7, seed=3)
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    report = score(str(path), samples="draws", device="cpu")
    mean, var = draws.mean(axis=1), draws.var(axis=1)
    expected = F.gaussian_nll_loss(
        torch.from_numpy(mean), torch.from_numpy(target), torch.from_numpy(var), eps=1e-6
    )
    assert report.nll == pytest.approx(float(expected), rel=1e-12)
    gaussian_crps = scoringrules.crps_normal(target, mean, np.sqrt(var)).mean()
    assert report.calibration.crps == pytest.approx(gaussian_crps, rel=REL)
    assert report.columns["samples"] == ["draws"]
    assert report.ensemble is None


def test_draws_in_columns_equal_a_list_column(tmp_path):
    draws, target = make_samples(200, 4, seed=4)
    listed = score(table_of(draws, target), samples="draws", device="cpu")
    columns = pa.table({**{f"d{k}": draws[:, k] for k in range(4)}, "target": target})
    spread = score(columns, samples=["d0", "d1", "d2", "d3"], device="cpu")
    assert spread.samples == listed.samples
    assert spread.nll == listed.nll


@pytest.mark.parametrize("chunk_size", [1, 7, 100])
def test_chunking_and_workers_do_not_change_the_numbers(tmp_path, chunk_size):
    draws, target = make_samples(1000, 8, seed=5, decimals=1)
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    whole = score(str(path), samples="draws", device="cpu", chunk_size=100_000, workers=1)
    cut = score(str(path), samples="draws", device="cpu", chunk_size=chunk_size, workers=2)
    for name in ("sample_crps", "sample_crps_fair", "sample_quantile_mace"):
        assert getattr(cut.samples, name) == pytest.approx(getattr(whole.samples, name), rel=1e-12)
    for name in ("sample_inside_counts", "sample_pit_counts"):
        assert getattr(cut.samples, name) == getattr(whole.samples, name)
    assert cut.samples.sample_rank_counts == pytest.approx(whole.samples.sample_rank_counts)


def test_weights_weigh_every_field(tmp_path):
    draws, target = make_samples(400, 5, seed=6, decimals=1)
    weight = np.random.default_rng(1).integers(0, 4, size=400).astype(float)
    path = write_table(table_of(draws, target, w=weight), tmp_path / "s.parquet")
    report = score(str(path), samples="draws", device="cpu", weight_col="w")
    kept = weight > 0  # rows of weight 0 are left out
    assert_section(report.samples, reference(draws[kept], target[kept], weight[kept]))
    repeated = np.repeat(np.arange(400), weight.astype(int))
    alone = score(table_of(draws[repeated], target[repeated]), samples="draws", device="cpu")
    assert report.samples.sample_crps == pytest.approx(alone.samples.sample_crps, rel=1e-12)
    assert report.samples.sample_rank_counts == pytest.approx(alone.samples.sample_rank_counts)


def test_groups_get_the_section_only_when_chosen(tmp_path):
    draws, target = make_samples(600, 6, seed=7)
    region = np.random.default_rng(2).choice(["a", "b", "c"], size=600)
    table = table_of(draws, target, region=region)
    spec = ColumnSpec(by="region")
    default = score(table, samples="draws", device="cpu", columns=spec)
    assert default.samples is not None
    assert all(group.report.samples is None for group in default.groups)
    chosen = score(table, samples="draws", device="cpu", columns=spec, group_metrics="samples")
    assert chosen.samples == default.samples  # the whole input's sums do not depend on groups
    for group in chosen.groups:
        rows = region == group.key[0]
        assert_section(group.report.samples, reference(draws[rows], target[rows]))
    assert "sample_crps" in chosen.to_dict()["groups"][0]["samples"]


def test_files_may_differ_in_m_but_the_rank_histogram_then_is_null(tmp_path):
    few, few_target = make_samples(100, 3, seed=8)
    many, many_target = make_samples(100, 5, seed=9)
    first = write_table(table_of(few, few_target), tmp_path / "a.parquet")
    write_table(table_of(many, many_target), tmp_path / "b.parquet")
    report = score(str(tmp_path), samples="draws", device="cpu", workers=1)
    section = report.samples
    assert section.sample_rank_counts is None and section.sample_members is None
    crps = np.concatenate(
        [
            properscoring.crps_ensemble(few_target, few),
            properscoring.crps_ensemble(many_target, many),
        ]
    )
    assert section.sample_crps == pytest.approx(crps.mean(), rel=REL)
    assert score(str(first), samples="draws", device="cpu").samples.sample_members == 3


def test_merged_shards_equal_the_whole_file(tmp_path):
    table = pq.read_table(ROOT / "sample_data" / "samples.parquet").slice(0, 2000)
    whole, shards = _shards(tmp_path, table)
    options = ["--samples", "draws", "--by", "region", "--group-metrics", "nll,samples"]
    states = _scored_shards(tmp_path, shards, options)
    merged = run("merge", *states, "--json")
    assert merged.exit_code == 0, merged.output
    direct = run("score", whole, *options, "--json")
    got, want = json.loads(merged.stdout), json.loads(direct.stdout)
    assert got["samples"]["sample_members"] == 16
    assert_same_report(got, want)


def test_the_options_refuse_samples_with_an_ensemble():
    with pytest.raises(OptionError, match="samples"):
        ScoreOptions(samples=True, ensemble=True)
    with pytest.raises(OptionError, match="needs --samples"):
        ScoreOptions(metrics="nll,samples")
    assert ScoreOptions(samples=True).columns.spread == ()


def test_samples_with_an_ensemble_is_one_usage_line(tmp_path):
    draws, target = make_samples(10, 3)
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    line = one_line(run("score", path, "--samples", "draws", "--ensemble"))
    assert "--samples cannot be combined with ensemble" in line


def test_samples_with_quantiles_is_one_usage_line(tmp_path):
    """A row holds draws or quantiles, not both; and a quantile model has no samples family."""
    columns = ColumnSpec(quantiles=("q05", "q95"))
    with pytest.raises(OptionError, match="samples cannot be combined with quantiles"):
        ScoreOptions(samples=True, quantiles=(0.05, 0.95), columns=columns)
    with pytest.raises(OptionError, match="a quantile model"):
        ScoreOptions(quantiles=(0.05, 0.95), columns=columns, metrics="nll,samples")
    draws, target = make_samples(10, 3)
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    options = ("--quantiles", "0.05,0.95", "--quantile-cols", "draws")
    line = one_line(run("score", path, "--samples", "draws", *options))
    assert "--samples cannot be combined with quantiles" in line


def test_tensors_are_refused():
    scorer = Scorer(samples=True, device="cpu")
    with pytest.raises(Exception, match="samples are scored from files or tables"):
        scorer.update(torch.zeros(3, 2), torch.zeros(3), torch.zeros(3))


# The command line: the section in every format, checks, and bad input in one line.


def run(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def test_json_table_and_markdown_show_the_section(tmp_path):
    draws, target = make_samples(200, 6, seed=10)
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    payload = json.loads(run("score", path, "--samples", "draws", "--json").stdout)
    expected = reference(draws, target)
    assert payload["samples"]["sample_crps"] == pytest.approx(expected["sample_crps"], rel=REL)
    assert payload["samples"]["sample_rank_counts"] == pytest.approx(expected["sample_rank_counts"])
    table = run("score", path, "--samples", "draws", "-q")
    assert table.exit_code == 0, table.output
    assert "sample_crps" in table.stdout and "rank histogram" in table.stdout
    markdown = run("score", path, "--samples", "draws", "--format", "markdown", "-q")
    assert "sample_crps_fair" in markdown.stdout and "rank histogram" in markdown.stdout


def test_checks_name_the_section_metrics(tmp_path):
    draws, target = make_samples(200, 6, seed=11)
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    crps = reference(draws, target)["sample_crps"]
    args = ["score", path, "--samples", "draws", "-q"]
    assert run(*args, "--check", f"sample_crps<={crps + 1e-6}").exit_code == 0
    failed = run(*args, "--check", f"sample_crps<{crps / 2}")
    assert failed.exit_code == 1 and "sample_crps" in failed.stderr
    for check in ("sample_coverage@0.9>=0", "sample_quantile_mace<1", "sample_crps_fair<9"):
        assert run(*args, "--check", check).exit_code == 0, check
    line = one_line(run("score", path, "--check", "sample_crps<1", "-q"))
    assert "--samples" in line


def test_a_ragged_row_names_its_row(tmp_path):
    table = pa.table({"draws": [[0.0, 1.0], [0.0, 1.0], [1.0]], "target": [0.0] * 3})
    path = write_table(table, tmp_path / "s.parquet")
    line = one_line(run("score", path, "--samples", "draws"))
    assert "s.parquet" in line and "column 'draws'" in line and "row 3" in line
    assert "the same number of draws" in line


def test_a_ragged_draw_of_several_outputs_names_its_row(tmp_path):
    table = pa.table({"draws": [[[0.0, 1.0]] * 2, [[0.0, 1.0], [1.0]]], "target": [[0.0, 1.0]] * 2})
    path = write_table(table, tmp_path / "s.parquet")
    line = one_line(run("score", path, "--samples", "draws"))
    assert "s.parquet" in line and "column 'draws'" in line and "row 2" in line
    assert "the same number of outputs" in line


def test_a_count_of_draws_that_changes_within_a_file_names_its_row(tmp_path):
    table = pa.table({"draws": [[0.0, 1.0]] * 4 + [[1.0]] * 2, "target": [0.0] * 6})
    path = tmp_path / "s.parquet"
    pq.write_table(table, path, row_group_size=4)
    line = one_line(run("score", path, "--samples", "draws", "--chunk-size", "4"))
    assert "row 5" in line and "column 'draws'" in line and "draws per row" in line


def test_a_nan_draw_names_its_row_unless_skipped(tmp_path):
    draws, target = make_samples(10, 3, seed=12)
    draws[6, 1] = np.nan
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    line = one_line(run("score", path, "--samples", "draws"))
    assert "s.parquet" in line and "column 'draws'" in line and "row 7" in line
    assert "NaN" in line
    skipped = score(str(path), samples="draws", device="cpu", nan_policy="skip")
    assert skipped.rows == 9 and skipped.skipped_rows == 1
    kept = np.arange(10) != 6
    assert_section(skipped.samples, reference(draws[kept], target[kept]) | {})


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_a_missing_list_of_draws_names_its_row_and_what_skip_drops(tmp_path, policy):
    """A null list (no draws at all) is refused under every policy: under skip the line
    must not send the user to --nan-policy skip."""
    table = pa.table({"draws": [[0.0, 1.0], None, [1.0, 2.0]], "target": [0.0] * 3})
    path = write_table(table, tmp_path / "s.parquet")
    line = one_line(run("score", path, "--samples", "draws", "--nan-policy", policy))
    assert "s.parquet" in line and "column 'draws'" in line and "row 2" in line
    assert ("pass --nan-policy skip" in line) == (policy == "error")


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_an_infinite_draw_names_its_row_and_huge_draws_are_finite(tmp_path, value):
    """Huge finite draws (a row's sum overflows) are not taken for infinite ones (their
    moment-matched variance overflows instead: the loss is named)."""
    draws, target = make_samples(10, 3, seed=12)
    draws[:, 0] = 1e308  # finite, though a row's sum overflows
    draws[4, 2] = value
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    line = one_line(run("score", path, "--samples", "draws"))
    assert "column 'draws'" in line and "row 5" in line
    draws[4, 2] = 1e308
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    line = one_line(run("score", path, "--samples", "draws", "-q"))
    assert "infinite draw" not in line and "the loss is not finite" in line


def test_the_family_alone_gives_the_numbers_of_all(tmp_path):
    draws, target = make_samples(300, 5, seed=13)
    table = table_of(draws, target)
    every = score(table, samples="draws", device="cpu")
    alone = score(table, samples="draws", device="cpu", metrics="nll,samples")
    assert alone.samples == every.samples
    assert alone.nll == every.nll
    without = score(table, samples="draws", device="cpu", metrics="nll,crps")
    assert without.samples is None and without.to_dict()["samples"] is None


def test_the_family_without_calibration_checks_and_shows_its_coverage(tmp_path):
    """The section's coverage is at its own levels: without the calibration family it is
    still checked (it read as missing: exit 1) and shown in the table and on the page."""
    draws, target = make_samples(300, 5, seed=13)
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    expected = reference(draws, target)["sample_coverage"][LEVELS.index(0.9)]
    options = ("--samples", "draws", "--metrics", "nll,samples")
    result = run("score", path, *options, "--check", f"sample_coverage@0.9 >= {expected - 1e-9}")
    assert result.exit_code == 0, result.output
    assert "sample_coverage@0.9" in result.stdout and f"{expected:.4f}" in result.stdout
    page = tmp_path / "s.html"
    assert run("score", path, *options, "--html", page, "-q").exit_code == 0
    assert "Coverage of the draws" in page.read_text()


def test_every_section_metric_is_checkable_and_equals_its_json_value(tmp_path):
    draws, target = joint_samples(300, 4, outputs=2, seed=14)  # two outputs: an energy score
    weight = np.arange(300) % 3 + 0.5
    report = score(joint_table(draws, target, w=weight), samples="draws", weight_col="w")
    payload = report.to_dict()
    metrics = [m for m in SCORE_METRICS.metrics.values() if m.section == "samples"]
    assert len(metrics) == 8  # the scalars and the per-level ones (histograms are vectors)
    checks = [parse_check(f"{m.name}{'@0.9' if m.per_level else ''} > -1") for m in metrics]
    for metric, result in zip(metrics, evaluate(checks, report), strict=True):
        value = payload["samples"][metric.name]
        expected = value[LEVELS.index(0.9)] if metric.per_level else value
        assert result.value == pytest.approx(expected), metric.name
        assert result.passed, metric.name


def test_every_section_field_is_declared_in_the_samples_family():
    assert {name for name, _ in declared(SamplesSummary)} == set(SamplesSummary.__annotations__)
    assert {spec.family for _, spec in declared(SamplesSummary)} == {"samples"}


def test_per_row_adds_each_rows_crps(tmp_path):
    draws, target = make_samples(120, 6, seed=15)
    draws[4, 2] = np.nan  # skipped: its row's values are null
    path = write_table(table_of(draws, target, id=np.arange(120)), tmp_path / "s.parquet")
    rows = tmp_path / "rows.parquet"
    args = ["score", path, "--samples", "draws", "--nan-policy", "skip", "--id-col", "id", "-q"]
    result = run(*args, "--per-row", rows, "--chunk-size", "50")
    assert result.exit_code == 0, result.output
    written = pq.read_table(rows)
    assert written.column_names == ["id", "nll", "crps"]
    crps = np.array(written.column("crps").to_pylist(), dtype=float)
    expected = properscoring.crps_ensemble(target, draws)
    kept = np.arange(120) != 4
    np.testing.assert_allclose(crps[kept], expected[kept], rtol=REL)
    assert np.isnan(crps[4])
    mean, var = draws.mean(axis=1), draws.var(axis=1)
    nll = F.gaussian_nll_loss(
        torch.from_numpy(mean), torch.from_numpy(target), torch.from_numpy(var), reduction="none"
    ).numpy()
    got = np.array(written.column("nll").to_pylist(), dtype=float)
    np.testing.assert_allclose(got[kept], nll[kept], rtol=1e-12)


def test_several_outputs_from_nested_lists_score_each_output_on_its_own():
    first, first_target = make_samples(150, 5, seed=16)
    second, second_target = make_samples(150, 5, seed=17)
    nested = pa.array([list(pair) for pair in np.stack([first, second], axis=2)])
    table = pa.table({"draws": nested, "target": list(np.stack([first_target, second_target], 1))})
    report = score(table, samples="draws", device="cpu")
    assert report.elements == 300 and len(report.outputs) == 2
    crps = np.concatenate(
        [
            properscoring.crps_ensemble(first_target, first),
            properscoring.crps_ensemble(second_target, second),
        ]
    )
    assert report.samples.sample_crps == pytest.approx(crps.mean(), rel=REL)
    ranks = np.add(
        reference(first, first_target)["sample_rank_counts"],
        reference(second, second_target)["sample_rank_counts"],
    )
    assert report.samples.sample_rank_counts == pytest.approx(ranks.tolist())


def test_draws_of_several_outputs_sort_into_contiguous_rows():
    """Each element's sorted draws are contiguous, as ``torch.searchsorted`` needs them: a
    strided copy cost two copies a chunk and printed torch's warning on stderr."""
    draws = torch.from_numpy(np.random.default_rng(5).normal(size=(7, 4, 3)))
    ordered = sorted_draws(draws)
    assert ordered.is_contiguous()
    np.testing.assert_array_equal(ordered.numpy(), np.sort(draws.numpy().transpose(0, 2, 1)))


def joint_samples(rows: int, members: int, outputs: int = 3, seed: int = 0, decimals=None):
    """Draws ``(rows, M, D)`` of D correlated outputs and targets ``(rows, D)``; rounded to
    ``decimals``, draws tie with each other and with the target."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(rows, 1, outputs))
    draws = centre + rng.normal(scale=0.8, size=(rows, members, outputs))
    target = centre[:, 0] + rng.normal(size=(rows, outputs))
    if decimals is not None:
        draws, target = np.round(draws, decimals), np.round(target, decimals)
    return draws, target


def joint_table(draws: np.ndarray, target: np.ndarray, **more) -> pa.Table:
    """The draws as a ``[M][D]`` list column, the target as ``[D]``."""
    return pa.table(
        {"draws": pa.array([list(row) for row in draws]), "target": list(target), **more}
    )


def energy_reference(draws, target, weight=None, estimator="nrg"):
    return np.average(scoringrules.es_ensemble(target, draws, estimator=estimator), weights=weight)


@pytest.mark.parametrize(
    ("members", "decimals", "chunk_size"),
    [(1, None, 7), (2, None, 1), (2, 0, 100_000), (9, None, 7), (9, 0, 64), (30, 1, 100_000)],
)
def test_the_energy_score_matches_scoringrules(members, decimals, chunk_size):
    draws, target = joint_samples(240, members, seed=members, decimals=decimals)
    weight = np.random.default_rng(members).uniform(0.1, 3.0, size=240)
    report = score(
        joint_table(draws, target, w=weight),
        samples="draws",
        device="cpu",
        chunk_size=chunk_size,
        weight_col="w",
    )
    section = report.samples
    expected = energy_reference(draws, target, weight)
    assert section.sample_energy_score == pytest.approx(expected, rel=REL)
    if members == 1:
        assert section.sample_energy_score_fair is None
    else:
        fair = energy_reference(draws, target, weight, estimator="fair")
        assert section.sample_energy_score_fair == pytest.approx(fair, rel=REL)
    if decimals is not None:  # the rounding made ties among the draws and with the target
        assert (np.diff(np.sort(draws, axis=1), axis=1) == 0).any()


def test_the_energy_score_is_the_rows_not_the_elements_and_one_output_has_none():
    """The joint score is a row's (the mean over rows, integer weights as repeated rows);
    with one output it would be the CRPS, so it is null."""
    draws, target = joint_samples(150, 5, outputs=2, seed=20, decimals=1)
    weight = np.random.default_rng(3).integers(0, 4, size=150).astype(float)
    weighted = score(joint_table(draws, target, w=weight), samples="draws", weight_col="w")
    repeated = np.repeat(np.arange(150), weight.astype(int))
    alone = score(joint_table(draws[repeated], target[repeated]), samples="draws")
    assert weighted.samples.sample_energy_score == pytest.approx(
        alone.samples.sample_energy_score, rel=1e-12
    )
    assert alone.samples.sample_energy_score == pytest.approx(
        energy_reference(draws[repeated], target[repeated]), rel=REL
    )
    single, single_target = make_samples(100, 5, seed=21)
    one = score(table_of(single, single_target), samples="draws", device="cpu").samples
    assert one.sample_energy_score is None and one.sample_energy_score_fair is None


def test_each_group_gets_the_energy_score_of_its_rows():
    draws, target = joint_samples(300, 6, outputs=2, seed=22)
    region = np.random.default_rng(4).choice(["a", "b", "c"], size=300)
    report = score(
        joint_table(draws, target, region=region),
        samples="draws",
        device="cpu",
        columns=ColumnSpec(by="region"),
        group_metrics="samples",
    )
    assert report.samples.sample_energy_score == pytest.approx(
        energy_reference(draws, target), rel=REL
    )
    for group in report.groups:
        rows = region == group.key[0]
        expected = energy_reference(draws[rows], target[rows], estimator="fair")
        assert group.report.samples.sample_energy_score_fair == pytest.approx(expected, rel=REL)


def test_the_energy_score_in_every_format_and_checks(tmp_path):
    draws, target = joint_samples(120, 4, outputs=2, seed=23)
    path = write_table(joint_table(draws, target), tmp_path / "j.parquet")
    expected = energy_reference(draws, target)
    args = ["score", path, "--samples", "draws", "-q"]
    payload = json.loads(run(*args, "--json").stdout)["samples"]
    assert payload["sample_energy_score"] == pytest.approx(expected, rel=REL)
    table = run(*args, "--check", f"sample_energy_score <= {expected + 1e-6}")
    assert table.exit_code == 0, table.output
    assert "sample_energy_score" in table.stdout
    failed = run(*args, "--check", f"sample_energy_score_fair < {expected / 4}")
    assert failed.exit_code == 1 and "sample_energy_score_fair" in failed.stderr
    markdown = run(*args, "--format", "markdown").stdout
    assert "sample_energy_score" in markdown and "energy score (fair)" in markdown
    html = tmp_path / "j.html"
    assert run(*args, "--html", html).exit_code == 0
    assert "sample_energy_score" in html.read_text()


def test_states_of_other_numbers_of_draws_refuse_to_merge_in_one_line(tmp_path):
    states = []
    for members in (3, 4):
        draws, target = make_samples(20, members, seed=members)
        path = write_table(table_of(draws, target), tmp_path / f"m{members}.parquet")
        state = tmp_path / f"m{members}.json"
        assert run("score", path, "--samples", "draws", "--save-state", state, "-q").exit_code == 0
        states.append(state)
    line = one_line(run("merge", *states, "-q"))
    assert "m4.json holds 4 members or draws per row and" in line and "m3.json 3" in line


def test_files_workers_merges_and_dask_give_one_report(tmp_path, local_dask):
    """Two outputs (so the energy score too), weights and groups with the samples family."""
    draws, target = joint_samples(900, 7, outputs=2, seed=24, decimals=1)
    rng = np.random.default_rng(5)
    table = joint_table(
        draws,
        target,
        w=rng.integers(0, 4, size=900).astype(float),
        region=rng.choice(["a", "b", "c"], size=900),
    )
    args = ["--samples", "draws", "--weight-col", "w", "--by", "region"]
    report = assert_scored_alike_however_cut(
        tmp_path, table, [*args, "--group-metrics", "nll,samples"], local_dask
    )
    assert report["samples"]["sample_energy_score"] > 0
    assert all(group["samples"]["sample_energy_score"] > 0 for group in report["groups"])


def test_the_page_draws_the_rank_histogram_and_the_draws_coverage(tmp_path):
    draws, target = make_samples(300, 9, seed=25)
    path = write_table(table_of(draws, target), tmp_path / "s.parquet")
    page = tmp_path / "s.html"
    assert run("score", path, "--samples", "draws", "-q", "--html", page).exit_code == 0
    titles = [" ".join("".join(e.itertext()).split()) for e in svgs(page.read_text())]
    assert any("Rank histogram" in title for title in titles)
    assert any("Coverage of the draws' intervals" in title for title in titles)
