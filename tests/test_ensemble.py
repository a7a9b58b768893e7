"""Ensembles (--ensemble): the moment-matched Gaussian's report and the mixture's section, against
independent references (torch.distributions, scoringrules, properscoring, scipy)."""

from __future__ import annotations

import json
import math

import numpy as np
import properscoring
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scoringrules
import torch
import torch.nn.functional as F
from conftest import write_table
from scipy import stats
from torch.distributions import Categorical, MixtureSameFamily, Normal
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import (
    SCORE_METRICS,
    ColumnSpec,
    InputError,
    OptionError,
    ScoreOptions,
    Scorer,
    compare,
    score,
)

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)


def make_ensemble(rows: int, members: int, outputs: int = 1, seed: int = 0) -> dict:
    """Member means ``(rows, M, D)`` spread around a truth, variances, and targets ``(rows, D)``."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(rows, 1, outputs))
    mean = truth + rng.normal(scale=0.7, size=(rows, members, outputs))
    var = rng.uniform(0.05, 2.0, size=(rows, members, outputs))
    target = truth[:, 0] + rng.normal(scale=1.2, size=(rows, outputs))
    return {"mean": mean, "var": var, "target": target}


def list_table(data: dict) -> pa.Table:
    """Members in list columns: ``[M]`` for one output, ``[M][D]`` for several."""
    mean, var, target = data["mean"], data["var"], data["target"]
    if mean.shape[2] == 1:
        return pa.table(
            {"mean": list(mean[:, :, 0]), "var": list(var[:, :, 0]), "target": target[:, 0]}
        )
    nested = [pa.array([list(row) for row in values]) for values in (mean, var)]
    return pa.table({"mean": nested[0], "var": nested[1], "target": list(target)})


def column_table(data: dict) -> pa.Table:
    """Members in columns ``m0..``, ``v0..`` (one output)."""
    members = data["mean"].shape[1]
    columns = {f"m{m}": data["mean"][:, m, 0] for m in range(members)}
    columns.update({f"v{m}": data["var"][:, m, 0] for m in range(members)})
    return pa.table({**columns, "target": data["target"][:, 0]})


def column_options(members: int, **more) -> ScoreOptions:
    spec = ColumnSpec(
        mean=[f"m{m}" for m in range(members)], spread=[f"v{m}" for m in range(members)]
    )
    return ScoreOptions(columns=spec, ensemble=True, device="cpu", **more)


def normalised(weights, members):
    w = np.ones(members) if weights is None else np.asarray(weights, dtype=float)
    return w / w.sum()


def mixture_reference(data: dict, weights=None) -> dict:
    """Every ensemble number from its definition, with independent libraries."""
    mean, var, target = (torch.from_numpy(data[k]) for k in ("mean", "var", "target"))
    members = mean.shape[1]
    w = torch.from_numpy(normalised(weights, members))
    kept = w > 0
    mixture = MixtureSameFamily(
        Categorical(probs=w[kept]),
        Normal(mean[:, kept].movedim(1, -1), var[:, kept].sqrt().movedim(1, -1)),
    )
    mixture_nll = -mixture.log_prob(target)  # exact -log density (the `full` loss)
    member_nll = [F.gaussian_nll_loss(mean[:, m], target, var[:, m]).item() for m in range(members)]
    wn = w.numpy()[:, None]
    matched_mean = (wn * data["mean"]).sum(axis=1)
    aleatoric = (wn * data["var"]).sum(axis=1)
    epistemic = (wn * (data["mean"] - matched_mean[:, None]) ** 2).sum(axis=1)
    mu, sd = data["mean"][:, kept.numpy()], np.sqrt(data["var"][:, kept.numpy()])
    wk = normalised(weights, members)[kept.numpy()]
    crps = scoringrules.crps_mixnorm(
        data["target"],
        mu,
        sd,
        w=np.broadcast_to(wk[None, :, None], mu.shape),
        m_axis=1,
        backend="numpy",
    )
    cdf = (wk[None, :, None] * stats.norm.cdf(data["target"][:, None], mu, sd)).sum(axis=1)
    centrality = np.abs(2 * cdf - 1)
    pit = np.minimum(np.floor(cdf * 20), 19).astype(int).ravel()
    return {
        "mixture_nll_full": mixture_nll.mean().item(),
        "member_nll": member_nll,
        "member_nll_mean": float(np.dot(normalised(weights, members), member_nll)),
        "aleatoric_var": aleatoric.mean(),
        "epistemic_var": epistemic.mean(),
        "epistemic_fraction": epistemic.mean() / (aleatoric.mean() + epistemic.mean()),
        "mixture_crps": crps.mean(),
        "mixture_inside_counts": [int((centrality <= p).sum()) for p in LEVELS],
        "mixture_coverage": [float((centrality <= p).mean()) for p in LEVELS],
        "mixture_pit_counts": np.bincount(pit, minlength=20).tolist(),
        "matched": {"mean": matched_mean, "var": aleatoric + epistemic},
        "per_row": (-mixture.log_prob(target)).numpy(),
    }


def assert_matches_reference(section, reference, full: bool) -> None:
    constant = 0.0 if full else HALF_LOG_2PI
    assert section.mixture_nll == pytest.approx(reference["mixture_nll_full"] - constant, rel=1e-12)
    kept = [m for m, v in enumerate(section.weights) if v > 0]
    member_nll = [section.member_nll[m] for m in kept]
    shift = HALF_LOG_2PI if full else 0.0
    assert member_nll == pytest.approx(
        [reference["member_nll"][m] + shift for m in kept], rel=1e-12
    )
    assert section.member_nll_mean == pytest.approx(reference["member_nll_mean"] + shift, rel=1e-12)
    for name in ("aleatoric_var", "epistemic_var", "epistemic_fraction", "mixture_crps"):
        assert getattr(section, name) == pytest.approx(reference[name], rel=1e-10), name
    assert section.mixture_inside_counts == reference["mixture_inside_counts"]
    assert section.mixture_coverage == pytest.approx(reference["mixture_coverage"])
    assert section.mixture_pit_counts == reference["mixture_pit_counts"]


@pytest.mark.parametrize("name", ["e.parquet", "e.arrow", "e.csv"])
@pytest.mark.parametrize("chunk_size", [7, 100, 10_000])
def test_mixture_section_matches_references_in_every_format_and_chunking(
    tmp_path, name, chunk_size
):
    data = make_ensemble(600, members=4, seed=1)
    if name.endswith(".csv"):
        path = write_table(column_table(data), tmp_path / name)
        options = column_options(4, chunk_size=chunk_size)
    else:
        path = write_table(list_table(data), tmp_path / name)
        options = ScoreOptions(ensemble=True, device="cpu", chunk_size=chunk_size)
    report = score(str(path), options)
    reference = mixture_reference(data)
    assert report.ensemble.members == 4
    assert report.ensemble.weights == pytest.approx([0.25] * 4)
    assert_matches_reference(report.ensemble, reference, full=False)


@pytest.mark.parametrize("full", [False, True])
def test_weights_normalise_and_a_zero_weight_drops_a_member(tmp_path, full):
    data = make_ensemble(500, members=3, seed=2)
    weights = (2.0, 0.0, 1.0)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    report = score(str(path), ensemble=True, member_weights=weights, full=full, device="cpu")
    section = report.ensemble
    assert section.members == 2
    assert section.weights == pytest.approx([2 / 3, 0.0, 1 / 3])
    assert section.member_nll[1] is None
    assert_matches_reference(section, mixture_reference(data, weights), full=full)


def test_the_report_is_the_moment_matched_gaussians(tmp_path):
    """Every metric outside the section equals scoring a file of μ*, v* computed by numpy."""
    data = make_ensemble(800, members=5, seed=3)
    weights = (1.0, 2.0, 3.0, 0.0, 4.0)
    matched = mixture_reference(data, weights)["matched"]
    ensemble = score(
        write_table(list_table(data), tmp_path / "e.parquet").as_posix(),
        ensemble=True,
        member_weights=weights,
        device="cpu",
    )
    flat = pa.table(
        {"mean": matched["mean"][:, 0], "var": matched["var"][:, 0], "target": data["target"][:, 0]}
    )
    single = score(write_table(flat, tmp_path / "g.parquet").as_posix(), device="cpu")
    numbers, expected = SCORE_METRICS.numbers(ensemble), SCORE_METRICS.numbers(single)
    assert not any(name.startswith("mixture") for name in expected)
    for name, value in expected.items():
        if name not in ("seconds",):
            assert numbers[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert single.nll == pytest.approx(
        F.gaussian_nll_loss(
            *(torch.from_numpy(a) for a in (matched["mean"], data["target"], matched["var"]))
        ).item(),
        rel=1e-12,
    )


def without_run_details(report) -> dict:
    payload = report.to_dict()
    for key in ("path", "seconds", "rows_per_second", "ensemble"):
        payload.pop(key)
    return payload


@pytest.mark.parametrize("layout", ["list", "columns"])
def test_one_member_equals_the_single_gaussian_report_exactly(tmp_path, layout):
    data = make_ensemble(700, members=1, seed=4)
    plain = pa.table(
        {"mean": data["mean"][:, 0, 0], "var": data["var"][:, 0, 0], "target": data["target"][:, 0]}
    )
    single = score(write_table(plain, tmp_path / "g.parquet").as_posix(), device="cpu")
    if layout == "list":
        path = write_table(list_table(data), tmp_path / "e.parquet")
        ensemble = score(str(path), ensemble=True, device="cpu")
    else:
        path = write_table(column_table(data), tmp_path / "e.parquet")
        ensemble = score(str(path), column_options(1))
        single_payload = without_run_details(single)
        single_payload["columns"] = {
            "mean": ["m0"],
            "target": ["target"],
            "var": ["v0"],
            "id": None,
            "weight": None,
        }
        single_payload["outputs"][0]["column"] = "m0"
        assert without_run_details(ensemble) == single_payload
        return
    assert without_run_details(ensemble) == without_run_details(single)
    assert ensemble.ensemble.mixture_nll == pytest.approx(single.nll, rel=1e-14)
    assert ensemble.ensemble.epistemic_var == 0.0


def test_several_outputs_from_nested_lists(tmp_path):
    """Members [M][D]: each output's elements are scored, the target stays [D]."""
    data = make_ensemble(300, members=3, outputs=2, seed=5)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    report = score(str(path), ensemble=True, device="cpu", chunk_size=64)
    assert report.elements == 600 and len(report.outputs) == 2
    reference = mixture_reference(data)
    assert_matches_reference(report.ensemble, reference, full=False)


