"""State files as Arrow IPC (chosen by name, read by content) and the group limit of a merge."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_one_line_error, assert_same_report, make_predictions
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import ColumnSpec, ScoreOptions, Scorer, load_state, merge_states, score
from gaussnll.core.run.state_document import NOT_SHAPING, options_document
from gaussnll.core.state import portable

ARROW_MAGIC = b"ARROW1"
SUFFIXES = [".arrow", ".json", ".ipc", ".feather"]


def run(*args: object):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def _shard(folder: Path, name: str, rows: int, seed: int, keys: list[str]) -> Path:
    """Predictions whose ``key`` column cycles through ``keys``."""
    columns = make_predictions(rows, seed=seed)
    table = pa.table({**columns, "key": [keys[k % len(keys)] for k in range(rows)]})
    path = folder / name
    pq.write_table(table, path)
    return path


def _report(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("options", [[], ["--by", "key", "--full"], ["--no-calibration"]])
def test_arrow_and_json_states_mix_in_a_merge_to_the_whole_files_report(tmp_path, options):
    shards = [_shard(tmp_path, f"s{k}.parquet", 400 + 50 * k, k, ["a", "b", "c"]) for k in range(4)]
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.concat_tables([pq.read_table(shard) for shard in shards]), whole)
    states = []
    for k, (shard, suffix) in enumerate(zip(shards, SUFFIXES, strict=True)):
        state = tmp_path / f"state{k}{suffix}"
        assert run("score", shard, *options, "--save-state", state, "-q").exit_code == 0
        assert (state.read_bytes()[:6] == ARROW_MAGIC) == (suffix != ".json")
        states.append(state)
    merged = _report(run("merge", *states, "--json", "-q"))
    assert_same_report(merged, _report(run("score", whole, *options, "--json", "-q")))


def test_an_arrow_state_holds_the_json_states_document_in_plain_arrow(tmp_path):
    shard = _shard(tmp_path, "s.parquet", 300, 0, ["x", "y"])
    as_json, as_arrow = tmp_path / "s.json", tmp_path / "s.arrow"
    for state in (as_json, as_arrow):
        assert run("score", shard, "--by", "key", "--save-state", state, "-q").exit_code == 0
    document = json.loads(as_json.read_text())
    table = pa.ipc.open_file(pa.OSFile(str(as_arrow))).read_all()  # any Arrow reader
    header = json.loads(table.schema.metadata[b"gaussnll.state"])
    assert header["schema"] == document["schema"] == "gaussnll.state/4"
    assert header["encoding"] == "arrow"
    for key in ("options", "outputs", "members", "groups", "max_groups"):
        assert header[key] == document[key], key
    assert table.num_rows == 1 and table.column_names == list(document["sums"])
    for name, encoded in document["sums"].items():
        assert header["sums"][name] == {"dtype": encoded["dtype"], "shape": encoded["shape"]}
        values = table.column(name)[0].values.to_numpy()
        assert values.dtype == encoded["dtype"]
        np.testing.assert_array_equal(values, np.asarray(encoded["values"], dtype=values.dtype))


def test_a_state_is_read_by_its_content_whatever_its_name(tmp_path):
    shard = _shard(tmp_path, "s.parquet", 300, 0, ["x"])
    arrow, plain = tmp_path / "s.arrow", tmp_path / "s.json"
    for state in (arrow, plain):
        run("score", shard, "--save-state", state, "-q")
    misnamed = [tmp_path / "arrow.json", tmp_path / "json.feather"]
    shutil.copy(arrow, misnamed[0])
    shutil.copy(plain, misnamed[1])
    # one shard's state in two forms: the same state, so merged twice only when allowed
    want = _report(run("merge", arrow, plain, "--allow-duplicates", "--json", "-q"))
    got = _report(run("merge", *misnamed, "--allow-duplicates", "--json", "-q"))
    assert_same_report(got, want)


def test_the_python_api_writes_arrow_by_name_or_when_asked(tmp_path):
    columns = make_predictions(200, seed=2)
    table = pa.table(columns)
    by_name, asked = tmp_path / "state.feather", tmp_path / "state.bin"
    score(table, state_to=str(by_name))
    score(table, state_to=str(asked), state_format="arrow")
    for path in (by_name, asked):
        assert path.read_bytes()[:6] == ARROW_MAGIC
        restored = Scorer.from_state(load_state(str(path)))
        assert restored.report().nll == pytest.approx(score(table).nll, rel=1e-15)


def test_a_loaded_arrow_state_owns_its_sums(tmp_path):
    """The arrays read from the file are read-only views of Arrow's buffers: the scorer copies
    them once into tables without spare rows, and adding to it leaves the document alone."""
    columns = make_predictions(300, seed=4)
    table = pa.table({**columns, "key": np.arange(300) % 7})
    path = tmp_path / "state.arrow"
    score(table, columns=ColumnSpec(by=("key",)), state_to=str(path))
    document = load_state(str(path))
    assert not any(array.flags.writeable for array in document["sums"].values())
    before = {name: array.copy() for name, array in document["sums"].items()}
    scorer = Scorer.from_state(document)
    assert scorer.state is not None
    tables = [
        table
        for sums in portable.named_sums(scorer.state).values()
        if sums.by_group is not None
        for table in sums.by_group.ranges()
    ]
    assert tables and all(table.shape[0] == 7 for table in tables)
    # views of the first 7 rows: their storage holds no spare row either
    assert all(table.untyped_storage().nbytes() == table.nbytes for table in tables)
    scorer.merge(Scorer.from_state(document))
    for name, array in document["sums"].items():
        np.testing.assert_array_equal(array, before[name])
    assert scorer.report().rows == 600


def test_an_arrow_file_that_is_not_a_state_is_one_line(tmp_path):
    predictions = tmp_path / "preds.arrow"
    with pa.OSFile(str(predictions), "wb") as sink:
        table = pa.table(make_predictions(10, seed=0))
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    assert_one_line_error(
        run("merge", predictions), "preds.arrow", "not a gaussnll state file", "gaussnll.state"
    )
    shard = _shard(tmp_path, "s.parquet", 300, 0, ["x"])
    state = tmp_path / "s.arrow"
    run("score", shard, "--save-state", state, "-q")
    cut = tmp_path / "cut.arrow"
    cut.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    assert_one_line_error(run("merge", cut), "cut.arrow", "not a gaussnll state file")


def test_states_record_the_group_limit_they_were_scored_with(tmp_path):
    """Four groups a shard, eight in all: the states' limit of 6, not the default, stops the
    merge; the largest recorded applies once every state is in (whatever comes first); a
    limit given to merge replaces them."""
    low = [
        _shard(tmp_path, "a.parquet", 200, 0, ["a", "b", "c", "d"]),
        _shard(tmp_path, "b.parquet", 200, 1, ["e", "f", "g", "h"]),
    ]
    high = _shard(tmp_path, "c.parquet", 50, 2, ["a"])
    states = []
    for shard, limit in ((low[0], 6), (low[1], 6), (high, 10)):
        state = tmp_path / f"{shard.stem}.arrow"
        result = run("score", shard, "--by", "key", "--max-groups", limit, "--save-state", state)
        assert result.exit_code == 0, result.output
        states.append(state)
    assert load_state(str(states[0]))["max_groups"] == 6
    limited = run("merge", states[0], states[1], "-q")
    assert_one_line_error(limited, "--max-groups is 6", "(8 found so far)")
    merged = _report(run("merge", *states, "--json", "-q"))
    assert len(merged["groups"]) == 8 and merged["config"]["settings"]["max_groups"] == 10
    assert_one_line_error(run("merge", *states, "--max-groups", "7"), "--max-groups is 7")
    assert _report(run("merge", *states[:2], "--max-groups", "8", "--json", "-q"))["rows"] == 400


def test_old_states_without_a_group_limit_load_under_the_memory_budget(tmp_path):
    shard = _shard(tmp_path, "s.parquet", 300, 0, ["x", "y"])
    state = tmp_path / "s.json"
    run("score", shard, "--by", "key", "--max-groups", "5", "--save-state", state, "-q")
    document = json.loads(state.read_text())
    del document["max_groups"]
    state.write_text(json.dumps(document))
    assert Scorer.from_state(load_state(str(state))).options.max_groups is None  # the default
    assert _report(run("merge", state, "--json", "-q"))["rows"] == 300
    document["max_groups"] = "many"
    state.write_text(json.dumps(document))
    assert_one_line_error(run("merge", state), "'max_groups' must be a positive whole number")


def test_merge_states_in_python_takes_a_limit(tmp_path):
    columns = make_predictions(100, seed=5)
    table = pa.table({**columns, "key": np.arange(100) % 4})
    path = tmp_path / "s.json"
    score(table, columns=ColumnSpec(by=("key",)), state_to=str(path))
    document = load_state(str(path))
    assert len(merge_states([document, document], allow_duplicates=True).report().groups) == 4
    with pytest.raises(Exception, match="max_groups is 3"):
        merge_states([document], max_groups=3)


def test_an_arrow_stream_of_the_state_loads_too(tmp_path):
    """The IPC stream format, its row after an empty batch, is the same state."""
    shard = _shard(tmp_path, "s.parquet", 300, 0, ["x", "y"])
    state = tmp_path / "s.arrow"
    run("score", shard, "--by", "key", "--save-state", state, "-q")
    table = pa.ipc.open_file(pa.OSFile(str(state))).read_all()
    stream = tmp_path / "s.stream"
    with pa.OSFile(str(stream), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.slice(0, 0))
        writer.write_table(table)
    assert stream.read_bytes()[:4] == b"\xff\xff\xff\xff"
    want = _report(run("merge", state, "--json", "-q"))
    assert_same_report(_report(run("merge", stream, "--json", "-q")), want)


def test_every_option_that_shapes_a_state_is_recorded_in_it():
    """An option added to ScoreOptions is either recorded in state files or declared as not
    shaping the sums: a state could otherwise merge with one of other options."""
    fields = {field.name for field in dataclasses.fields(ScoreOptions)}
    # (the bootstrap's options only with intervals: older states, without them, still merge)
    recorded = set(options_document(ScoreOptions())) | set(options_document(ScoreOptions(ci=0.9)))
    assert fields - recorded == NOT_SHAPING
    assert recorded <= fields


def test_each_recorded_option_round_trips_through_a_state_file(tmp_path):
    options = ScoreOptions(
        full=True,
        eps=1e-5,
        levels=(0.3, 0.7),
        pit_bins=7,
        uncertainty_bins=4,
        metrics=("nll", "crps", "coverage"),
        group_metrics=("nll", "crps"),
        columns=ColumnSpec(by="g"),
    )
    frame = {**make_predictions(200, seed=4), "g": np.arange(200) % 3}
    score(pa.table(frame), options, state_to=str(tmp_path / "s.json"))
    restored = Scorer.from_state(load_state(str(tmp_path / "s.json"))).options
    assert options_document(restored) == options_document(options)


FIXTURES = Path(__file__).parent / "fixtures"


def test_a_version_3_state_keeps_the_group_families_its_default_chose(tmp_path):
    """States of version 3 (``gaussnll.state/3``, the halves of sample_data/preds.parquet by
    region, scored before the groups' default left the calibration curves out) still merge:
    their groups keep both curves, with the numbers of the whole file scored with them; a
    state of today's default is refused beside them, naming the option that differs."""
    olds = [FIXTURES / f"state3_part{part}.json" for part in (1, 2)]
    assert all(json.loads(path.read_text())["schema"] == "gaussnll.state/3" for path in olds)
    merged = merge_states([load_state(str(path)) for path in olds]).report()
    whole = pq.read_table(Path(__file__).parents[1] / "sample_data" / "preds.parquet")
    curves = ("nll", "accuracy", "var_scale", "crps", "coverage", "calibration", "one_sided")
    expected = score(whole, device="cpu", columns=ColumnSpec(by="region"), group_metrics=curves)
    assert_same_report(merged.to_dict(), expected.to_dict())
    assert merged.groups[0].report.calibration.mace is not None
    new = tmp_path / "new.json"
    score(whole.slice(0, 10), device="cpu", columns=ColumnSpec(by="region"), state_to=new)
    written = json.loads(new.read_text())
    assert written["schema"] == "gaussnll.state/4"  # the groups' families written out
    assert written["options"]["group_metrics"] == [
        "nll",
        "accuracy",
        "var_scale",
        "crps",
        "coverage",
    ]
    result = run("merge", olds[0], new)
    assert_one_line_error(result, "group_metrics")


def test_a_version_3_state_of_a_quantile_model_keeps_its_groups_quantiles():
    """Version 3's default gave a quantile model's groups its quantiles family too
    (tests/fixtures/state3_quantiles.json: sample_data/quantiles.parquet by region, scored
    before the groups' default changed): such a state still loads, with its groups' numbers."""
    old = FIXTURES / "state3_quantiles.json"
    assert json.loads(old.read_text())["options"]["group_metrics"] is None
    merged = merge_states([load_state(str(old))]).report()
    data = Path(__file__).parents[1] / "sample_data" / "quantiles.parquet"
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    columns = ColumnSpec(target="target", quantiles=("q05", "q25", "q50", "q75", "q95"))
    expected = score(
        str(data),
        device="cpu",
        quantiles=levels,
        columns=dataclasses.replace(columns, by=("region",)),
    )
    assert_same_report(merged.to_dict(), expected.to_dict())
    assert merged.groups[0].report.quantiles is not None
