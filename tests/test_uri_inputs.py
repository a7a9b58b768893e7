"""Inputs named by URI: ``file://`` through pyarrow's local filesystem, ``memory://`` (filled
here) through fsspec, give the reports, progress, listings and errors of the plain paths."""

from __future__ import annotations

import glob
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import (
    RUN_KEYS,
    assert_one_line_error,
    assert_same_report,
    make_predictions,
    write_table,
)
from test_faults_inputs import _arrow_cut_short, _footer_claims_more_rows
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import ScoreOptions, resolve_source, score
from gaussnll.core.errors import InputError
from gaussnll.core.io.filesystems import local_path
from gaussnll.core.run.distributed import partitions

fsspec = pytest.importorskip("fsspec")
memory_filesystems = pytest.importorskip("fsspec.implementations.memory")


def run(*args: object):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def report_of(*args: object) -> dict:
    """The JSON report of a CLI run, without the keys that describe the run (path, timings)."""
    result = run(*args, "--json", "-q")
    assert result.exit_code == 0, result.output
    return _without_run_keys(json.loads(result.stdout))


def _without_run_keys(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_run_keys(v) for k, v in value.items() if k not in RUN_KEYS}
    if isinstance(value, list):
        return [_without_run_keys(v) for v in value]
    return value


def uri(path: Path) -> str:
    return path.absolute().as_uri()


def _table(rows: int, seed: int) -> pa.Table:
    columns = make_predictions(rows, seed=seed)
    region = np.random.default_rng(seed).choice(["n", "s", "e"], size=rows)
    return pa.table({"id": np.arange(rows) + 10_000 * seed, **columns, "region": region})


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Files of each format in a tree whose names need care: spaces, brackets, ``=``, dots."""
    root = tmp_path / "data set"
    for relative, seed in [
        ("a.parquet", 0),
        ("region=n [v2]/b.parquet", 1),
        ("region=n [v2]/deeper/c.parquet", 2),
        (".hidden/d.parquet", 3),
        ("other/e.parquet", 4),
    ]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        write_table(_table(600 + 100 * seed, seed), root / relative)
    (root / "notes.txt").write_text("not data")
    return root


@pytest.fixture
def memory() -> Iterator[str]:
    """A fresh folder of fsspec's in-memory filesystem (shared by the process), removed after."""
    filesystem = fsspec.filesystem("memory")
    folder = f"/gaussnll-{uuid.uuid4().hex}"
    yield folder
    if filesystem.exists(folder):
        filesystem.rm(folder, recursive=True)


def put(memory_folder: str, name: str, local: Path) -> str:
    """Copy a local file into the in-memory filesystem; its ``memory://`` URI."""
    fsspec.filesystem("memory").pipe(f"{memory_folder}/{name}", local.read_bytes())
    return f"memory://{memory_folder}/{name}"


@pytest.mark.parametrize(
    "name",
    ["a.parquet", "region=n [v2]", "region=n [v2]/", "", "**/*.parquet", "*/b.parquet"],
)
def test_a_file_uri_gives_the_plain_paths_report(dataset, name):
    plain = f"{dataset}/{name}" if name else str(dataset)
    named = uri(dataset) + "/" + name.replace(" ", "%20").replace("[", "%5B").replace("]", "%5D")
    args = ["--by", "region", "--chunk-size", "250"]
    assert report_of("score", named, *args) == report_of("score", plain, *args)


@pytest.mark.parametrize(
    "pattern",
    [
        "*.parquet",
        "**/*.parquet",
        "*/*.parquet",
        "region=n*/**/?.parquet",
        ".*/*",
        "[ab].*",
        "**/c*",
    ],
)
def test_a_uri_glob_matches_what_glob_matches(dataset, pattern):
    """``[`` is written ``%5B`` in a URI, and still a wildcard, as in a path."""
    encoded = pattern.replace("[", "%5B").replace("]", "%5D")
    named = resolve_source(f"{uri(dataset)}/{encoded}").files
    expected = sorted(
        path for path in glob.glob(f"{dataset}/{pattern}", recursive=True) if os.path.isfile(path)
    )
    assert [local_path(file) for file in named] == expected
    assert all(file.startswith("file:///") for file in named)