def test_groups_equal_the_groups_scored_alone(tmp_path):
    data = make_ensemble(900, members=3, seed=6)
    region = np.random.default_rng(0).choice(["a", "b", "c"], size=900)
    table = list_table(data).append_column("region", pa.array(region))
    path = write_table(table, tmp_path / "e.parquet")
    report = score(
        str(path),
        ensemble=True,
        device="cpu",
        chunk_size=128,
        columns=ColumnSpec(by="region"),
        group_metrics="nll,ensemble",  # the mixture's sums per group only when asked
    )
    for group in report.groups:
        (key,) = group.key
        rows = region == key
        alone = score(table.filter(pa.array(rows)), ensemble=True, device="cpu")
        mine, theirs = group.report.ensemble, alone.ensemble
        for name in ("mixture_nll", "mixture_crps", "epistemic_var", "member_nll_mean"):
            assert getattr(mine, name) == pytest.approx(getattr(theirs, name), rel=1e-12)
        assert mine.mixture_pit_counts == theirs.mixture_pit_counts
    payload = report.to_dict()
    assert "mixture_nll" in payload["groups"][0]["ensemble"]


def test_workers_and_chunking_give_the_same_sums(tmp_path):
    data = make_ensemble(3000, members=5, seed=7)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    one = score(str(path), ensemble=True, device="cpu", workers=1, chunk_size=3000)
    many = score(str(path), ensemble=True, device="cpu", workers=3, chunk_size=97)
    for name in ("mixture_nll", "mixture_crps", "aleatoric_var", "epistemic_var"):
        assert getattr(many.ensemble, name) == pytest.approx(getattr(one.ensemble, name), rel=1e-13)
    assert many.ensemble.mixture_inside_counts == one.ensemble.mixture_inside_counts


