"""Output files never clobber an input or each other, and are written all or nothing.

Each test breaks when its promise does: the clash checks (through symlinks, hard links,
directories, stdin and stdout), special files written through, the umask and an existing mode
kept, every failure or interruption leaving no output and no temporary, a failed gate writing
everything, and temporaries of a killed run cleaned by the next.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from conftest import assert_one_line_error, make_predictions, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.core import PlannedOutputs, UsageError
from gaussnll.core.io.outputs import partial_name

PASSING = ["--check", "nll <= 10"]
FAILING = ["--check", "nll <= -10"]


def run(*args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def predictions_file(path: Path, rows: int = 200, seed: int = 0) -> Path:
    return write_table(pa.table(make_predictions(rows, seed=seed)), path)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".partial"))


def contents(directory: Path) -> dict[str, bytes]:
    """Every regular file under ``directory`` and its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# --- an output is never an input, the standard output or another output ---------------------


def junit_is_the_input(tmp: Path) -> tuple[list, list[str]]:
    source = predictions_file(tmp / "p.csv")
    return ["score", source, "--junit-xml", source, *PASSING], ["--junit-xml", "the input file"]


def junit_links_to_the_input(tmp: Path) -> tuple[list, list[str]]:
    source = predictions_file(tmp / "p.csv")
    (tmp / "link.xml").symlink_to(source)
    return (
        ["score", source, "--junit-xml", tmp / "link.xml", *PASSING],
        ["'" + str(tmp / "link.xml") + "'", f"the input file '{source}'"],
    )


def junit_is_a_file_of_a_directory_input(tmp: Path) -> tuple[list, list[str]]:
    data = tmp / "data"
    data.mkdir()
    predictions_file(data / "a.parquet", seed=1)
    second = predictions_file(data / "b.parquet", seed=2)
    return (
        ["score", data, "--junit-xml", second, *PASSING],
        ["--junit-xml", f"the input file '{second}'"],
    )


def junit_is_a_file_of_a_glob_input(tmp: Path) -> tuple[list, list[str]]:
    first = predictions_file(tmp / "a.parquet", seed=1)
    predictions_file(tmp / "b.parquet", seed=2)
    return (
        ["score", tmp / "*.parquet", "--junit-xml", first, *PASSING],
        [f"the input file '{first}'"],
    )


def per_row_is_a_hard_link_to_the_input(tmp: Path) -> tuple[list, list[str]]:
    source = predictions_file(tmp / "p.csv")
    os.link(source, tmp / "rows.csv")
    return (
        ["score", source, "--per-row", tmp / "rows.csv"],
        ["--per-row", f"the input file '{source}'"],
    )


def junit_is_the_per_row_file(tmp: Path) -> tuple[list, list[str]]:
    source = predictions_file(tmp / "p.csv")
    out = tmp / "out" / "o.csv"
    out.parent.mkdir()
    return (
        ["score", source, "--per-row", out, "--junit-xml", out, *PASSING],
        [f"--junit-xml '{out}' is the same file as --per-row '{out}'"],
    )


def junit_links_to_an_existing_per_row_file(tmp: Path) -> tuple[list, list[str]]:
    source = predictions_file(tmp / "p.csv")
    (tmp / "o.csv").write_text("precious\n")
    (tmp / "j.xml").symlink_to(tmp / "o.csv")
    return (
        ["score", source, "--per-row", tmp / "o.csv", "--junit-xml", tmp / "j.xml", *PASSING],
        ["--junit-xml", "is the same file as --per-row"],
    )


def compare_junit_is_the_baseline(tmp: Path) -> tuple[list, list[str]]:
    baseline = predictions_file(tmp / "a.parquet", seed=1)
    candidate = predictions_file(tmp / "b.parquet", seed=1)
    return (
        ["compare", baseline, candidate, "--junit-xml", baseline, "--max-regression", "1"],
        [f"the input file '{baseline}'"],
    )


def compare_junit_is_the_candidate(tmp: Path) -> tuple[list, list[str]]:
    baseline = predictions_file(tmp / "a.parquet", seed=1)
    candidate = predictions_file(tmp / "b.parquet", seed=1)
    return (
        ["compare", baseline, candidate, "--junit-xml", candidate, "--max-regression", "1"],
        [f"the input file '{candidate}'"],
    )