def test_a_uri_directory_lists_the_files_the_local_directory_does(dataset):
    listed = resolve_source(uri(dataset)).files
    assert [local_path(file) for file in listed] == list(resolve_source(str(dataset)).files)
    assert f"{uri(dataset)}/region=n%20%5Bv2%5D/b.parquet" in listed


def test_a_listed_file_keeps_the_uris_query(dataset):
    listed = resolve_source(f"{uri(dataset / 'other')}?anything=1").files
    assert listed == (f"{uri(dataset / 'other')}/e.parquet?anything=1",)
    assert report_of("score", listed[0]) == report_of("score", dataset / "other" / "e.parquet")


def _scored(path: str) -> tuple[dict, list[tuple[int | None, ...]]]:
    """A report without its run keys, and every progress call, in chunks of 700 rows."""
    calls: list[tuple[int | None, ...]] = []
    options = ScoreOptions(device="cpu", chunk_size=700)
    report = score(path, options, on_progress=lambda *done: calls.append(done))
    return _without_run_keys(report.to_dict()), calls


@pytest.mark.parametrize("name", ["p.csv", "p.csv.gz", "p.csv.bz2", "p.arrow", "p.parquet"])
def test_each_format_through_a_uri_has_the_plain_files_numbers_and_progress(tmp_path, name):
    local = write_table(_table(3_000, 5), tmp_path / name)
    named, plain = _scored(uri(local)), _scored(str(local))
    assert named == plain
    if ".csv" in name:  # bytes of the (compressed) file
        assert named[1][-1][3] == local.stat().st_size
    else:
        assert named[1][-1][:2] == (3_000, 3_000)


def test_an_fsspec_filesystem_gives_the_local_files_report(tmp_path, memory):
    local = write_table(_table(2_000, 6), tmp_path / "preds.parquet")
    named = put(memory, "preds.parquet", local)
    args = ["--by", "region", "--levels", "0.5,0.9"]
    assert report_of("score", named, *args) == report_of("score", local, *args)


def test_an_fsspec_directory_of_compressed_csv(tmp_path, memory):
    for k in range(2):
        local = write_table(_table(900, k), tmp_path / f"p{k}.csv.gz")
        put(memory, f"csv/p{k}.csv.gz", local)
    plain = report_of("score", f"{tmp_path}/*.csv.gz")
    assert report_of("score", f"memory://{memory}/csv") == plain
    assert report_of("score", f"memory://{memory}/csv/*.gz") == plain


def test_compare_reads_an_fsspec_uri_as_the_local_file(tmp_path, memory):
    baseline = write_table(_table(1_500, 7), tmp_path / "baseline.parquet")
    candidate_table = _table(1_500, 7)
    candidate_table = candidate_table.set_column(
        candidate_table.schema.get_field_index("var"),
        "var",
        pa.array(make_predictions(1_500)["var"]),
    )
    candidate = write_table(candidate_table.take(np.arange(1_500)[::-1]), tmp_path / "c.parquet")
    named = put(memory, "baseline.parquet", baseline)
    args = ["--id-col", "id"]
    got = report_of("compare", named, put(memory, "c.parquet", candidate), *args)
    want = report_of("compare", baseline, candidate, *args)
    assert got == want
    assert got["rows"] == 1_500