def test_point_members_crps_is_the_ensemble_crps():
    """Zero variances are point masses: the mixture CRPS is properscoring's ensemble CRPS, and
    the PIT a step."""
    rng = np.random.default_rng(8)
    mean = rng.normal(size=(200, 6))
    target = rng.normal(size=200)
    scorer = Scorer(ensemble=True, device="cpu", eps=1e-6)
    scorer.update(torch.from_numpy(mean), torch.from_numpy(target), torch.zeros(200, 6))
    section = scorer.report().ensemble
    expected = properscoring.crps_ensemble(target, mean).mean()
    assert section.mixture_crps == pytest.approx(expected, rel=1e-12)
    cdf = (mean <= target[:, None]).mean(axis=1)
    assert section.mixture_inside_counts[0] == int((np.abs(2 * cdf - 1) <= 0.5).sum())


def test_no_calibration_skips_the_mixture_calibration(tmp_path):
    data = make_ensemble(100, members=3, seed=9)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    section = score(str(path), ensemble=True, device="cpu", calibration=False).ensemble
    assert section.mixture_crps is None
    assert section.mixture_coverage == [] and section.mixture_pit_counts == []
    assert section.mixture_nll == pytest.approx(
        mixture_reference(data)["mixture_nll_full"] - HALF_LOG_2PI, rel=1e-12
    )


