"""Metric families: chosen per scope (--metrics, --group-metrics), and what is not chosen costs
nothing; the Dawid-Sebastiani score, the metric added through the family machinery."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, make_predictions, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import ColumnSpec, OptionError, load_state, merge_states, score
from gaussnll.core.families import FAMILIES, GROUP_DEFAULT, parse_names, select
from gaussnll.core.state.score_state import ScoreState

EPS = 1e-6
CPU = torch.device("cpu")


def run(*args: str):
    return CliRunner().invoke(app, ["score", *args, "--quiet"])


def grouped_table(rows: int = 1_200, seed: int = 3) -> pa.Table:
    columns = make_predictions(rows, seed=seed)
    columns["var"][::7] = 1e-9  # some variances below eps
    return pa.table({**columns, "g": np.arange(rows) % 4})


def state_of(table: pa.Table, path: Path, **settings) -> dict:
    """The state document of scoring ``table`` (through a state file, as a shard would)."""
    score(table, device="cpu", state_to=str(path), **settings)
    return load_state(str(path))


# --- dss ---------------------------------------------------------------------------------------


def test_dss_is_twice_the_nll_without_its_constant_and_its_own_formula():
    table = grouped_table()
    mean, target, var = (torch.tensor(table[k].to_numpy()) for k in ("mean", "target", "var"))
    floored = var.clamp(min=EPS)
    direct = ((target - mean) ** 2 / floored + torch.log(floored)).mean().item()
    nll = F.gaussian_nll_loss(mean, target, var, eps=EPS).item()
    full = F.gaussian_nll_loss(mean, target, var, eps=EPS, full=True).item()
    for chunk_size in (13, 100_000):
        for full_option in (False, True):
            report = score(table, device="cpu", chunk_size=chunk_size, full=full_option)
            assert report.dss == pytest.approx(direct, rel=1e-12)
            assert report.dss == pytest.approx(2 * nll, rel=1e-12)
            assert report.dss == pytest.approx(2 * full - math.log(2 * math.pi), rel=1e-12)


def test_dss_per_output_per_group_and_merged(tmp_path):
    rng = np.random.default_rng(5)
    mean, var = rng.normal(size=(600, 2)), rng.uniform(0.1, 2, size=(600, 2))
    target = mean + np.sqrt(var) * rng.normal(size=(600, 2))
    keys = np.arange(600) % 3
    roles = {"m": mean, "t": target, "v": var}
    columns = {f"{role}{d}": values[:, d] for role, values in roles.items() for d in (0, 1)}
    table = pa.table({**columns, "g": keys})
    spec = ColumnSpec(mean=("m0", "m1"), target=("t0", "t1"), spread=("v0", "v1"), by="g")
    report = score(table, device="cpu", chunk_size=50, columns=spec)

    def dss(rows: np.ndarray, outputs: slice) -> float:
        z2 = (target[rows, outputs] - mean[rows, outputs]) ** 2 / var[rows, outputs]
        return float(np.mean(z2 + np.log(var[rows, outputs])))

    every = np.ones(600, dtype=bool)
    assert report.dss == pytest.approx(dss(every, slice(None)), rel=1e-12)
    for d, output in enumerate(report.outputs):
        assert output.dss == pytest.approx(dss(every, slice(d, d + 1)), rel=1e-12)
    for group in report.groups:
        assert group.report.dss == pytest.approx(dss(keys == group.key[0], slice(None)), 1e-12)
    shards = [table.slice(0, 250), table.slice(250)]
    documents = [
        state_of(shard, tmp_path / f"s{k}.json", columns=spec) for k, shard in enumerate(shards)
    ]
    merged = merge_states(documents).report()
    assert merged.dss == pytest.approx(report.dss, rel=1e-12)
    assert [g.report.dss for g in merged.groups] == pytest.approx(
        [g.report.dss for g in report.groups], rel=1e-12
    )


def test_dss_in_json_table_and_checks(tmp_path):
    path = write_table(grouped_table(), tmp_path / "p.parquet")
    payload = json.loads(run(str(path), "--json", "--by", "g").stdout)
    assert payload["dss"] == pytest.approx(2 * payload["nll"], rel=1e-12)
    assert all(group["dss"] is not None for group in payload["groups"])
    assert "dss" in run(str(path)).stdout
    assert run(str(path), "--check", f"dss < {payload['dss'] + 1}").exit_code == 0
    failing = run(str(path), "--check", f"dss < {payload['dss'] - 1}")
    assert failing.exit_code == 1 and "dss" in failing.stderr


# --- choosing families ---------------------------------------------------------------------------


def test_an_unchosen_family_has_no_state_and_reports_null(tmp_path):
    path = write_table(grouped_table(), tmp_path / "p.parquet")
    payload = json.loads(run(str(path), "--json", "--metrics", "nll,crps").stdout)
    calibration = payload["calibration"]
    assert calibration["crps"] is not None and payload["accuracy"] is None
    for name in ("mace", "coverage", "pit_counts", "ence", "var_scale", "check_score"):
        assert calibration[name] is None, name
    state = ScoreState(1, CPU, levels=(0.5,), selection=select(("nll", "crps"), None))
    assert state.uncertainty is None and state.mixture is None
    assert state.calibration is not None and state.calibration.families == {"crps"}


@pytest.mark.parametrize(
    "family", [f for f in FAMILIES if f not in ("nll", "ensemble", "samples", "quantiles", "ci")]
)
def test_each_family_alone_gives_the_numbers_of_all(family):
    """Choosing fewer families changes none of the chosen ones' numbers."""
    table = grouped_table()
    every = score(table, device="cpu", chunk_size=100).to_dict()
    alone = score(table, device="cpu", chunk_size=100, metrics=(family,)).to_dict()
    for section in ("calibration", "accuracy"):
        if alone[section] is None:
            continue
        for name, value in alone[section].items():
            if value is None or name in ("levels", "pit_bins"):
                continue
            expected = every[section][name]
            for part in value if isinstance(value, dict) else [None]:
                mine, theirs = (value, expected) if part is None else (value[part], expected[part])
                assert mine == pytest.approx(theirs, rel=1e-12, abs=1e-15), (name, part)
    assert alone["nll"] == every["nll"]