def test_recalibrate_and_rescale_read_uris(tmp_path, memory):
    local = write_table(_table(1_200, 8), tmp_path / "cal.csv")
    named = put(memory, "cal.csv", local)
    maps = {}
    for source in (named, local):
        maps[source] = tmp_path / f"map{len(maps)}.json"
        done = run("recalibrate", source, "--by", "region", "-o", maps[source], "-q")
        assert done.exit_code == 0, done.output
    fitted = [json.loads(path.read_text()) for path in maps.values()]
    for document in fitted:
        document.pop("fitted_on")
    assert fitted[0] == fitted[1]
    outputs = [tmp_path / "from_uri.csv", tmp_path / "from_file.csv"]
    for source, output in zip((named, local), outputs, strict=True):
        done = run("rescale", maps[local], source, "-o", output, "-q")
        assert done.exit_code == 0, done.output
    assert outputs[0].read_bytes() == outputs[1].read_bytes()


def test_an_error_in_the_data_names_the_uri_as_given(tmp_path, memory):
    local = tmp_path / "bad.parquet"
    columns = make_predictions(500)
    columns["var"][321] = -1.0
    pq.write_table(pa.table(columns), local)
    named = put(memory, "bad.parquet", local)
    result = run("score", named)
    assert_one_line_error(result, f"{named}: column 'var': row 322")
    missing = run("score", named, "--var-col", "variance")
    assert_one_line_error(missing, f"{named}: column 'variance': no such column")