def junit_is_the_config_file(tmp: Path) -> tuple[list, list[str]]:
    source = predictions_file(tmp / "p.csv")
    config = tmp / "gaussnll.toml"
    config.write_text("eps = 1e-6\n")
    return (
        ["score", source, "--config", config, "--junit-xml", config, *PASSING],
        [f"the input file '{config}'"],
    )


def junit_is_a_directory(tmp: Path) -> tuple[list, list[str]]:
    source = predictions_file(tmp / "p.csv")
    (tmp / "reports").mkdir()
    return (
        ["score", source, "--junit-xml", tmp / "reports", *PASSING],
        ["--junit-xml", "is a directory"],
    )


def html_is_the_per_row_file(tmp: Path) -> tuple[list, list[str]]:
    source = predictions_file(tmp / "p.parquet")
    out = tmp / "o.csv"
    return (
        ["score", source, "--per-row", out, "--html", out],
        [f"--html '{out}' is the same file as --per-row '{out}'"],
    )


def recalibrate_output_is_the_config_file(tmp: Path) -> tuple[list, list[str]]:
    source = predictions_file(tmp / "p.parquet")
    config = tmp / "gaussnll.json"
    config.write_text("")
    return (
        ["recalibrate", source, "--config", config, "-o", config],
        ["--output", "the input file"],
    )


def rescale_output_is_the_input(tmp: Path) -> tuple[list, list[str]]:
    source = predictions_file(tmp / "p.csv")
    fitted = tmp / "map.json"
    fitted.write_text(
        '{"schema": "gaussnll.recalibration/1", "eps": 1e-06, "outputs": ["mean"], '
        '"scale": [2.0], "by": [], "groups": []}'
    )
    return ["rescale", fitted, source, "-o", source], ["--output", "the input file"]


CLASHES: dict[str, Callable[[Path], tuple[list, list[str]]]] = {
    case.__name__: case
    for case in (
        junit_is_the_input,
        junit_links_to_the_input,
        junit_is_a_file_of_a_directory_input,
        junit_is_a_file_of_a_glob_input,
        per_row_is_a_hard_link_to_the_input,
        junit_is_the_per_row_file,
        junit_links_to_an_existing_per_row_file,
        compare_junit_is_the_baseline,
        compare_junit_is_the_candidate,
        junit_is_the_config_file,
        junit_is_a_directory,
        html_is_the_per_row_file,
        recalibrate_output_is_the_config_file,
        rescale_output_is_the_input,
    )
}


@pytest.mark.parametrize("case", CLASHES, ids=list(CLASHES))
def test_a_clashing_output_is_refused_before_any_work(tmp_path, case):
    args, fragments = CLASHES[case](tmp_path)
    before = contents(tmp_path)
    assert_one_line_error(run(*args), "usage error", *fragments)
    assert contents(tmp_path) == before
    assert leftovers(tmp_path) == []


@contextmanager
def descriptor_on(descriptor: int, file: int) -> Iterator[None]:
    """This process's ``descriptor`` (0: stdin, 1: stdout) is the open ``file`` meanwhile."""
    saved = os.dup(descriptor)
    os.dup2(file, descriptor)
    try:
        yield
    finally:
        os.dup2(saved, descriptor)
        os.close(saved)


def test_an_output_on_the_standard_output_file_is_refused(tmp_path):
    """``--per-row out.csv > out.csv``: renaming onto it would lose the report."""
    source = predictions_file(tmp_path / "p.csv")
    out = tmp_path / "rows.csv"
    with out.open("wb") as stdout, descriptor_on(1, stdout.fileno()):
        result = run("score", source, "--per-row", out)
    assert_one_line_error(
        result,
        f"usage error: --per-row '{out}' is the standard output, which carries the report; "
        "choose another path",
    )


def test_an_output_on_the_standard_input_file_is_refused(tmp_path):
    """``score - --per-row p.csv < p.csv``."""
    source = predictions_file(tmp_path / "p.csv")
    before = source.read_bytes()
    with source.open("rb") as stdin, descriptor_on(0, stdin.fileno()):
        result = run("score", "-", "--per-row", source)
    assert_one_line_error(
        result, f"usage error: --per-row '{source}' is the input file '-'; choose another path"
    )
    assert source.read_bytes() == before