def test_skip_drops_rows_with_a_non_finite_member(tmp_path):
    data = make_ensemble(200, members=3, seed=10)
    data["mean"][5, 1, 0] = np.nan
    data["var"][9, 2, 0] = np.inf
    path = write_table(list_table(data), tmp_path / "e.parquet")
    report = score(str(path), ensemble=True, device="cpu", nan_policy="skip")
    kept = np.ones(200, dtype=bool)
    kept[[5, 9]] = False
    clean = {k: v[kept] for k, v in data.items()}
    assert report.skipped_rows == 2 and report.rows == 198
    assert_matches_reference(report.ensemble, mixture_reference(clean), full=False)


def test_per_row_adds_the_mixture_nll(tmp_path):
    data = make_ensemble(150, members=4, seed=11)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(
        app,
        ["score", str(path), "--ensemble", "--full", "--per-row", str(out), "--chunk-size", "40"],
    )
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out)
    assert rows.column_names == ["nll", "mixture_nll"]
    reference = mixture_reference(data)["per_row"][:, 0]
    np.testing.assert_allclose(rows.column("mixture_nll").to_numpy(), reference, rtol=1e-12)


def test_checks_name_the_section_metrics(tmp_path):
    data = make_ensemble(300, members=3, seed=12)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    result = CliRunner().invoke(
        app,
        [
            "score",
            str(path),
            "--ensemble",
            "--json",
            "--check",
            "mixture_nll <= 100",
            "--check",
            "mixture_coverage@0.9 >= 0.99",
        ],
    )
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert set(payload["ensemble"]) >= {
        "members",
        "weights",
        "mixture_nll",
        "member_nll",
        "mixture_crps",
        "mixture_coverage",
        "mixture_pit_counts",
    }


