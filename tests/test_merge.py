"""State files and ``gaussnll merge``: shards scored apart add up to the whole input's report."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import assert_one_line_error, assert_same_report, make_predictions
from test_readme import ROOT, blocks, console_commands
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import (
    ColumnSpec,
    Scorer,
    load_state,
    merge_state_files,
    merge_states,
    save_state,
    score,
)
from gaussnll.core.run import merging
from gaussnll.core.state import portable
from gaussnll.core.state.score_state import ScoreState
from gaussnll.core.state.sinks import Placement, Sums

SHARDS = 4


def run(*args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def _table(rows: int, outputs: int) -> pa.Table:
    columns = make_predictions(rows, seed=7, outputs=outputs)
    rng = np.random.default_rng(3)
    data: dict[str, object] = {}
    for role in ("mean", "target", "var"):
        values = columns[role].reshape(rows, outputs)
        for j in range(outputs):
            data[f"{role}{j}"] = values[:, j]
    data["region"] = rng.choice(["north", "south", "east"], size=rows)
    data["x"] = rng.uniform(0, 10, size=rows)
    return pa.table(data)


def _columns(outputs: int) -> list[str]:
    names = {role: ",".join(f"{role}{j}" for j in range(outputs)) for role in ("mean", "target")}
    spread = ",".join(f"var{j}" for j in range(outputs))
    return ["--mean-col", names["mean"], "--target-col", names["target"], "--var-col", spread]


def _shards(tmp_path: Path, table: pa.Table) -> tuple[Path, list[Path]]:
    whole = tmp_path / "whole.parquet"
    pq.write_table(table, whole)
    cuts = np.linspace(0, table.num_rows, SHARDS + 1).astype(int)
    shards = []
    for k, (start, stop) in enumerate(itertools.pairwise(cuts)):
        shard = tmp_path / f"shard{k}.parquet"
        pq.write_table(table.slice(start, stop - start), shard)
        shards.append(shard)
    return whole, shards


@pytest.mark.parametrize(
    ("outputs", "options"),
    [
        (1, []),
        (1, ["--no-calibration", "--full"]),
        (2, ["--by", "region"]),
        (1, ["--by", "region", "--by", "x:2.5,5,7.5", "--levels", "0.3,0.7"]),
        (2, ["--by", "region,x:5", "--reduction", "sum", "--eps", "0.2"]),
    ],
)
def test_merged_shards_equal_the_whole_file(tmp_path, outputs, options):
    whole, shards = _shards(tmp_path, _table(3_000, outputs))
    args = [*_columns(outputs), *options]
    states = []
    for shard in shards:
        state = tmp_path / f"{shard.stem}.json"
        result = run("score", shard, *args, "--save-state", state, "--chunk-size", "333", "-q")
        assert result.exit_code == 0, result.output
        states.append(state)
    merged = run("merge", *states, "--json")
    assert merged.exit_code == 0, merged.output
    direct = run("score", whole, *args, "--json")
    got, want = json.loads(merged.stdout), json.loads(direct.stdout)
    assert_same_report(got, want)
    assert got["format"] == "state"
    assert got["rows"] == 3_000


def _scored_shards(tmp_path: Path, shards: list[Path], args: list[str]) -> list[Path]:
    """Each shard scored with ``args`` into a state file."""
    states = []
    for shard in shards:
        state = tmp_path / f"{shard.stem}.json"
        result = run("score", shard, *args, "--save-state", state, "-q")
        assert result.exit_code == 0, result.output
        states.append(state)
    return states


@pytest.mark.parametrize(
    "options",
    [
        ["--ensemble"],
        ["--ensemble", "--member-weights", "1,0,2,1,1", "--by", "region"],
        ["--ensemble", "--no-calibration"],
    ],
)
def test_merged_ensemble_shards_equal_the_whole_file(tmp_path, options):
    table = pq.read_table(ROOT / "sample_data" / "ensemble.parquet")
    whole, shards = _shards(tmp_path, table)
    states = _scored_shards(tmp_path, shards, options)
    merged = run("merge", *states, "--json")
    assert merged.exit_code == 0, merged.output
    direct = run("score", whole, *options, "--json")
    got, want = json.loads(merged.stdout), json.loads(direct.stdout)
    assert got["ensemble"] is not None and len(got["ensemble"]["weights"]) == 5
    assert_same_report(got, want)


def test_ensemble_states_of_other_weights_refuse_to_merge(tmp_path):
    table = pq.read_table(ROOT / "sample_data" / "ensemble.parquet")
    _, shards = _shards(tmp_path, table)
    first = _scored_shards(tmp_path, shards[:1], ["--ensemble"])[0]
    second = tmp_path / "weighted.json"
    run("score", shards[1], "--ensemble", "--member-weights", "1,1,1,1,2", "--save-state", second)
    assert_one_line_error(run("merge", first, second), "different options", "member_weights")


def test_ence_after_merge_equals_the_whole_files(tmp_path):
    whole, shards = _shards(tmp_path, _table(3_000, 2))
    args = [*_columns(2), "--uncertainty-bins", "7", "--by", "region"]
    states = _scored_shards(tmp_path, shards, args)
    got = json.loads(run("merge", *states, "--json").stdout)
    want = json.loads(run("score", whole, *args, "--json").stdout)
    ence, bins = got["calibration"]["ence"], got["calibration"]["uncertainty_bins"]
    assert np.isfinite(ence).all() and ence == pytest.approx(want["calibration"]["ence"], rel=1e-12)
    assert_same_report(bins, want["calibration"]["uncertainty_bins"], "uncertainty_bins")
    for mine, theirs in zip(got["groups"], want["groups"], strict=True):
        assert mine["calibration"]["ence"] == pytest.approx(theirs["calibration"]["ence"])
    other = tmp_path / "other.json"
    run("score", shards[0], *_columns(2), "--by", "region", "--save-state", other, "-q")
    assert_one_line_error(run("merge", states[1], other), "uncertainty_bins (7 and 10)")


def test_merge_renders_every_format_and_applies_checks(tmp_path):
    _, shards = _shards(tmp_path, _table(1_200, 1))
    states = []
    for shard in shards:
        states.append(tmp_path / f"{shard.stem}.json")
        run("score", shard, *_columns(1), "--by", "region", "--save-state", states[-1], "-q")
    table = run("merge", *states, "--top", "2", "--sort-by", "nll")
    assert table.exit_code == 0 and "nll" in table.stdout
    assert run("merge", *states, "--format", "markdown").stdout.startswith("#")
    junit = tmp_path / "checks.xml"
    failing = run("merge", *states, "--check", "nll <= -100", "--junit-xml", junit)
    assert failing.exit_code == 1
    assert "failure" in junit.read_text()
    per_group = run("merge", *states, "--check", "rows >= 1", "--per-group")
    assert per_group.exit_code == 0, per_group.output


@pytest.mark.parametrize(
    ("data", "options", "check"),
    [
        ("ensemble.parquet", ["--ensemble"], "mixture_nll < 100"),
        ("samples.parquet", ["--samples", "draws"], "sample_crps < 100"),
    ],
)
def test_merge_checks_the_ensemble_and_samples_metrics_its_states_kept(
    tmp_path, data, options, check
):
    """merge has no --ensemble or --samples: the states say (was exit 3, KeyError, and exit 2,
    'add --samples COL')."""
    state = tmp_path / "s.state.json"
    saved = run("score", ROOT / "sample_data" / data, *options, "-q", "--save-state", state)
    assert saved.exit_code == 0, saved.output
    merged = run("merge", state, "-q", "--check", check)
    assert merged.exit_code == 0, merged.output


def test_states_of_different_maps_name_both_maps(tmp_path):
    """Not "a different map and a different map": each map by its data, scales and groups."""
    data = str(ROOT / "sample_data" / "preds.parquet")
    states = {}
    for name, scale, fitted_on in (("a", 1.5, "cal-a.parquet"), ("b", 2.25, "cal-b.parquet")):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({
            "schema": "gaussnll.recalibration/1", "eps": 1e-6, "outputs": ["mean"],
            "scale": [scale], "by": [], "groups": [],
            "fitted_on": {"path": fitted_on, "rows": 10},
        }))  # fmt: skip
        states[name] = tmp_path / f"{name}.state.json"
        run("score", data, "--recalibration", path, "--save-state", states[name], "-q")
    states["none"] = tmp_path / "none.state.json"
    run("score", data, "--save-state", states["none"], "-q")
    assert_one_line_error(
        run("merge", states["a"], states["b"]),
        "recalibration (the map fitted on cal-a.parquet (scale 1.5) and the map fitted on "
        "cal-b.parquet (scale 2.25))",
    )
    assert_one_line_error(
        run("merge", states["a"], states["none"]),
        "recalibration (the map fitted on cal-a.parquet (scale 1.5) and no map)",
    )


def test_states_of_different_options_refuse_to_merge(tmp_path):
    _, shards = _shards(tmp_path, _table(800, 1))
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    run("score", shards[0], *_columns(1), "--save-state", first, "-q")
    run("score", shards[1], *_columns(1), "--eps", "0.01", "--save-state", second, "-q")
    assert_one_line_error(run("merge", first, second), "different options", "eps (1e-06 and 0.01)")
    grouped = tmp_path / "c.json"
    run("score", shards[1], *_columns(1), "--by", "region", "--save-state", grouped, "-q")
    assert_one_line_error(run("merge", first, grouped), 'columns.by ([] and ["region"])')


def test_a_file_that_is_not_a_state_is_one_line(tmp_path):
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"schema": "something else"}')
    assert_one_line_error(run("merge", bogus), "bogus.json", "not a gaussnll state file")
    bogus.write_text("not json")
    assert_one_line_error(run("merge", bogus), "not JSON")
    assert_one_line_error(run("merge", tmp_path / "missing.json"), "cannot read the state")


def test_save_state_must_not_be_another_output(tmp_path):
    _, shards = _shards(tmp_path, _table(100, 1))
    same = tmp_path / "out"
    result = run("score", shards[0], *_columns(1), "--junit-xml", same, "--save-state", same)
    assert_one_line_error(result, "--save-state", "is the same file as --junit-xml")
    result = run("score", shards[0], *_columns(1), "--save-state", shards[0])
    assert_one_line_error(result, "--save-state", "is the input file")
    assert pq.read_table(shards[0]).num_rows == 25


def test_python_state_round_trip_and_merge(tmp_path):
    torch.manual_seed(0)
    mean, target = torch.randn(500, 2).double(), torch.randn(500, 2).double()
    var = torch.rand(500, 2).double() + 0.1
    whole = Scorer(device="cpu")
    whole.update(mean, target, var)
    parts = []
    for rows in (slice(0, 123), slice(123, 500)):
        part = Scorer(device="cpu")
        part.update(mean[rows], target[rows], var[rows])
        path = tmp_path / f"{rows.start}.json"
        save_state(part.state_dict(), str(path))
        parts.append(load_state(str(path)))
    merged = merge_states(parts)
    assert_same_report(merged.report().to_dict(), whole.report().to_dict())
    reference = torch.nn.functional.gaussian_nll_loss(mean, target, var).item()
    assert merged.report().nll == pytest.approx(reference, rel=1e-12)


def test_an_empty_shard_merges_as_nothing():
    empty = Scorer(device="cpu")
    full = Scorer(device="cpu")
    full.update(torch.zeros(3), torch.ones(3), torch.ones(3))
    merged = merge_states([empty.state_dict(), full.state_dict()])
    assert merged.report().rows == 3


def test_every_sums_of_a_state_component_is_carried_without_new_code():
    """The serialisation walks the state: a component that a later module adds is carried."""
    state = ScoreState(1, torch.device("cpu"), levels=(0.5,), grouped=True)
    state.calibration.extra = [Sums((3,), torch.device("cpu"), grouped=True)]  # type: ignore[union-attr]
    state.reserve(2)
    state.calibration.extra[0].reserve(2)  # type: ignore[union-attr]
    state.calibration.extra[0].add(  # type: ignore[union-attr]
        torch.tensor([[1.0, 2, 3], [4, 5, 6]]), Placement(torch.tensor([0, 1]))
    )
    arrays = portable.exported(state)
    assert "calibration.extra.0:total.total" in arrays
    copy = ScoreState(1, torch.device("cpu"), levels=(0.5,), grouped=True)
    copy.calibration.extra = [Sums((3,), torch.device("cpu"), grouped=True)]  # type: ignore[union-attr]
    portable.restore(copy, arrays)
    restored = copy.calibration.extra[0]  # type: ignore[union-attr]
    assert restored.value().tolist() == [[5.0, 7.0, 9.0]]
    assert restored.value(by_group=True).tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    plain = ScoreState(1, torch.device("cpu"), levels=(0.5,), grouped=True)
    with pytest.raises(ValueError, match=r"calibration\.extra\.0"):
        portable.restore(plain, arrays)


def test_the_docs_recipe_merges_shards_into_the_whole_files_report(tmp_path):
    page = [block for block in blocks(ROOT / "docs" / "scale-out.md") if block.reason is None]
    (loop,) = (b.code for b in page if b.language == "bash" and "--save-state" in b.code)
    (merge,) = (
        command
        for block in page
        if block.language == "console"
        for command, _ in console_commands(block.code)
        if command.startswith("gaussnll merge states/")
    )
    recipe = f"{loop}\n{merge}\n"
    whole = pq.read_table(ROOT / "sample_data" / "preds.parquet")
    (tmp_path / "shards").mkdir()
    for k, start in enumerate(range(0, whole.num_rows, 3_000)):
        pq.write_table(whole.slice(start, 3_000), tmp_path / "shards" / f"part{k}.parquet")
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", recipe], cwd=tmp_path, env=environment, timeout=300
    )
    assert done.returncode in (0, 1)  # the recipe's check may fail; the report must be whole
    assert (tmp_path / "out" / "merged.xml").exists()
    states = sorted(str(path) for path in (tmp_path / "states").glob("*.json"))
    assert len(states) == 4
    merged = run("merge", *states, "--json")
    direct = run("score", ROOT / "sample_data" / "preds.parquet", "--by", "region", "--json")
    assert_same_report(json.loads(merged.stdout), json.loads(direct.stdout))


def test_states_whose_group_keys_differ_in_type_refuse_to_merge(tmp_path):
    states = []
    for name, keys in (("numbers", [1, 2]), ("text", ["x", "y"])):
        frame = pd.DataFrame(
            {"mean": [0.0, 0.0], "var": [1.0, 1.0], "target": [0.5, 0.2], "g": keys}
        )
        states.append(tmp_path / f"{name}.json")
        score(frame, columns=ColumnSpec(by=("g",)), device="cpu", state_to=states[-1])
    result = run("merge", *states)
    assert_one_line_error(result, "text.json", "'g'", "holds text", "numbers.json")


def _map_by_region(tmp_path: Path) -> Path:
    """A map by region that has not seen ``east`` (its rows are counted as unseen)."""
    scales = {"north": 2.0, "south": 0.5}
    groups = [{"key": {"region": r}, "scale": [s], "rows": 1} for r, s in scales.items()]
    recalibration = {"schema": "gaussnll.recalibration/1", "eps": 1e-6, "outputs": ["mean0"],
                     "scale": [1.5], "by": ["region"], "groups": groups}  # fmt: skip
    path = tmp_path / "map.json"
    path.write_text(json.dumps(recalibration))
    return path


@pytest.mark.parametrize("suffix", [".json", ".arrow"])
def test_merge_reports_the_recalibration_map_its_states_applied(tmp_path, suffix):
    whole, shards = _shards(tmp_path, _table(1_000, 1))
    args = [*_columns(1), "--recalibration", _map_by_region(tmp_path)]
    states = []
    for shard in shards:
        states.append(tmp_path / f"{shard.stem}{suffix}")
        result = run("score", shard, *args, "--save-state", states[-1], "-q")
        assert result.exit_code == 0, result.output
    got = json.loads(run("merge", *states, "--json").stdout)
    want = json.loads(run("score", whole, *args, "--json").stdout)
    assert want["recalibration"]["unseen_rows"] > 0  # the east rows
    assert got["recalibration"] == want["recalibration"]
    assert_same_report(got, want)
    assert (
        merge_states([load_state(str(s)) for s in states]).report().recalibration
        == (want["recalibration"])
    )


def test_merge_writes_the_score_page(tmp_path):
    whole, shards = _shards(tmp_path, _table(900, 1))
    args = [*_columns(1), "--by", "region"]
    states = _scored_shards(tmp_path, shards, args)
    merged_page, scored_page = tmp_path / "merged.html", tmp_path / "scored.html"
    merged = run("merge", *states, "--html", merged_page, "-q")
    assert merged.exit_code == 0, merged.output
    assert run("score", whole, *args, "--html", scored_page, "-q").exit_code == 0
    page, twin = merged_page.read_text(), scored_page.read_text()
    assert "<h1>gaussnll merge</h1>" in page
    assert _headings(page) == _headings(twin)
    assert page.count("<svg") == twin.count("<svg") > 0


def _headings(page: str) -> list[str]:
    return [part.split("</h2>")[0] for part in page.split("<h2>")[1:]]


def test_merge_reports_its_own_wall_time(tmp_path, monkeypatch):
    """``seconds`` is the merge's wall time, from before the first state is read."""
    _, shards = _shards(tmp_path, _table(400, 1))
    states = _scored_shards(tmp_path, shards[:2], _columns(1))
    delay = 0.15
    load = merging.load_state

    def slow_load(path: str) -> dict:
        time.sleep(delay)
        return load(path)

    monkeypatch.setattr(merging, "load_state", slow_load)
    report = merge_state_files([str(state) for state in states]).report()
    assert report.seconds >= 2 * delay
    assert report.rows_per_second == report.rows / report.seconds