def test_groups_keep_their_families_and_the_whole_input_is_unchanged():
    table = grouped_table()
    plain = score(table, device="cpu", chunk_size=97)
    grouped = score(table, device="cpu", chunk_size=97, columns=ColumnSpec(by="g"))
    assert grouped.calibration == plain.calibration and grouped.accuracy == plain.accuracy
    group = grouped.groups[0].report
    assert group.calibration is not None and group.accuracy is not None
    assert group.calibration.crps is not None and group.calibration.coverage is not None
    assert group.calibration.pit_counts is None and group.calibration.ence is None
    assert group.calibration.mace is None and group.calibration.calibration_curve is None
    curves = score(
        table,
        device="cpu",
        chunk_size=97,
        columns=ColumnSpec(by="g"),
        group_metrics=(*GROUP_DEFAULT, "calibration", "one_sided"),
    )
    with_curves = curves.groups[0].report.calibration
    assert with_curves is not None and with_curves.mace is not None
    assert with_curves.quantile_mace is not None and with_curves.crps == group.calibration.crps
    nll_only = score(
        table, device="cpu", chunk_size=97, columns=ColumnSpec(by="g"), group_metrics="nll"
    )
    assert nll_only.groups[0].report.calibration is None
    assert nll_only.calibration == plain.calibration


def test_group_state_is_smaller_with_the_default_families():
    every, default = (
        ScoreState(1, CPU, levels=(0.5, 0.9), grouped=True, selection=select(None, chosen))
        for chosen in (("all",), None)
    )
    nll = ScoreState(1, CPU, levels=(0.5, 0.9), grouped=True, selection=select(None, ("nll",)))
    assert nll.bytes_per_group < 100 < default.bytes_per_group < every.bytes_per_group / 4
    assert set(GROUP_DEFAULT) == default.selection.groups


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--metrics", "nll,crps", "--check", "mace < 0.1"], ["mace", "calibration", "--metrics"]),
        (
            ["--by", "g", "--per-group", "--check", "ence < 1"],
            ["ence", "uncertainty", "--group-metrics"],
        ),
        (["--by", "g", "--sort-by", "check_score"], ["check_score", "scores", "--group-metrics"]),
        (["--metrics", "nll,bogus"], ["metrics", "'bogus'"]),
        (["--metrics", "nll", "--by", "g", "--group-metrics", "crps"], ["--group-metrics", "crps"]),
        (["--metrics", "ensemble"], ["ensemble", "--ensemble"]),
        (["--no-calibration", "--metrics", "crps"], ["crps", "--no-calibration"]),
    ],
)
def test_uncomputed_or_unknown_families_are_one_line_and_exit_2(tmp_path, args, expected):
    path = write_table(grouped_table(300), tmp_path / "p.parquet")
    assert_one_line_error(run(str(path), *args), *expected)


@pytest.mark.parametrize(
    ("given", "added"),
    [
        ("+calibration", {"calibration"}),
        ("+ calibration", {"calibration"}),  # spaces around a name are dropped, as elsewhere
        ("+calibration, pit", {"calibration", "pit"}),
        ("+calibration,+pit", {"calibration", "pit"}),  # a + before each is the same
        ("+nll", set()),
        ("+all", set(FAMILIES) - {"ensemble", "samples", "quantiles", "ci"}),
    ],
)
def test_a_leading_plus_adds_families_to_the_groups_default(given, added):
    default = select(None, None).groups
    assert select(None, parse_names(given)).groups == default | added


@pytest.mark.parametrize("given", ["+", "+,pit", "nll,+pit", "++calibration"])
def test_a_plus_anywhere_but_before_the_first_family_is_refused_saying_so(given):
    with pytest.raises(OptionError, match=r"one \+ before the first to add.*Got '") as raised:
        select(None, parse_names(given))
    assert "must be families among" not in str(raised.value)


def test_options_refuse_bad_families():
    with pytest.raises(OptionError, match="group_metrics"):
        select(("nll",), ("pit",))
    with pytest.raises(OptionError, match="metrics"):
        select(("NLL",), None)


def test_states_of_different_families_do_not_merge(tmp_path):
    table = grouped_table(400)
    documents = [
        state_of(table, tmp_path / "a.json"),
        state_of(table, tmp_path / "b.json", metrics="nll,crps"),
    ]
    with pytest.raises(Exception, match="metrics"):
        merge_states(documents)