def test_tensor_chunks(tmp_path):
    data = make_ensemble(120, members=3, seed=13)
    scorer = Scorer(ensemble=True, device="cpu")
    for part in np.array_split(np.arange(120), 4):
        scorer.update(
            *(
                torch.from_numpy(data[k][part][..., 0] if k != "target" else data[k][part])
                for k in ("mean", "target", "var")
            )
        )
    assert_matches_reference(scorer.report().ensemble, mixture_reference(data), full=False)


# Bad input: exit 2 and one line naming the file, row and column.


def run_cli(*args):
    return CliRunner().invoke(app, ["score", *map(str, args)])


def one_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_ragged_row_names_its_row(tmp_path):
    table = pa.table(
        {"mean": [[0.0, 1.0], [0.0, 1.0], [1.0]], "var": [[1.0, 1.0]] * 3, "target": [0.0] * 3}
    )
    path = write_table(table, tmp_path / "e.parquet")
    line = one_line(run_cli(path, "--ensemble"))
    assert "e.parquet" in line and "column 'mean'" in line and "row 3" in line
    assert "members" in line


def test_a_member_count_that_changes_between_chunks_names_its_row(tmp_path):
    table = pa.table(
        {
            "mean": [[0.0, 1.0]] * 4 + [[1.0]] * 2,
            "var": [[1.0, 1.0]] * 4 + [[1.0]] * 2,
            "target": [0.0] * 6,
        }
    )
    path = tmp_path / "e.parquet"
    pq.write_table(table, path, row_group_size=4)
    line = one_line(run_cli(path, "--ensemble", "--chunk-size", "4"))
    assert "row 5" in line and "column 'mean'" in line


def test_a_weight_count_that_is_not_m(tmp_path):
    data = make_ensemble(10, members=3)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    line = one_line(run_cli(path, "--ensemble", "--member-weights", "1,2"))
    assert "e.parquet" in line and "row 1" in line and "column 'mean'" in line
    assert "3 members where 2 weights are given" in line


@pytest.mark.parametrize(
    ("weights", "expected"), [("1,-1,1", ">= 0"), ("0,0,0", "all be zero"), ("1,x", "numbers")]
)
def test_bad_weights_are_a_usage_error(tmp_path, weights, expected):
    data = make_ensemble(10, members=3)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    line = one_line(run_cli(path, "--ensemble", "--member-weights", weights))
    assert "--member-weights" in line and expected in line


def test_weights_without_ensemble_raise():
    with pytest.raises(OptionError, match="member_weights"):
        ScoreOptions(member_weights=(1.0, 2.0))


def test_a_negative_member_variance_names_its_member_column(tmp_path):
    data = make_ensemble(30, members=3)
    data["var"][17, 2, 0] = -0.5
    path = write_table(column_table(data), tmp_path / "e.csv")
    line = one_line(run_cli(path, "--ensemble", "--mean-col", "m0,m1,m2", "--var-col", "v0,v1,v2"))
    assert "e.csv" in line and "column 'v2'" in line and "row 18" in line


def test_spread_members_must_match_the_means(tmp_path):
    data = make_ensemble(30, members=3)
    path = write_table(column_table(data), tmp_path / "e.csv")
    with pytest.raises(InputError, match="2 members where the mean has 3"):
        columns = ColumnSpec(mean=["m0", "m1", "m2"], spread=["v0", "v1"])
        score(str(path), columns=columns, ensemble=True, device="cpu")


def test_compare_pairs_the_moment_matched_gaussians(tmp_path):
    """Two ensembles of the same targets: each side's report is its moment-matched Gaussian's,
    with its mixture section, and the paired difference is of the matched NLLs."""
    first = make_ensemble(400, members=3, seed=14)
    second = {**first, "mean": first["mean"] + 0.2}
    paths = [
        write_table(list_table(data), tmp_path / f"{name}.parquet")
        for name, data in (("a", first), ("b", second))
    ]
    report = compare(str(paths[0]), str(paths[1]), ensemble=True, device="cpu")
    sides = [score(str(path), ensemble=True, device="cpu") for path in paths]
    assert report.paired.delta_nll == pytest.approx(sides[1].nll - sides[0].nll, rel=1e-10)
    assert report.candidate.ensemble.mixture_nll == pytest.approx(
        sides[1].ensemble.mixture_nll, rel=1e-12
    )