def test_a_malformed_recalibration_record_is_one_line(tmp_path):
    _, shards = _shards(tmp_path, _table(200, 1))
    state = tmp_path / "s.json"
    args = [*_columns(1), "--recalibration", _map_by_region(tmp_path), "--save-state", state]
    assert run("score", shards[0], *args, "-q").exit_code == 0
    document = json.loads(state.read_text())
    east = pq.read_table(shards[0]).column("region").to_pylist().count("east")
    assert document["recalibration"] == {"file": str(tmp_path / "map.json"), "unseen_rows": east}
    document["recalibration"]["unseen_rows"] = -1
    state.write_text(json.dumps(document))
    assert_one_line_error(run("merge", state), str(state), "'recalibration' must hold")


def test_a_state_given_twice_is_refused_naming_both_files_unless_allowed(tmp_path):
    _, shards = _shards(tmp_path, _table(1_200, 1))
    states = _scored_shards(tmp_path, shards, _columns(1))
    arrow = tmp_path / "shard0.arrow"
    run("score", shards[0], *_columns(1), "--save-state", arrow, "-q")
    copy = tmp_path / "copy.json"
    copy.write_bytes(states[0].read_bytes())
    for given, later, earlier in (
        ([states[0], states[0]], states[0], states[0]),
        ([states[0], copy], copy, states[0]),
        ([arrow, *states], states[0], arrow),  # the same state in the other form
    ):
        result = run("merge", *given, "--json")
        assert_one_line_error(result, f"{later} holds the same state as {earlier} (300 rows of")
    once = json.loads(run("merge", *states, "--json").stdout)
    allowed = run("merge", *states, states[0], "--allow-duplicates", "--json")
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout)["rows"] == once["rows"] + 300 == 1_500