# --- special files are written through, never replaced ---------------------------------------


@pytest.mark.parametrize("through", ["path", "symlink"])
def test_dev_null_is_written_through(tmp_path, monkeypatch, through):
    """``--junit-xml /dev/null``, as given or behind a symlink. A regression must not replace
    the machine's /dev/null when the tests run as root: renaming onto /dev is refused here."""
    replace = os.replace

    def guarded_replace(source, target, **kwargs):
        if os.path.realpath(target).startswith("/dev/"):
            raise RuntimeError(f"the test refuses to replace {target}")
        return replace(source, target, **kwargs)

    monkeypatch.setattr(os, "replace", guarded_replace)
    source = predictions_file(tmp_path / "p.csv")
    junit = "/dev/null"
    if through == "symlink":
        junit = tmp_path / "null.xml"
        junit.symlink_to("/dev/null")
    result = run("score", source, "--junit-xml", junit, *PASSING)
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    if through == "symlink":
        assert junit.is_symlink() and os.readlink(junit) == "/dev/null"
    assert not [name for name in os.listdir("/dev") if name.endswith(".partial")]
    assert leftovers(tmp_path) == []


def test_standard_output_on_a_pipe_is_written_through(tmp_path):
    """``--junit-xml /dev/stdout`` on a pipe, behind a symlink (so that a regression cannot
    replace the machine's /dev/stdout): the XML goes down the pipe, the link stays."""
    source = predictions_file(tmp_path / "p.csv")
    link = tmp_path / "stdout.xml"
    link.symlink_to("/dev/stdout")
    read_end, write_end = os.pipe()
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(os.fdopen(read_end, "rb").read()))
    reader.start()
    with descriptor_on(1, write_end):
        os.close(write_end)
        result = run("score", source, "--junit-xml", link, *PASSING)
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert received[0].startswith(b"<?xml") and b'name="nll &lt;= 10"' in received[0]
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", link.name]