@pytest.mark.parametrize("output_format", ["table", "markdown"])
def test_table_and_markdown_show_the_section(tmp_path, output_format):
    data = make_ensemble(200, members=3, seed=15)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    report = score(str(path), ensemble=True, device="cpu")
    result = CliRunner().invoke(
        app, ["score", str(path), "--ensemble", "--format", output_format], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert f"{report.ensemble.mixture_nll:.6f}" in result.stdout
    assert f"{report.ensemble.mixture_crps:.6f}" in result.stdout
    assert "epistemic fraction" in result.stdout
    plain = CliRunner().invoke(app, ["score", str(path), "--format", output_format])
    assert "mixture" not in plain.stdout


def test_members_are_scored_in_pieces_of_chunk_size_over_m_rows(tmp_path):
    """Memory stays bounded by the chunk size: 10 members per row, chunks of 100 values."""
    data = make_ensemble(1000, members=10, seed=16)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    progress = []
    report = score(
        str(path),
        ensemble=True,
        device="cpu",
        chunk_size=100,
        on_progress=lambda done, *totals: progress.append(done),
    )
    assert np.diff([0, *progress]).max() == 10
    assert progress[-1] == 1000
    assert_matches_reference(report.ensemble, mixture_reference(data), full=False)


def test_ensemble_checks_need_ensemble_and_only_some_need_calibration(tmp_path):
    data = make_ensemble(100, members=3, seed=17)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    line = one_line(run_cli(path, "--check", "mixture_nll <= 10"))
    assert line.endswith("a --check uses an ensemble metric: add --ensemble")
    passed = run_cli(path, "--ensemble", "--no-calibration", "--check", "mixture_nll <= 10")
    assert passed.exit_code == 0, passed.output
    line = one_line(run_cli(path, "--ensemble", "--no-calibration", "--check", "mixture_crps < 9"))
    assert line.endswith("a --check uses a calibration metric: drop --no-calibration")


@pytest.mark.parametrize("kind", ["std", "log_var"])
def test_members_spread_as_std_or_log_var(tmp_path, kind):
    data = make_ensemble(300, members=4, seed=18)
    spread = np.sqrt(data["var"]) if kind == "std" else np.log(data["var"])
    table = list_table({**data, "var": spread}).rename_columns(["mean", "spread", "target"])
    path = write_table(table, tmp_path / "e.parquet")
    columns = ColumnSpec(spread="spread", spread_kind=kind)
    report = score(str(path), columns=columns, ensemble=True, device="cpu")
    assert_matches_reference(report.ensemble, mixture_reference(data), full=False)


def test_one_variance_per_member_broadcasts_over_outputs(tmp_path):
    """Nested [M][1] variances with [M][D] means: each member's variance serves every output."""
    data = make_ensemble(200, members=3, outputs=2, seed=19)
    data["var"] = np.repeat(data["var"][:, :, :1], 2, axis=2)
    table = list_table(data)
    narrow = pa.array([[[v] for v in row] for row in data["var"][:, :, 0]])
    path = write_table(table.set_column(1, "var", narrow), tmp_path / "e.parquet")
    report = score(str(path), ensemble=True, device="cpu")
    assert_matches_reference(report.ensemble, mixture_reference(data), full=False)
    out = tmp_path / "rows.csv"
    assert run_cli(path, "--ensemble", "--per-row", out).exit_code == 0
    header = out.read_text().splitlines()[0]
    assert header == '"nll_mean[0]","nll_mean[1]","mixture_nll_mean[0]","mixture_nll_mean[1]"'


def test_a_config_file_sets_the_ensemble_and_its_weights(tmp_path, monkeypatch):
    data = make_ensemble(100, members=3, seed=20)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.gaussnll]\nensemble = true\nmember_weights = [1, 2, 0]\n"
    )
    monkeypatch.chdir(tmp_path)
    result = run_cli(path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ensemble"]["weights"] == pytest.approx([1 / 3, 2 / 3, 0])
    (tmp_path / "pyproject.toml").write_text('[tool.gaussnll]\nmember_weights = [1, "x"]\n')
    assert "--member-weights must be numbers" in one_line(run_cli(path, "--json"))


@pytest.mark.parametrize("name", ["e.parquet", "e.arrow", "e.csv"])
def test_an_ensemble_is_read_in_batches_of_chunk_size_over_m_rows(tmp_path, name):
    """Read batches hold about chunk_size values per role, whatever M is."""
    from gaussnll.core.io.readers import scoring_request
    from gaussnll.core.io.sources import resolve_source

    data = make_ensemble(50, members=10, seed=21)
    is_csv = name.endswith(".csv")
    path = write_table(column_table(data) if is_csv else list_table(data), tmp_path / name)
    options = (
        column_options(10, chunk_size=1000)
        if is_csv
        else ScoreOptions(ensemble=True, chunk_size=1000)
    )
    source = resolve_source(str(path))
    assert scoring_request(source, options).chunk_size == 100
    single = ScoreOptions(columns=options.columns, chunk_size=1000)
    assert scoring_request(source, single).chunk_size == 1000


@pytest.mark.parametrize("layout", ["e.parquet", "columns.parquet", "columns.csv"])
def test_members_read_without_ensemble_are_noted_and_the_shape_shown(tmp_path, layout):
    """Without --ensemble, M members against one target are scored as M outputs (the target
    broadcast, as torch does): exit 0, one note on stderr naming --ensemble, and the table
    shows the shape it scored; with --ensemble, no note and M members."""
    data = make_ensemble(300, members=4, seed=21)
    table = list_table(data) if layout == "e.parquet" else column_table(data)
    path = write_table(table, tmp_path / layout)
    columns = ["--mean-col", "m0,m1,m2,m3", "--var-col", "v0,v1,v2,v3"]
    if layout == "e.parquet":
        columns = []  # list columns of 4

    def run(*more: str):
        return CliRunner().invoke(
            app, ["score", str(path), *columns, *more], env={"COLUMNS": "200"}
        )

    forgot = run()
    assert forgot.exit_code == 0, forgot.output
    (note,) = forgot.stderr.splitlines()
    assert note.startswith(f"gaussnll: note: {path}: the mean has 4 values per row")
    assert "the target 'target' one" in note and note.endswith("add --ensemble")
    assert "300 × 4 × 1" in forgot.stdout
    given = run("--ensemble")
    assert given.exit_code == 0, given.output
    assert given.stderr == "" and "300 × 1 × 4" in given.stdout


def test_outputs_of_their_own_targets_are_not_noted(tmp_path):
    """D outputs with D targets (a list target, or a target column each) are no ensemble."""
    data = make_ensemble(100, members=1, outputs=2, seed=22)
    mean, var, target = (data[k].reshape(100, 2) for k in ("mean", "var", "target"))
    lists = pa.table({"mean": list(mean), "var": list(var), "target": list(target)})
    roles = (("m", mean), ("v", var), ("t", target))
    columns = pa.table({f"{k}{d}": values[:, d] for k, values in roles for d in (0, 1)})
    for table, flags in (
        (lists, []),
        (columns, ["--mean-col", "m0,m1", "--var-col", "v0,v1", "--target-col", "t0,t1"]),
    ):
        path = write_table(table, tmp_path / "d.parquet")
        result = CliRunner().invoke(app, ["score", str(path), *flags], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert result.stderr == "" and "100 × 2 × 1" in result.stdout


def grouped_map(tmp_path, scales: dict[int, float]) -> str:
    """A recalibration map by column ``g`` with a different scale per group (so a scale applied
    along the members instead of the rows would be seen)."""
    groups = [{"key": {"g": g}, "scale": [s], "rows": 1} for g, s in scales.items()]
    document = {"schema": "gaussnll.recalibration/1", "eps": 1e-6, "outputs": ["mean"],
                "scale": [1.0], "by": ["g"], "groups": groups}  # fmt: skip
    path = tmp_path / "map.json"
    path.write_text(json.dumps(document))
    return str(path)


# 5 members: a chunk of 25 rows is scored in pieces of exactly 5 rows, one per member.
@pytest.mark.parametrize("chunk_size", [25, 7, 60, 10_000])
def test_a_map_scales_each_members_variance_by_its_rows_scale(tmp_path, chunk_size):
    data = make_ensemble(103, members=5, seed=11)
    group = np.arange(103) % 4
    scales = {0: 0.5, 1: 1.0, 2: 2.5, 3: 4.0}
    table = list_table(data).append_column("g", pa.array(group))
    path = write_table(table, tmp_path / "e.parquet")
    recalibration = grouped_map(tmp_path, scales)
    result = run_cli(
        path, "--ensemble", "--recalibration", recalibration, "--chunk-size", chunk_size, "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    row_scale = np.array([scales[g] for g in group])[:, None, None]
    scaled = {**data, "var": data["var"] * row_scale}
    reference = mixture_reference(scaled)
    matched = [torch.from_numpy(a) for a in (reference["matched"]["mean"], data["target"])]
    expected = F.gaussian_nll_loss(*matched, torch.from_numpy(reference["matched"]["var"]))
    assert report["nll"] == pytest.approx(expected.item(), rel=1e-12)
    section = report["ensemble"]
    assert section["mixture_nll"] == pytest.approx(
        reference["mixture_nll_full"] - HALF_LOG_2PI, rel=1e-12
    )
    assert section["aleatoric_var"] == pytest.approx(reference["aleatoric_var"], rel=1e-12)
    assert report["recalibration"]["unseen_rows"] == 0


def test_a_map_of_other_outputs_is_refused_for_an_ensemble(tmp_path):
    data = make_ensemble(20, members=3, outputs=2, seed=12)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    document = {"schema": "gaussnll.recalibration/1", "eps": 1e-6, "outputs": ["a", "b", "c"],
                "scale": [1.0, 2.0, 3.0], "by": [], "groups": []}  # fmt: skip
    (tmp_path / "map.json").write_text(json.dumps(document))
    result = run_cli(str(path), "--ensemble", "--recalibration", str(tmp_path / "map.json"))
    assert result.exit_code == 2
    assert "the recalibration map has 3 output(s) and the data 2" in one_line(result)


def test_recalibrate_an_ensemble_fits_the_moment_matched_variance_and_says_so(tmp_path):
    data = make_ensemble(400, members=4, seed=13)
    path = write_table(list_table(data), tmp_path / "e.parquet")
    output = tmp_path / "map.json"
    recalibrate = ["recalibrate", str(path), "--ensemble", "-o", str(output), "-q"]
    result = CliRunner().invoke(app, [*recalibrate, "--json"])
    assert result.exit_code == 0, result.output
    matched = mixture_reference(data)["matched"]
    z2 = (data["target"] - matched["mean"]) ** 2 / np.maximum(matched["var"], 1e-6)
    fitted = json.loads(output.read_text())
    assert fitted["scale"] == pytest.approx([z2.mean()], rel=1e-12)
    assert fitted["fitted_on"]["variance"] == "moment-matched"
    payload = json.loads(result.stdout)
    assert payload["schema"] == "gaussnll.recalibrate/1"
    assert "moment-matched variance" in payload["fits"]
    assert "each member's variance" in payload["fits"]
    table = CliRunner().invoke(app, recalibrate)
    assert "fits the scale of the moment-matched variance" in " ".join(table.stdout.split())