def test_older_states_without_an_identity_still_merge(tmp_path):
    _, shards = _shards(tmp_path, _table(800, 1))
    (state,) = _scored_shards(tmp_path, shards[:1], _columns(1))
    document = json.loads(state.read_text())
    assert set(document["identity"]) == {"input", "rows", "digest"}
    assert document["identity"]["rows"] == 200
    del document["identity"]
    state.write_text(json.dumps(document))
    result = run("merge", state, state, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 400


def test_a_state_changed_after_it_was_written_is_refused(tmp_path):
    _, shards = _shards(tmp_path, _table(800, 1))
    (state,) = _scored_shards(tmp_path, shards[:1], _columns(1))
    document = json.loads(state.read_text())
    document["sums"]["_loss:total.total"]["values"][0] += 1.0
    state.write_text(json.dumps(document))
    assert_one_line_error(run("merge", state), state.name, "does not match its identity's digest")


def test_an_empty_shard_leaves_an_empty_state_that_merges_as_nothing(tmp_path):
    table = _table(900, 1)
    _, shards = _shards(tmp_path, table)
    empty = tmp_path / "empty.parquet"
    pq.write_table(table.slice(0, 0), empty)
    args = [*_columns(1), "--by", "region"]
    states = _scored_shards(tmp_path, shards, args)
    state = tmp_path / "empty.json"
    result = run("score", empty, *args, "--save-state", state, "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 0
    document = load_state(str(state))
    assert document["outputs"] is None and document["groups"] == []
    merged = run("merge", states[0], state, *states[1:], "--json")
    assert_same_report(
        json.loads(merged.stdout), json.loads(run("merge", *states, "--json").stdout)
    )
    assert json.loads(run("merge", state, state, "--json").stdout)["rows"] == 0
    state.unlink()
    needs_rows = run("score", empty, *args, "--save-state", state, "--check", "nll <= 1")
    assert_one_line_error(needs_rows, "empty.parquet", "no data rows", "'nll <= 1' needs rows")
    assert not state.exists()
    counted = run("score", empty, *args, "--save-state", state, "--check", "rows >= 1", "-q")
    assert counted.exit_code == 1 and state.exists()
    assert_one_line_error(run("score", empty, *args), "empty.parquet", "no data rows")
