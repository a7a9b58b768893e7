"""Inputs that used to end in a traceback, a wrong exit code or a silently partial score: each
ends in exit 2 with one line naming what was expected, or is scored in full."""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from gaussnll.cli.app import app, main
from gaussnll.core import ColumnSpec, InputError, OptionError, ScoreOptions, compare, score
from gaussnll.core.state.score_state import ScoreState

BASE = {"mean": [1.0, 2.0, 3.0], "target": [1.5, 2.0, 2.5], "var": [1.0, 1.0, 1.0]}


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def write(path: Path, **columns) -> str:
    """A Parquet file of the base predictions plus ``columns`` (replacing base ones)."""
    pq.write_table(pa.table({**BASE, **columns}), path)
    return str(path)


def assert_one_line(result, code: int, words: list[str]) -> None:
    """Exit ``code``, exactly one ``gaussnll:`` line on stderr holding every word, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gaussnll: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@dataclass(frozen=True)
class Fault:
    """A command line made in ``tmp_path`` (``monkeypatch`` for faults that need one) and the
    words its one error line must hold."""

    make: Callable[[Path, pytest.MonkeyPatch], list[str]]
    words: list[str]


def _empty_lists(tmp, _mp):
    empty = pa.array([[], [], []], pa.list_(pa.float64()))
    path = write(tmp / "e.parquet", mean=empty, target=empty, var=empty)
    return ["score", path]


def _nested_by(kind):
    def make(tmp, _mp):
        values = [{"a": 1}, {"a": 2}, {"a": 1}] if kind == "struct" else [[1], [2], [1]]
        return ["score", write(tmp / "p.parquet", g=values), "--by", "g"]

    return make


def _by_int_then_text(tmp, _mp):
    (tmp / "d").mkdir()
    write(tmp / "d" / "a.parquet", g=[1, 2, 1])
    write(tmp / "d" / "b.parquet", g=["x", "y", "x"])
    return ["score", str(tmp / "d"), "--by", "g"]


def _compare_list_ids(tmp, _mp):
    path = write(tmp / "p.parquet", id=[[1], [2], [3]])
    return ["compare", path, path, "--id-col", "id"]


def _compare_nan_ids(tmp, _mp):
    path = write(tmp / "p.parquet", id=[1.0, float("nan"), 3.0])
    return ["compare", path, path, "--id-col", "id"]


def _compare_id_types(tmp, _mp):
    return [
        "compare",
        write(tmp / "a.parquet", id=[1, 2, 3]),
        write(tmp / "b.parquet", id=["1", "2", "3"]),
        "--id-col",
        "id",
    ]


def _compare_mean_list_then_number(tmp, _mp):
    (tmp / "d").mkdir()
    write(tmp / "d" / "a.parquet", id=[1, 2, 3])
    write(tmp / "d" / "b.parquet", id=[4, 5, 6], mean=[[1.0], [2.0], [3.0]])
    return ["compare", str(tmp / "d"), str(tmp / "d"), "--id-col", "id"]


def _nested_per_row_id(kind, suffix):
    def make(tmp, _mp):
        values = [{"a": 1}, {"a": 2}, {"a": 3}] if kind == "struct" else [[1], [2], [3]]
        path = write(tmp / "p.parquet", id=values)
        return ["score", path, "--id-col", "id", "--per-row", str(tmp / f"rows.{suffix}")]

    return make


def _per_row_id_types(tmp, _mp):
    (tmp / "d").mkdir()
    write(tmp / "d" / "a.parquet", id=[1, 2, 3])
    write(tmp / "d" / "b.parquet", id=["4", "5", "6"])
    return ["score", str(tmp / "d"), "--id-col", "id", "--per-row", str(tmp / "rows.parquet")]


def _per_row_id_overflow(tmp, _mp):
    (tmp / "d").mkdir()
    write(tmp / "d" / "a.parquet", id=pa.array([1, 2, 3], pa.int32()))
    write(tmp / "d" / "b.parquet", id=pa.array([4, 5, 2**40], pa.int64()))
    return ["score", str(tmp / "d"), "--id-col", "id", "--per-row", str(tmp / "rows.parquet")]


def _pyproject(text: bytes):
    def make(tmp, mp):
        (tmp / "pyproject.toml").write_bytes(text)
        mp.chdir(tmp)
        return ["score", write(tmp / "p.parquet")]

    return make


def _binary_config(tmp, _mp):
    (tmp / "c.bin").write_bytes(bytes(range(256)))
    return ["score", write(tmp / "p.parquet"), "--config", str(tmp / "c.bin")]


def _huge_chunk_size(tmp, _mp):
    return ["score", write(tmp / "p.parquet"), "--chunk-size", "99999999999999999999"]


def _too_many_groups(tmp, _mp):
    n = 300
    pq.write_table(
        pa.table({"mean": [0.0] * n, "target": [0.5] * n, "var": [1.0] * n, "g": range(n)}),
        tmp / "g.parquet",
    )
    return ["score", str(tmp / "g.parquet"), "--by", "g", "--max-groups", "100"]


def _footer_claims_more_rows(tmp, _mp):
    """A footer whose row count (3, the first i64 field after the schema) says 4."""
    data = Path(write(tmp / "p.parquet")).read_bytes()
    footer_start = len(data) - 8 - struct.unpack("<I", data[-8:-4])[0]
    at = data.index(b"\x16\x06", footer_start)  # field 3, i64, zigzag(3)
    (tmp / "p.parquet").write_bytes(data[:at] + b"\x16\x08" + data[at + 2 :])
    assert pq.read_metadata(tmp / "p.parquet").num_rows == 4
    return ["score", str(tmp / "p.parquet")]


def _parquet_ends_early(tmp, mp):
    """The reader stops after the first batch, as when the file is cut while read."""
    original = pq.ParquetFile.iter_batches

    def first_batch_only(self, *args, **kwargs):
        yield next(iter(original(self, *args, **kwargs)))

    mp.setattr(pq.ParquetFile, "iter_batches", first_batch_only)
    return ["score", write(tmp / "p.parquet"), "--chunk-size", "2"]


def _arrow_cut_short(tmp, _mp):
    feather.write_feather(pa.table(BASE), tmp / "p.arrow")
    data = (tmp / "p.arrow").read_bytes()
    (tmp / "p.arrow").write_bytes(data[: len(data) // 2])
    return ["score", str(tmp / "p.arrow")]


FAULTS = {
    "empty-lists": Fault(
        _empty_lists, ["e.parquet", "column 'mean'", "row 1", "at least one value"]
    ),
    "by-struct": Fault(_nested_by("struct"), ["p.parquet", "column 'g'", "single values"]),
    "by-list": Fault(_nested_by("list"), ["p.parquet", "column 'g'", "single values"]),
    "by-int-then-text": Fault(
        _by_int_then_text, ["b.parquet", "column 'g'", "a.parquet", "integers in every file"]
    ),
    "compare-list-ids": Fault(_compare_list_ids, ["column 'id'", "single values"]),
    "compare-nan-ids": Fault(_compare_nan_ids, ["column 'id'", "row 2", "missing id"]),
    "compare-id-types": Fault(_compare_id_types, ["b.parquet", "column 'id'", "one kind"]),
    "compare-columns-do-not-combine": Fault(
        _compare_mean_list_then_number, ["d: ", "do not combine", "mean"]
    ),
    "per-row-list-id": Fault(_nested_per_row_id("list", "parquet"), ["column 'id'", "single"]),
    "per-row-struct-id-csv": Fault(_nested_per_row_id("struct", "csv"), ["column 'id'"]),
    "per-row-id-types": Fault(_per_row_id_types, ["b.parquet", "column 'id'", "integers"]),
    "per-row-id-overflow": Fault(
        _per_row_id_overflow, ["cannot write", "column 'id'", "int64", "int32"]
    ),
    "pyproject-not-utf8": Fault(_pyproject(b"\xff\xfe[tool]\n"), ["pyproject.toml", "UTF-8"]),
    "pyproject-tool-5": Fault(_pyproject(b"tool = 5\n"), ["pyproject.toml", "'tool'", "table"]),
    "pyproject-by-1": Fault(
        _pyproject(b"[tool.gaussnll]\nby = [1]\n"), ["pyproject.toml", "by", "strings"]
    ),
    "config-binary": Fault(_binary_config, ["c.bin", "not valid TOML"]),
    "chunk-size-overflow": Fault(_huge_chunk_size, ["--chunk-size", "between 1 and"]),
    "max-regression-infinite": Fault(
        lambda tmp, _mp: ["compare", *[write(tmp / "p.parquet")] * 2, "--max-regression", "1e999"],
        ["--max-regression must be a finite number"],
    ),
    "too-many-groups": Fault(
        _too_many_groups,
        [
            "--max-groups is 100",
            "300 found so far",
            "368 bytes with the group metrics nll,accuracy",
        ],
    ),
    "parquet-footer-lies": Fault(
        _footer_claims_more_rows, ["p.parquet", "footer records 4 rows", "hold 3"]
    ),
    "parquet-ends-early": Fault(_parquet_ends_early, ["p.parquet", "read 2 rows", "records 3"]),
    "arrow-cut-short": Fault(_arrow_cut_short, ["p.arrow"]),
}


@pytest.mark.parametrize("name", FAULTS)
def test_fault_is_one_line_and_exit_2(tmp_path, monkeypatch, name):
    fault = FAULTS[name]
    result = run(*fault.make(tmp_path, monkeypatch), "--quiet")
    assert_one_line(result, 2, fault.words)
    assert result.stdout == ""


@pytest.mark.parametrize(
    "values",
    [
        pa.array([1, 2, 2**64 - 1], pa.uint64()),
        pa.array([1, -(2**62) - 1, 2**62 + 1], pa.int64()),  # beyond 2**53: no exact float64
    ],
    ids=["uint64", "int64-beyond-2^53"],
)
def test_large_integers_are_rounded_as_torch_converts_them(tmp_path, values):
    path = write(tmp_path / "p.parquet", mean=values)
    report = score(path, device="cpu")
    mean = torch.from_numpy(values.to_numpy().astype(np.float64))
    target, var = (torch.tensor(BASE[name]) for name in ("target", "var"))
    expected = F.gaussian_nll_loss(mean, target, var).item()
    assert report.nll == pytest.approx(expected, rel=1e-12)


def test_id_width_may_change_between_files(tmp_path):
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "a.parquet", id=pa.array([1, 2, 3], pa.int32()))
    write(tmp_path / "d" / "b.parquet", id=pa.array([4, 5, 6], pa.int64()))
    out = tmp_path / "rows.parquet"
    result = run("score", str(tmp_path / "d"), "--id-col", "id", "--per-row", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    assert pq.read_table(out).column("id").to_pylist() == [1, 2, 3, 4, 5, 6]


def test_compare_by_id_across_files_of_different_widths(tmp_path):
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "a.parquet", id=pa.array([1, 2, 3], pa.int32()))
    write(tmp_path / "d" / "b.parquet", id=[4, 5, 6], mean=pa.array([1, 2, 3], pa.int64()))
    both = str(tmp_path / "d")
    report = compare(both, both, columns=ColumnSpec(id="id"), device="cpu")
    assert (report.paired.rows, report.paired.delta_nll) == (6, 0.0)


def test_symlinked_subdirectory_is_read_and_loops_end(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    write(tmp_path / "data" / "a.parquet")
    write(tmp_path / "elsewhere" / "b.parquet")
    (tmp_path / "data" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "back").symlink_to(tmp_path / "data")  # a loop
    (tmp_path / "elsewhere" / "self").symlink_to(tmp_path / "elsewhere")
    report = score(str(tmp_path / "data"), device="cpu")
    assert report.rows == 6


def test_an_existing_name_with_brackets_is_read_literally(tmp_path):
    literal = write(tmp_path / "model[v2].parquet")
    pq.write_table(
        pa.table({name: values[:1] for name, values in BASE.items()}), tmp_path / "model2.parquet"
    )
    assert score(literal, device="cpu").rows == 3  # as a glob it would match model2.parquet
    assert score(str(tmp_path / "model[2].parquet"), device="cpu").rows == 1  # still a glob


@pytest.mark.parametrize("stream_format", [False, True], ids=["file", "stream"])
def test_arrow_files_are_read_without_a_memory_map(tmp_path, monkeypatch, stream_format):
    """A memory map of a file truncated while read kills the process (SIGBUS)."""
    table = pa.table(BASE)
    path = tmp_path / "p.arrow"
    with pa.OSFile(str(path), "wb") as sink:
        opener = pa.ipc.new_stream if stream_format else pa.ipc.new_file
        with opener(sink, table.schema) as writer:
            writer.write_table(table)

    def no_mmap(*args, **kwargs):
        raise AssertionError("Arrow files must not be memory-mapped")

    monkeypatch.setattr(pa, "memory_map", no_mmap)
    result = run("score", str(path), "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert '"rows": 3' in result.stdout


def test_max_groups_default_bound_and_cost():
    assert ScoreOptions().max_groups is None  # as many as fit the memory budget
    with pytest.raises(OptionError, match="max_groups"):
        ScoreOptions(max_groups=0)
    frame = {"mean": [0.0] * 4, "target": [0.5] * 4, "var": [1.0] * 4, "g": [1, 2, 3, 3]}
    table = pa.table(frame)
    assert len(score(table, device="cpu", max_groups=3, columns=ColumnSpec(by="g")).groups) == 3
    with pytest.raises(OptionError, match="4 found so far"):
        score(
            pa.table({**frame, "g": [1, 2, 3, 4]}),
            device="cpu",
            max_groups=3,
            columns=ColumnSpec(by="g"),
        )


def test_the_default_group_limit_follows_the_memory_budget(monkeypatch, tmp_path):
    """Without --max-groups the groups whose sums fit the budget are allowed: a budget of
    three groups' sums stops a fourth with one line (exit 2) naming the budget; the same
    budget without groups, or with --max-groups given, does not."""
    frame = {"mean": [0.0] * 4, "target": [0.5] * 4, "var": [1.0] * 4, "g": [1, 2, 3, 3]}
    path = tmp_path / "g.parquet"
    pq.write_table(pa.table({**frame, "g": [1, 2, 3, 4]}), path)
    size = ScoreState(1, torch.device("cpu"), levels=(0.5,), grouped=True).bytes_per_group
    monkeypatch.setenv("GAUSSNLL_GROUP_MEMORY", str(3 * size))
    grouped = {"device": "cpu", "levels": (0.5,), "columns": ColumnSpec(by="g")}
    assert len(score(pa.table(frame), **grouped).groups) == 3
    result = run("score", str(path), "--by", "g", "--levels", "0.5", "-q")
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "--max-groups is 3 by default (the groups whose sums fit" in line, line
    assert "GAUSSNLL_GROUP_MEMORY" in line and "(4 found so far)" in line, line
    given = run("score", str(path), "--by", "g", "--levels", "0.5", "--max-groups", "4", "-q")
    assert given.exit_code == 0, given.stderr
    assert run("score", str(path), "-q").exit_code == 0


def test_group_cost_is_the_grouped_state_size():
    """The bytes per group named in the --max-groups message are what the state allocates."""
    for levels in (None, (0.5, 0.9)):
        state = ScoreState(2, torch.device("cpu"), levels=levels, grouped=True)
        before = _state_bytes(state)
        state.reserve(100)  # capacity: the groups asked for (then at least doubling)
        assert _state_bytes(state) - before == 100 * state.bytes_per_group


def _state_bytes(state: ScoreState) -> int:
    seen, total = set(), 0
    stack = [state]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            total += item.nbytes
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif hasattr(item, "__dict__"):
            stack.extend(vars(item).values())
    return total


# The standard streams as a shell leaves them, and the entry point's own flush: ``main`` runs in
# a forked child (torch already imported, so each costs milliseconds, not an interpreter start).


def _main(args: list[str], stdout: int | None, *, stderr_open: bool = True) -> tuple[int, str]:
    """Run ``gaussnll ARGS -q`` through ``main`` with fd 1 as ``stdout`` (None: closed) and fd
    2 a pipe (or closed); its exit code and stderr."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the streams as Python sets them up at start
        try:
            torch.set_num_threads(1)  # a forked child must not wait on the parent's thread pool
            os.dup2(write_end, 2) if stderr_open else os.close(2)
            os.dup2(stdout, 1) if stdout is not None else os.close(1)
            sys.stdout = open(1, "w", closefd=False) if stdout is not None else None  # noqa: SIM115
            sys.stderr = open(2, "w", buffering=1, closefd=False) if stderr_open else None  # noqa: SIM115
            sys.argv = ["gaussnll", *args, "-q"]
            main()
        finally:
            os._exit(99)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as errors:
        stderr = errors.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stderr