def read_fifo_in_background(path: Path) -> tuple[threading.Thread, list[bytes]]:
    os.mkfifo(path)
    received: list[bytes] = []

    def read() -> None:
        with path.open("rb") as fifo:
            received.append(fifo.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, received


@pytest.mark.parametrize("which", ["--junit-xml", "--per-row"])
def test_a_fifo_is_written_through(tmp_path, which):
    source = predictions_file(tmp_path / "p.csv")
    fifo = tmp_path / ("pipe.xml" if which == "--junit-xml" else "pipe.csv")
    reader, received = read_fifo_in_background(fifo)
    result = run("score", source, which, fifo, *PASSING)
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received, "nothing reached the FIFO's reader"
    if which == "--junit-xml":
        assert received[0].startswith(b"<?xml") and b'name="nll &lt;= 10"' in received[0]
    else:
        assert pacsv.read_csv(pa.py_buffer(received[0])).num_rows == 200
    assert leftovers(tmp_path) == []


def test_a_symlinked_output_replaces_its_target_and_keeps_the_link(tmp_path):
    source = predictions_file(tmp_path / "p.csv")
    (tmp_path / "reports").mkdir()
    target = tmp_path / "reports" / "j.xml"
    target.write_text("old\n")
    link = tmp_path / "latest.xml"
    link.symlink_to(target)
    result = run("score", source, "--junit-xml", link, *PASSING)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text().startswith("<?xml")
    assert leftovers(tmp_path) == leftovers(tmp_path / "reports") == []


# --- modes: the umask for a new file, the old mode for a replaced one --------------------------


@pytest.fixture
def umask():
    """``os.umask``, with the process's umask restored afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def test_new_outputs_follow_the_umask(tmp_path, umask):
    source = predictions_file(tmp_path / "p.csv")
    umask(0o077)
    result = run(
        "score", source, "--per-row", tmp_path / "rows.parquet", "--junit-xml", tmp_path / "j.xml"
    )
    assert result.exit_code == 0, result.output
    for name in ("rows.parquet", "j.xml"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name


def test_a_replaced_output_keeps_its_mode(tmp_path, umask):
    source = predictions_file(tmp_path / "p.csv")
    umask(0o022)
    modes = {"rows.csv": 0o640, "j.xml": 0o604}
    for name, mode in modes.items():
        (tmp_path / name).write_text("old\n")
        os.chmod(tmp_path / name, mode)
    result = run(
        "score", source, "--per-row", tmp_path / "rows.csv", "--junit-xml", tmp_path / "j.xml"
    )
    assert result.exit_code == 0, result.output
    for name, mode in modes.items():
        assert (tmp_path / name).read_text() != "old\n"
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name


# --- all outputs or none -----------------------------------------------------------------------


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize(
    ("junit", "message"),
    [
        ("missing/j.xml", "cannot create {}: No such file or directory"),
        ("full.xml", "cannot write {}: [Errno 28] No space left on device"),
    ],
    ids=["junit-directory-missing", "junit-disk-full"],
)
def test_an_unwritable_junit_file_leaves_the_per_row_file_alone(tmp_path, existing, junit, message):
    """A missing directory fails before scoring; a full disk (a link to /dev/full) only when
    the JUnit XML is written, after the per-row file is complete and the report printed:
    neither may write it."""
    source = predictions_file(tmp_path / "p.csv")
    (tmp_path / "full.xml").symlink_to("/dev/full")
    rows = tmp_path / "rows.csv"
    if existing:
        rows.write_text("precious\n")
    result = run("score", source, "--per-row", rows, "--junit-xml", tmp_path / junit, *PASSING)
    assert result.exit_code == 2, result.output
    assert [line for line in result.stderr.splitlines() if line] == [
        "gaussnll: error: " + message.format(tmp_path / junit)
    ]
    if existing:
        assert rows.read_text() == "precious\n"
    else:
        assert not rows.exists()
    assert leftovers(tmp_path) == []


def test_an_internal_error_after_scoring_writes_nothing(tmp_path, monkeypatch):
    source = predictions_file(tmp_path / "p.csv")
    (tmp_path / "rows.csv").write_text("precious\n")

    def broken(*args, **kwargs):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr("gaussnll.cli.formats.junit_xml", broken)
    result = run(
        "score", source, "--per-row", tmp_path / "rows.csv", "--junit-xml", tmp_path / "j.xml"
    )
    assert result.exit_code == 3
    assert (tmp_path / "rows.csv").read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "rows.csv"]


def grouped_predictions(path: Path, rows: int) -> Path:
    """One group per row, so that ``--by g --json`` prints far more than a pipe holds."""
    table = pa.table({**make_predictions(rows), "g": np.arange(rows)})
    return write_table(table, path)


@pytest.mark.parametrize("ending", ["sigterm", "closed-stdout"])
def test_an_interrupted_report_leaves_no_output(tmp_path, ending):
    """The report is blocked on a full pipe when the run is ended: nothing may be written."""
    source = grouped_predictions(tmp_path / "p.parquet", 4_000)
    (tmp_path / "existing.xml").write_text("precious\n")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gaussnll.cli", "score", str(source), "--by", "g"),
            *("--json", "--no-calibration", "--per-row", str(tmp_path / "rows.parquet")),
            *("--junit-xml", str(tmp_path / "existing.xml"), *PASSING),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout.read(1) == b"{"  # the report has started; it is far larger than a pipe
    time.sleep(0.5)
    if ending == "sigterm":
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 143
        assert stderr.decode().strip() == "gaussnll: terminated; no output was written"
    else:
        process.stdout.close()
        assert process.wait(timeout=120) == 141
        assert process.stderr.read() == b""
        process.stderr.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.xml", "p.parquet"]
    assert (tmp_path / "existing.xml").read_text() == "precious\n"


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_ends_a_report_whose_reader_stopped_reading(tmp_path, sig, code, word):
    """stdout's reader stops reading (a pager left open) while the JSON of every group is
    written: Ctrl-C or SIGTERM ends the run at once, not when the reader reads again."""
    source = grouped_predictions(tmp_path / "p.parquet", 4_000)
    process = subprocess.Popen(
        [sys.executable, "-m", "gaussnll.cli", "score", str(source), "--by", "g", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout.read(1) == b"{"  # the report is far larger than a pipe
        time.sleep(0.5)  # the pipe fills; nothing reads it from now on
        process.send_signal(sig)
        assert process.wait(timeout=30) == code
    finally:
        process.stdout.close()  # a run still blocked on the pipe ends with it
        process.wait(timeout=60)
    assert process.stderr.read().decode().strip() == f"gaussnll: {word}; no output was written"
    process.stderr.close()


def test_a_failed_gate_writes_every_output(tmp_path):
    source = predictions_file(tmp_path / "p.csv")
    rows, junit = tmp_path / "rows.csv", tmp_path / "j.xml"
    result = run("score", source, "--per-row", rows, "--junit-xml", junit, *FAILING)
    assert result.exit_code == 1, result.output
    assert pacsv.read_csv(rows).num_rows == 200
    assert 'failures="1"' in junit.read_text()
    assert leftovers(tmp_path) == []


def test_a_signal_while_committing_is_ignored(tmp_path, monkeypatch):
    """Ctrl-C between the renames must not leave one output renamed and the other not."""
    source = predictions_file(tmp_path / "p.csv")
    rows, junit = tmp_path / "rows.csv", tmp_path / "j.xml"
    replace = os.replace

    def interrupted_replace(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return replace(*args, **kwargs)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    result = run("score", source, "--per-row", rows, "--junit-xml", junit, *PASSING)
    assert result.exit_code == 0, result.output
    assert rows.exists() and junit.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --- temporaries of a killed run ---------------------------------------------------------------


def test_a_killed_runs_temporaries_are_cleaned_by_the_next_run(tmp_path):
    source = predictions_file(tmp_path / "p.csv")
    hour_ago = time.time() - 3600

    def partial(name: str, mtime: float = hour_ago) -> Path:
        path = tmp_path / name
        path.write_text("half\n")
        os.utime(path, (mtime, mtime))
        return path

    stale = [partial(".rows.csv.k1ll3d_0.partial"), partial(".j.xml.abcdefgh.partial")]
    kept = [
        partial(".rows.csv.abc.partial"),  # not our random part
        partial(".rows.csv.ABCDEFGH.partial"),
        partial("rows.csv.abcdefgh.partial"),  # no leading dot
        partial(".other.csv.abcdefgh.partial"),  # another target's
        partial(".rows.csv.abcdefgh.partial.bak"),
        partial(".rows.csv.newer000.partial", time.time() + 3600),  # not older than this run
        partial(".rows.csv.running0.partial"),  # locked by a run still going
    ]
    with kept[-1].open("rb") as running:
        fcntl.flock(running, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run(
            "score", source, "--per-row", tmp_path / "rows.csv", "--junit-xml", tmp_path / "j.xml"
        )
    assert result.exit_code == 0, result.output
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
    assert pacsv.read_csv(tmp_path / "rows.csv").num_rows == 200


KILLED_WRITER = """
import sys, time
from gaussnll.core.io.outputs import PlannedOutputs
with PlannedOutputs({"--per-row": sys.argv[1]}, []) as files:
    print(files.sink("--per-row"), flush=True)
    time.sleep(600)
"""


def test_a_temporary_of_a_run_killed_for_real_is_cleaned(tmp_path):
    source = predictions_file(tmp_path / "p.csv")
    rows = tmp_path / "rows.csv"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(rows)], stdout=subprocess.PIPE, text=True
    )
    temporary = Path(process.stdout.readline().strip())
    process.kill()
    process.wait(timeout=60)
    process.stdout.close()
    assert temporary.exists() and partial_name("rows.csv").fullmatch(temporary.name)
    result = run("score", source, "--per-row", rows)
    assert result.exit_code == 0, result.output
    assert not temporary.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "rows.csv"]


def test_the_partial_pattern_is_exact():
    pattern = partial_name("rows.csv")
    assert pattern.fullmatch(".rows.csv.a_b0c9de.partial")
    assert not pattern.fullmatch(".rowsXcsv.a_b0c9de.partial")  # the dot is not a wildcard
    assert not pattern.fullmatch(".rows.csv.a_b0c9d.partial")


def test_a_directory_output_is_a_temporary_directory_renamed_when_committed(tmp_path):
    parts = tmp_path / "parts"
    with PlannedOutputs({"--per-row": str(parts)}, [], directories=["--per-row"]) as files:
        sink = Path(files.sink("--per-row"))
        assert sink.is_dir() and sink.parent == tmp_path and sink != parts
        assert partial_name("parts").fullmatch(sink.name)
        (sink / "part-00000.parquet").write_text("rows")
        assert not parts.exists()
        files.commit()
    assert [p.name for p in parts.iterdir()] == ["part-00000.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts"]


def test_a_directory_output_not_committed_is_removed_with_its_parts(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with PlannedOutputs({"--per-row": str(empty)}, [], directories=["--per-row"]) as files:
        (Path(files.sink("--per-row")) / "part-00000.parquet").write_text("rows")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
    assert list(empty.iterdir()) == []


def test_a_directory_output_must_be_new_or_empty(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    for taken in (full, full / "keep.txt"):
        with pytest.raises(UsageError, match="give a new or empty directory"):
            PlannedOutputs({"--per-row": str(taken)}, [], directories=["--per-row"])
    assert (full / "keep.txt").read_text() == "mine"


KILLED_DIRECTORY_WRITER = """
import sys, time
from gaussnll.core.io.outputs import PlannedOutputs
with PlannedOutputs({"--per-row": sys.argv[1]}, [], directories=["--per-row"]) as files:
    sink = files.sink("--per-row")
    open(sink + "/part-00000.parquet", "w").write("half a part")
    print(sink, flush=True)
    time.sleep(600)
"""


def _directory_output(path: Path) -> PlannedOutputs:
    return PlannedOutputs({"--per-row": str(path)}, [], directories=["--per-row"])


def test_a_temporary_directory_of_a_run_killed_for_real_is_cleaned(tmp_path):
    parts = tmp_path / "parts"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_DIRECTORY_WRITER, str(parts)],
        stdout=subprocess.PIPE,
        text=True,
    )
    temporary = Path(process.stdout.readline().strip())
    process.kill()
    process.wait(timeout=60)
    process.stdout.close()
    assert (temporary / "part-00000.parquet").exists()
    assert partial_name("parts").fullmatch(temporary.name)
    time.sleep(0.05)  # the next run begins after the killed one's last write
    with _directory_output(parts) as files:
        assert not temporary.exists()
        files.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts"]


def test_only_stale_unlocked_real_temporary_directories_are_removed(tmp_path):
    hour_ago = time.time() - 3600
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")

    def leftover(name: str, mtime: float = hour_ago) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "part-00000.parquet").write_text("half")
        (path / "elsewhere").symlink_to(outside)  # removed as a link, never followed
        os.utime(path, (mtime, mtime))
        return path

    stale = leftover(".parts.k1ll3d_0.partial")
    kept = [
        leftover(".parts.abc.partial"),  # not our random part
        leftover(".other.abcdefgh.partial"),  # another target's
        leftover(".parts.newer000.partial", time.time() + 3600),  # not older than this run
        leftover(".parts.running0.partial"),  # locked by a run still going
    ]
    linked = tmp_path / ".parts.linked00.partial"
    linked.symlink_to(outside)
    running = os.open(kept[-1], os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(running, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with _directory_output(tmp_path / "parts"):
            pass
    finally:
        os.close(running)
    assert not stale.exists() and not os.path.lexists(stale)
    assert all((path / "part-00000.parquet").exists() for path in kept)
    assert linked.is_symlink() and (outside / "keep.txt").read_text() == "mine"


def test_a_live_runs_temporary_directory_is_locked_against_the_next(tmp_path):
    parts = tmp_path / "parts"
    with _directory_output(parts) as first:
        temporary = Path(first.sink("--per-row"))
        os.utime(temporary, (time.time() - 3600,) * 2)  # however old, it is still in use
        with _directory_output(parts) as second:
            assert temporary.exists()
            assert Path(second.sink("--per-row")) != temporary
    assert sorted(p.name for p in tmp_path.iterdir()) == []
