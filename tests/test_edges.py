"""Reliability at the edges (issue #29): sums beyond float64, ensembles of empty lists and
directories with an empty first file, paths and credentials on the terminal, key columns of
bytes, and columns that rescale carries through."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, make_predictions, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import ColumnSpec, InputError, RecalibrationMap, Scorer, redacted, score
from gaussnll.core.io.readers import scoring_request
from gaussnll.core.io.sources import resolve_source
from gaussnll.core.options import ScoreOptions

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")  # a raw control character (not a newline)


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def scored_json(*args: str) -> dict:
    result = run("score", *args, "--json", "-q")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def table_of(rows: int, seed: int = 0, **extra: object) -> pa.Table:
    return pa.table({**make_predictions(rows, seed=seed), **extra})


# --- class 4: sums that overflow --------------------------------------------------------------


@pytest.mark.parametrize("output", [(), ("--json",), ("--format", "markdown")])
def test_weights_whose_sum_overflows_are_one_line(tmp_path, output):
    path = tmp_path / "w.parquet"
    pq.write_table(table_of(50, w=np.full(50, 1e308)), path)
    result = run("score", str(path), "--weight-col", "w", "-q", *output)
    assert_one_line_error(result, str(path), "column 'w'", "weights add up to inf")


def test_a_weighted_loss_beyond_float64_is_one_line_not_inf(tmp_path):
    columns = make_predictions(50, seed=2)
    columns["mean"][3] = 1e150  # a finite loss of about 1e300, weighed 1e10
    weight = np.ones(50)
    weight[3] = 1e10
    path = tmp_path / "w.parquet"
    pq.write_table(pa.table({**columns, "w": weight}), path)
    for output in ((), ("--json",)):
        result = run("score", str(path), "--weight-col", "w", "-q", *output)
        assert_one_line_error(result, str(path), "column 'w'", "not finite", "float64")


def test_compare_whose_paired_sums_overflow_is_one_line(tmp_path):
    columns = make_predictions(20, seed=3)
    weight = np.full(20, 1e200)  # every report fits: nll_sum is about 1e255
    baseline, candidate = tmp_path / "baseline.parquet", tmp_path / "candidate.parquet"
    pq.write_table(pa.table({**columns, "w": weight}), baseline)
    columns["mean"][2] = 1e52  # d of about 5e103: Σw·d² is beyond float64
    pq.write_table(pa.table({**columns, "w": weight}), candidate)
    result = run("compare", str(baseline), str(candidate), "--weight-col", "w", "-q", "--json")
    assert_one_line_error(result, str(candidate), "column 'w'", "delta_nll_std", "float64")


def test_unweighted_losses_that_add_up_beyond_float64_are_one_line(tmp_path):
    path = tmp_path / "big.parquet"
    n = 5  # each loss 5e307, finite; their sum is not
    pq.write_table(
        pa.table({"mean": np.full(n, 1e154), "target": np.zeros(n), "var": np.ones(n)}), path
    )
    assert_one_line_error(run("score", str(path), "-q"), str(path), "nll", "float64")
    # propagate keeps torch's answer: the mean of these losses overflows in torch too
    result = run("score", str(path), "-q", "--json", "--nan-policy", "propagate")
    assert result.exit_code == 0, result.output
    reference = F.gaussian_nll_loss(
        torch.full((n,), 1e154, dtype=torch.float64),
        torch.zeros(n, dtype=torch.float64),
        torch.ones(n, dtype=torch.float64),
    )
    assert math.isinf(reference.item()) and json.loads(result.stdout)["nll"] is None


def test_huge_weights_whose_sums_fit_give_the_unweighted_means(tmp_path):
    path = tmp_path / "w.parquet"
    pq.write_table(table_of(200, seed=4, w=np.full(200, 1e300)), path)
    weighted = scored_json(str(path), "--weight-col", "w")
    plain = scored_json(str(path))
    assert weighted["weight_sum"] == pytest.approx(2e302, rel=1e-12)
    for key in ("nll", "nll_mean"):
        assert weighted[key] == pytest.approx(plain[key], rel=1e-12)
    for key in ("crps", "var_scale", "mace", "sharpness"):
        assert weighted["calibration"][key] == pytest.approx(plain["calibration"][key], rel=1e-12)


@pytest.mark.parametrize("tiny", [1e-310, 5e-324])
def test_weights_below_float64s_normal_range_are_one_line(tmp_path, tiny):
    weight = np.ones(30)
    weight[17] = tiny  # products with it lose their digits: 5e-324 everywhere gave nll 1.0
    path = tmp_path / "w.parquet"
    pq.write_table(table_of(30, seed=3, w=weight), path)
    result = run("score", str(path), "--weight-col", "w", "-q")
    assert_one_line_error(result, str(path), "column 'w'", "row 18", "2.225e-308", repr(tiny))


def test_tiny_normal_weights_give_the_unweighted_means(tmp_path):
    path = tmp_path / "w.parquet"
    pq.write_table(table_of(200, seed=4, w=np.full(200, 1e-300)), path)
    weighted, plain = scored_json(str(path), "--weight-col", "w"), scored_json(str(path))
    assert weighted["nll"] == pytest.approx(plain["nll"], rel=1e-12)
    assert weighted["calibration"]["crps"] == pytest.approx(plain["calibration"]["crps"], rel=1e-12)


def test_a_perfect_model_is_scored_though_its_nll_at_var_scale_is_minus_infinity(tmp_path):
    path = tmp_path / "exact.parquet"
    ones = np.ones(5)
    pq.write_table(pa.table({"mean": ones, "target": ones, "var": ones}), path)
    payload = scored_json(str(path))
    assert payload["nll"] == 0.0 and payload["calibration"]["var_scale"] == 0.0


def ensemble_file(tmp_path: Path) -> Path:
    path = tmp_path / "ensemble.parquet"
    lists = pa.list_(pa.float64())
    table = pa.table(
        {
            "mean": pa.array([[1.0, 2.0], [0.5, 0.1], [0.0, -1.0]], lists),
            "var": pa.array([[1.0, 2.0], [1.0, 0.5], [0.3, 0.7]], lists),
            "target": [1.0, 2.0, -0.5],
        }
    )
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("huge", ["1e308,1e308", "1.7e308,1.7e308", "5e-324,5e-324"])
def test_member_weights_at_the_ends_of_float64_normalise_as_equal_ones(tmp_path, huge):
    path = ensemble_file(tmp_path)
    extreme = scored_json(str(path), "--ensemble", "--member-weights", huge)
    equal = scored_json(str(path), "--ensemble", "--member-weights", "1,1")
    assert extreme["ensemble"]["weights"] == [0.5, 0.5]
    assert extreme["nll"] == equal["nll"]
    assert extreme["ensemble"]["mixture_nll"] == equal["ensemble"]["mixture_nll"]


def test_member_weights_1e308_and_1_keep_their_ratio(tmp_path):
    path = ensemble_file(tmp_path)
    payload = scored_json(str(path), "--ensemble", "--member-weights", "1e308,1e300")
    assert payload["ensemble"]["weights"] == pytest.approx([1 / (1 + 1e-8), 1e-8 / (1 + 1e-8)])


# --- class 6: ensembles at their edges --------------------------------------------------------


EMPTY_MEMBERS = [
    (".parquet", pa.list_(pa.float64()), [[], []], "member per row"),
    (".arrow", pa.list_(pa.float64()), [[], []], "member per row"),
    (".arrow", pa.list_(pa.float64(), 0), [[], []], "member per row"),  # Parquet: unreadable
    (".parquet", pa.list_(pa.list_(pa.float64())), [[[], []], [[], []]], "value per member"),
]


@pytest.mark.parametrize(("suffix", "mean_type", "values", "what"), EMPTY_MEMBERS)
def test_empty_member_lists_are_one_line(tmp_path, suffix, mean_type, values, what):
    path = tmp_path / f"empty{suffix}"
    table = pa.table(
        {
            "mean": pa.array(values, mean_type),
            "var": pa.array(values, mean_type),
            "target": [1.0, 2.0],
        }
    )
    write_table(table, path)
    result = run("score", str(path), "--ensemble", "-q")
    assert_one_line_error(result, str(path), "column 'mean'", "row 1", f"at least one {what}")


def ensemble_rows(rows: int, members: int = 6) -> list[dict]:
    return [{"mean": [0.1] * members, "var": [1.0] * members, "target": 0.0} for _ in range(rows)]


ENSEMBLE_SCHEMA = pa.schema(
    [("mean", pa.list_(pa.float64())), ("var", pa.list_(pa.float64())), ("target", pa.float64())]
)


def test_an_empty_first_file_does_not_set_the_batch_size_nor_the_row_numbers(tmp_path):
    folder = tmp_path / "ensemble"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist([], schema=ENSEMBLE_SCHEMA), folder / "a.parquet")
    pq.write_table(
        pa.Table.from_pylist(ensemble_rows(2000), schema=ENSEMBLE_SCHEMA), folder / "b.parquet"
    )
    last = ensemble_rows(5)
    last[3]["var"] = [1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    pq.write_table(pa.Table.from_pylist(last, schema=ENSEMBLE_SCHEMA), folder / "c.parquet")
    result = run("score", str(folder), "--ensemble", "-q", "--chunk-size", "600")
    assert_one_line_error(result, "c.parquet", "column 'var[1]'", ": row 4:")

    options = ScoreOptions(ensemble=True, chunk_size=600)
    assert scoring_request(resolve_source(str(folder)), options).chunk_size == 100  # 600 / 6


def test_missing_first_lists_do_not_set_the_batch_size(tmp_path):
    rows = [{"mean": None, "var": None, "target": 0.0}] * 1500 + ensemble_rows(10, members=4)
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=ENSEMBLE_SCHEMA), path)
    options = ScoreOptions(ensemble=True, chunk_size=1000, nan_policy="skip")
    assert scoring_request(resolve_source(str(path)), options).chunk_size == 250


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ensemble_rows_are_numbered_within_each_file(tmp_path, workers):
    folder = tmp_path / "ensemble"
    folder.mkdir()
    for name, rows in (("a", 700), ("b", 450), ("c", 9)):
        data = ensemble_rows(rows, members=3)
        if name == "c":
            data[6]["mean"] = [0.1, float("nan"), 0.1]
        pq.write_table(
            pa.Table.from_pylist(data, schema=ENSEMBLE_SCHEMA), folder / f"{name}.parquet"
        )
    result = run(
        "score", str(folder), "--ensemble", "-q", "--chunk-size", "64", "--workers", workers
    )
    assert_one_line_error(result, "c.parquet", "column 'mean[1]'", ": row 7:")


# --- class 7: terminal and secrets ------------------------------------------------------------

OSC_TITLE = "\x1b]0;x\x07"


def test_recalibrate_and_rescale_show_paths_literally(tmp_path):
    data = tmp_path / f"in{OSC_TITLE}.parquet"
    pq.write_table(table_of(300, seed=5), data)
    mapping = tmp_path / f"map{OSC_TITLE}.json"
    result = run("recalibrate", str(data), "-o", str(mapping))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b" in result.stdout  # the title wraps at the table's width
    rescaled = tmp_path / f"out{OSC_TITLE}.parquet"
    result = run("rescale", str(mapping), str(data), "-o", str(rescaled))
    assert result.exit_code == 0, result.output
    assert not CONTROL.search(result.stderr), result.stderr
    assert "wrote 300 rescaled rows" in result.stderr and "\\x1b]0;x\\x07" in result.stderr


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("s3://KEY:SECRET@bucket/p.parquet", "s3://***@bucket/p.parquet"),
        ("tcp://user:pass@host:8786", "tcp://***@host:8786"),
        ("https://u:p@host/a@b.csv?x=1", "https://***@host/a@b.csv?x=1"),
        ("https://u:p@ss@host/x", "https://***@host/x"),
        ("s3://b/x?region=eu&secret_key=abc", "s3://b/x?region=eu&secret_key=***"),
        (
            "at tcp://u:pw@h:1 (invalid address 'u:pw@h:1')",
            "at tcp://***@h:1 (invalid address '***@h:1')",
        ),
        ("s3://bucket/a@b.parquet", "s3://bucket/a@b.parquet"),
        ("mailto:a@example.com and C:\\data\\x.csv", "mailto:a@example.com and C:\\data\\x.csv"),
        ("s3://@bucket/x @ y", "s3://@bucket/x @ y"),
    ],
)
def test_redacted_hides_the_userinfo_of_uris_only(text, shown):
    assert redacted(text) == shown


@pytest.mark.parametrize(
    "uri",
    [
        "nosuch://KEY:SECRET@bucket/p.parquet",
        "file://KEY:SECRET@/nowhere/p.parquet",
        "https://KEY:SECRET@127.0.0.1:1/p.parquet",
    ],
)
@pytest.mark.parametrize("debug", [False, True])
def test_credentials_in_an_input_uri_are_never_shown(uri, debug):
    result = run("score", uri, "-q", *(["--debug"] if debug else []))
    assert result.exit_code == 2, result.output
    assert "SECRET" not in result.output and "KEY" not in result.output
    assert "***@" in result.stderr


def test_credentials_stay_out_of_errors_and_reports_of_the_library(tmp_path):
    error = InputError("cannot read", path="s3://KEY:SECRET@bucket/p.parquet", row=3)
    assert str(error) == "s3://***@bucket/p.parquet: row 3: cannot read"
    scorer = Scorer(device="cpu")
    columns = make_predictions(20)
    scorer.update(*(torch.from_numpy(columns[name]) for name in ("mean", "target", "var")))
    report = scorer.report("s3://KEY:SECRET@bucket/p.parquet")
    assert report.path == "s3://***@bucket/p.parquet"
    assert "SECRET" not in json.dumps(report.to_dict())


def test_a_map_keeps_no_credentials_of_the_file_it_was_fitted_on():
    fitted = RecalibrationMap(
        scale=(1.5,), outputs=("mean",), eps=1e-6, fitted_on={"path": "s3://K:S@b/p", "rows": 3}
    )
    assert fitted.to_dict()["fitted_on"] == {"path": "s3://***@b/p", "rows": 3}


def test_the_many_groups_warning_shows_the_column_literally(tmp_path):
    name = "g\x1b[31m"
    rows = 10_001
    path = tmp_path / "many.parquet"
    pq.write_table(table_of(rows, seed=9, **{name: np.arange(rows) * 0.5}), path)
    result = run("score", str(path), "--by", name, "--no-calibration", "-q", "--top", "1")
    assert result.exit_code == 0, result.output
    assert "warning: --by g\\x1b[31m made 10,001 groups" in result.stderr
    assert "--by g\\x1b[31m:q10" in result.stderr
    assert not CONTROL.search(result.stderr)


def test_a_dask_address_with_credentials_is_never_shown(tmp_path):
    pytest.importorskip("distributed")
    path = tmp_path / "p.parquet"
    pq.write_table(table_of(20), path)
    result = run("score", str(path), "-q", "--dask", "tcp://user:hunter2@127.0.0.1:1")
    assert result.exit_code == 2, result.output
    assert "hunter2" not in result.output and "user:" not in result.output


# --- class 8: key columns of bytes ------------------------------------------------------------

KEYS = ["ok", "no", "ok", "ok", "no", "ok"]


def keyed(tmp_path: Path, name: str, keys: pa.Array, seed: int = 6) -> Path:
    path = tmp_path / name
    pq.write_table(table_of(len(keys), seed=seed, g=keys), path)
    return path


def groups_of(payload: dict) -> list[tuple[object, int]]:
    return [(group["key"]["g"], group["rows"]) for group in payload["groups"]]


def test_a_key_column_of_bytes_groups_as_its_text_in_every_path(tmp_path):
    raw = keyed(tmp_path, "bytes.parquet", pa.array([k.encode() for k in KEYS], pa.binary()))
    text = keyed(tmp_path, "text.parquet", pa.array(KEYS))
    as_text = groups_of(scored_json(str(text), "--by", "g"))
    assert as_text == [("no", 2), ("ok", 4)]
    for workers in ("1", "2"):
        assert groups_of(scored_json(str(raw), "--by", "g", "--workers", workers)) == as_text
    states = []
    for source in (raw, text):
        state = tmp_path / f"{source.stem}.state.json"
        assert (
            run("score", str(source), "--by", "g", "-q", "--save-state", str(state)).exit_code == 0
        )
        states.append(str(state))
    assert json.loads(Path(states[0]).read_text())["groups"] == [["ok"], ["no"]]
    merged = run("merge", *states, "--json", "-q")
    assert merged.exit_code == 0, merged.output
    assert groups_of(json.loads(merged.stdout)) == [("no", 4), ("ok", 8)]
    large = keyed(
        tmp_path, "large.parquet", pa.array([k.encode() for k in KEYS], pa.large_binary())
    )
    dictionary = pa.array([k.encode() for k in KEYS], pa.binary()).dictionary_encode()
    coded = keyed(tmp_path, "coded.parquet", dictionary)
    fixed = keyed(tmp_path, "fixed.parquet", pa.array([k.encode() for k in KEYS], pa.binary(2)))
    for source in (large, coded, fixed):
        assert groups_of(scored_json(str(source), "--by", "g")) == as_text
    folder = tmp_path / "mixed"  # a file of bytes and one of text: one run, as merged
    folder.mkdir()
    for source in (raw, text):
        (folder / source.name).write_bytes(source.read_bytes())
    assert groups_of(scored_json(str(folder), "--by", "g")) == [("no", 4), ("ok", 8)]


def test_a_recalibration_map_of_bytes_keys_holds_text_and_applies_to_text(tmp_path):
    raw = keyed(tmp_path, "bytes.parquet", pa.array([k.encode() for k in KEYS], pa.binary()))
    text = keyed(tmp_path, "text.parquet", pa.array(KEYS))
    mapping = tmp_path / "map.json"
    assert run("recalibrate", str(raw), "--by", "g", "-o", str(mapping), "-q").exit_code == 0
    keys = [group["key"] for group in json.loads(mapping.read_text())["groups"]]
    assert sorted(keys, key=str) == [{"g": "no"}, {"g": "ok"}]
    payload = scored_json(str(text), "--recalibration", str(mapping))
    assert payload["recalibration"]["unseen_rows"] == 0


def test_key_bytes_that_are_not_utf8_are_one_line_naming_the_row(tmp_path):
    keys = [b"ok", b"no", b"ok", b"\xff\xfe", b"ok", b"no"]
    path = keyed(tmp_path, "bad.parquet", pa.array(keys, pa.binary()))
    result = run("score", str(path), "--by", "g", "-q", "--chunk-size", "2")
    assert_one_line_error(result, str(path), "column 'g'", "row 4", "not UTF-8")
    with pytest.raises(InputError, match="row 4"):
        score(str(path), columns=ColumnSpec(by=("g",)), device="cpu", chunk_size=2)


# --- class 9: rescale carries every other column ----------------------------------------------


def embedded(tmp_path: Path) -> tuple[Path, Path]:
    rows = 40
    table = table_of(
        rows,
        seed=7,
        embedding=pa.array([[float(i), -float(i)] for i in range(rows)]),
        meta=pa.array([{"a": i, "b": str(i)} for i in range(rows)]),
        tags=pa.array([{"k": i} for i in range(rows)], pa.map_(pa.string(), pa.int64())),
        region=pa.array(["a", "b"] * (rows // 2)),
    )
    data = tmp_path / "embedded.parquet"
    pq.write_table(table, data)
    mapping = tmp_path / "map.json"
    assert run("recalibrate", str(data), "--by", "region", "-o", str(mapping), "-q").exit_code == 0
    return data, mapping


def test_rescale_carries_list_struct_and_map_columns_to_parquet(tmp_path):
    data, mapping = embedded(tmp_path)
    out = tmp_path / "out.parquet"
    result = run("rescale", str(mapping), str(data), "-o", str(out))
    assert result.exit_code == 0, result.output
    before, after = pq.read_table(data), pq.read_table(out)
    assert after.schema == before.schema
    for name in ("mean", "target", "embedding", "meta", "tags", "region"):
        assert after.column(name).equals(before.column(name)), name
    scales = json.loads(mapping.read_text())
    by_key = {group["key"]["region"]: group["scale"][0] for group in scales["groups"]}
    factor = np.array([by_key[k] for k in before.column("region").to_pylist()])
    np.testing.assert_allclose(
        after.column("var").to_numpy(), before.column("var").to_numpy() * factor
    )


def test_rescale_to_csv_of_a_list_column_is_one_line_and_writes_nothing(tmp_path):
    data, mapping = embedded(tmp_path)
    out = tmp_path / "out.csv"
    result = run("rescale", str(mapping), str(data), "-o", str(out))
    assert_one_line_error(result, "out.csv", "column 'embedding'", "CSV", ".parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embedded.parquet", "map.json"]


@pytest.mark.parametrize(
    ("column", "output", "reason"),
    [
        (pa.array([b"a", b"\xff", b"c", b"d"]), "out.csv", "UTF8"),  # CSV holds text
        (pa.array([(1, 2, 3)] * 4, pa.month_day_nano_interval()), "out.parquet", "interval"),
    ],
    ids=["bytes-to-csv", "interval-to-parquet"],
)
def test_rescale_of_values_the_output_cannot_hold_is_one_line(tmp_path, column, output, reason):
    data = tmp_path / "odd.arrow"
    target = np.array([0.5, -0.3, 1.0, 0.2])
    write_table(
        pa.table({"mean": np.zeros(4), "target": target, "var": np.ones(4), "odd": column}), data
    )
    mapping = tmp_path / "map.json"
    assert run("recalibrate", str(data), "-o", str(mapping), "-q").exit_code == 0
    result = run("rescale", str(mapping), str(data), "-o", str(tmp_path / output))
    assert_one_line_error(result, f"cannot write {tmp_path / output}", reason)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.json", "odd.arrow"]


def test_rescale_from_csv_to_csv_carries_the_other_columns_as_written(tmp_path):
    data = tmp_path / "preds.csv"
    rows = ["0.1,0.2,1.0,02134,NA,12345678901234567890123,a", "0.3,-0.2,2.0,00001,,1,b"]
    data.write_text("mean,target,var,zip,note,big,region\n" + "\n".join(rows) + "\n")
    mapping = tmp_path / "map.json"
    assert run("recalibrate", str(data), "--by", "region", "-o", str(mapping), "-q").exit_code == 0
    out = tmp_path / "out.csv"
    assert run("rescale", str(mapping), str(data), "-o", str(out), "-q").exit_code == 0
    names = ("mean", "zip", "note", "big")
    text = {name: pa.string() for name in names}
    read = pacsv.ConvertOptions(column_types=text, strings_can_be_null=False)
    written = pacsv.read_csv(out, convert_options=read)
    assert written.select(names).to_pydict() == {
        "mean": ["0.1", "0.3"],
        "zip": ["02134", "00001"],
        "note": ["NA", ""],
        "big": ["12345678901234567890123", "1"],
    }
    scales = {g["key"]["region"]: g["scale"][0] for g in json.loads(mapping.read_text())["groups"]}
    np.testing.assert_allclose(written.column("var").to_numpy(), [scales["a"], 2 * scales["b"]])