FORMATS = [[], ["--json"], ["--format", "markdown"], ["--reduction", "none"]]
FORMAT_IDS = ["table", "json", "markdown", "rows"]
LONG = ["--by", "mean", "--json"]  # with a group per row: more than stdout's buffer holds


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", [*FORMATS, LONG], ids=[*FORMAT_IDS, "json-long"])
def test_stdout_on_a_full_disk_is_exit_2(tmp_path, fmt):
    rows = 50 if fmt is LONG else 3
    path = tmp_path / "p.parquet"
    pq.write_table(
        pa.table({"mean": np.arange(rows) * 1.0, "target": [0.5] * rows, "var": [1.0] * rows}), path
    )
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        code, stderr = _main(["score", str(path), *fmt], full)
    finally:
        os.close(full)
    assert (code, stderr.splitlines()) == (
        2,
        ["gaussnll: error: cannot write <stdout>: [Errno 28] No space left on device"],
    )


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_stdout_closed_by_its_reader_is_141(tmp_path, fmt):
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        code, stderr = _main(["score", write(tmp_path / "p.parquet"), *fmt], write_end)
    finally:
        os.close(write_end)
    assert (code, stderr) == (141, "")


def test_closed_stdout_is_exit_2(tmp_path):
    code, stderr = _main(["score", write(tmp_path / "p.parquet")], None)
    assert (code, stderr.splitlines()) == (
        2,
        ["gaussnll: error: cannot write <stdout>: it is closed"],
    )


@pytest.mark.parametrize(("args", "expected"), [([], 0), (["--eps", "-1"], 2)])
def test_closed_stderr_keeps_the_exit_code(tmp_path, args, expected):
    read_end, write_end = os.pipe()
    code, _ = _main(
        ["score", write(tmp_path / "p.parquet"), "--json", *args], write_end, stderr_open=False
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as report:
        written = report.read()
    assert code == expected
    assert (b'"rows": 3' in written) == (expected == 0)


def test_closed_stdin_is_an_input_error(monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)  # as Python leaves it for `gaussnll score - <&-`
    with pytest.raises(InputError, match="<stdin>: stdin is closed; expected CSV"):
        score("-", device="cpu")