def _gzip_cut_short(folder: Path, _monkeypatch: object) -> list[str]:
    local = write_table(_table(2_000, 9), folder / "p.csv.gz")
    local.write_bytes(local.read_bytes()[: local.stat().st_size // 2])
    return ["score", str(local)]


@pytest.mark.parametrize("damage", [_footer_claims_more_rows, _arrow_cut_short, _gzip_cut_short])
def test_a_damaged_file_through_a_uri_is_the_local_files_error(tmp_path, memory, damage):
    command, local = damage(tmp_path, None)[:2]
    named = put(memory, Path(local).name, Path(local))
    through_uri = run(command, named)
    assert_one_line_error(through_uri, named)
    assert through_uri.stderr == run(command, local).stderr.replace(local, named)


@pytest.mark.parametrize(
    ("path", "fragments"),
    [
        ("file:///nonexistent-gaussnll/p.parquet", ["gaussnll/p.parquet: no such file"]),
        ("file:///nonexistent-gaussnll/*.parquet", ["the pattern matches no file"]),
        ("memory:///nonexistent-gaussnll/p.parquet", ["no such file or directory"]),
        ("nosuch://b/p.parquet", ["nosuch://b/p.parquet: unknown URI scheme 'nosuch'"]),
        ("file:///tmp/a b.parquet", ["Cannot parse URI", "write a space as %20"]),
        ("hdfs://127.0.0.1:1/p.parquet", ["hdfs://127.0.0.1:1/p.parquet: "]),
        ("file://sample_data/preds.parquet", [
            "file://sample_data/preds.parquet: a file:// URI takes an absolute path",
            "file:///home/me/preds.parquet (three slashes", "without file://",
        ]),
        ("file://", ["file://: a file:// URI takes an absolute path"]),
    ],
)  # fmt: skip
def test_a_uri_that_cannot_be_read_is_one_line(path, fragments):
    assert_one_line_error(run("score", path), *fragments)


def test_an_empty_uri_directory_or_one_of_unknown_files_is_one_line(tmp_path, memory):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    put(memory, "d/notes.txt", tmp_path / "notes.txt")
    put(memory, "mixed/a.csv", write_table(_table(10, 0), tmp_path / "a.csv"))
    put(memory, "mixed/b.parquet", write_table(_table(10, 0), tmp_path / "b.parquet"))
    assert_one_line_error(run("score", uri(tmp_path / "empty")), "holds no .parquet, .csv")
    assert_one_line_error(run("score", f"memory://{memory}/d"), "holds no .parquet, .csv")
    assert_one_line_error(run("score", f"memory://{memory}/d/notes.txt"), "unknown file type")
    assert_one_line_error(run("score", f"memory://{memory}/mixed"), "mixes file formats")


def test_an_unreachable_object_store_is_one_line(monkeypatch):
    """Credentials given, so no instance-metadata lookup delays the refused connection."""
    for name, value in [
        ("AWS_ACCESS_KEY_ID", "gaussnll-test"),
        ("AWS_SECRET_ACCESS_KEY", "gaussnll-test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]:
        monkeypatch.setenv(name, value)
    endpoint = "s3://bucket/p.parquet?endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1"
    assert_one_line_error(run("score", endpoint), f"{endpoint}: ", "127.0.0.1:1")


class _DeniedFileSystem(memory_filesystems.MemoryFileSystem):
    """An in-memory filesystem that lists its files and refuses to read them."""

    protocol = "gaussnll-denied"

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix(f"{cls.protocol}://"))

    def _open(self, path, mode="rb", **kwargs):
        if "r" in mode:
            raise PermissionError(f"Access denied: {path}")
        return super()._open(path, mode, **kwargs)


def test_a_file_without_permission_is_one_line(tmp_path):
    fsspec.register_implementation(_DeniedFileSystem.protocol, _DeniedFileSystem, clobber=True)
    filesystem = _DeniedFileSystem()
    folder = f"/gaussnll-{uuid.uuid4().hex}"
    filesystem.pipe(
        f"{folder}/p.parquet", write_table(_table(10, 0), tmp_path / "p.parquet").read_bytes()
    )
    try:
        named = f"gaussnll-denied://{folder}/p.parquet"
        assert_one_line_error(run("score", named), f"{named}: Access denied")
    finally:
        filesystem.rm(folder, recursive=True)


def test_without_fsspec_an_unknown_scheme_says_so(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "fsspec", None)
    monkeypatch.setitem(__import__("sys").modules, "fsspec.core", None)
    with pytest.raises(
        InputError, match=r"unknown URI scheme 'memory'.*\(fsspec is not installed\)"
    ):
        resolve_source("memory:///gaussnll-without-fsspec/p.parquet")


def test_outputs_stay_local_files(tmp_path):
    local = write_table(_table(100, 0), tmp_path / "p.parquet")
    result = run("score", uri(local), "--per-row", "s3://bucket/rows.parquet")
    assert_one_line_error(result, "--per-row 's3://bucket/rows.parquet' is a URI")


def test_an_output_onto_a_file_uri_input_is_refused(tmp_path):
    local = write_table(_table(100, 0), tmp_path / "p.csv")
    fitted = tmp_path / "map.json"
    assert run("recalibrate", local, "-o", fitted, "-q").exit_code == 0
    before = local.read_bytes()
    result = run("rescale", fitted, uri(local), "-o", local)
    assert_one_line_error(result, "is the input file")
    assert local.read_bytes() == before


def test_dask_partitions_carry_the_uri_and_score_as_the_single_process(dataset):
    pytest.importorskip("distributed")
    named = f"{uri(dataset)}/**/*.parquet"
    parts = partitions(named)
    assert {part.path for part in parts} == set(resolve_source(named).files)
    assert all(part.path == part.name for part in parts)
    args = ["--by", "region"]
    on_dask = report_of("score", named, *args, "--dask", "local", "--dask-workers", "2")
    assert_same_report(on_dask, report_of("score", f"{dataset}/**/*.parquet", *args))


@pytest.mark.parametrize("suffix", [".json", ".arrow"])
def test_merge_reads_state_files_named_by_uri(tmp_path, memory, suffix):
    data = write_table(_table(900, 5), tmp_path / "p.parquet")
    states = []
    for half in range(2):
        part = write_table(
            pq.read_table(data).slice(450 * half, 450), tmp_path / f"h{half}.parquet"
        )
        state = tmp_path / f"s{half}{suffix}"
        assert run("score", part, "--save-state", state, "-q").exit_code == 0
        states.append(state)
    whole = report_of("score", data)
    merged = report_of("merge", states[0].as_uri(), put(memory, f"s1{suffix}", states[1]))
    assert_same_report(merged, whole)
    missing = run("merge", f"memory://{memory}/nowhere{suffix}")
    assert_one_line_error(missing, "nowhere", "cannot read the state")
