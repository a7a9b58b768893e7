"""What a person reads: tables that never cut a key or a number at any width, one name per
number, failed gates on stderr (and as GitHub annotations), and data shown literally."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import make_predictions, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.cli.literal import code_span, github_message, literal, markdown

FIXTURES = Path(__file__).parent / "fixtures"
REGENERATE = os.environ.get("GAUSSNLL_REGENERATE_FIXTURES") == "1"
LONG_KEYS = (
    "ensemble_a",
    "ensemble_b",
    "ensemble_with_a_name_far_longer_than_any_column_of_a_table_could_ever_hold_x",
)
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # a newline ends a line: allowed


def run(*args: str, columns: int = 80, **env: str):
    """The CLI as in a pipe or CI log: stdout is not a terminal, ``COLUMNS`` wide."""
    environment = {"COLUMNS": str(columns), "GITHUB_ACTIONS": "", **env}
    return CliRunner().invoke(app, list(args), env=environment)


def grouped_file(directory: Path, keys=LONG_KEYS, name: str = "groups.parquet") -> Path:
    """Predictions in groups ``keys``; the last group's errors are huge, so its NLL is a large
    number (shown in exponent notation)."""
    rows = 300
    columns = make_predictions(rows * len(keys), seed=3)
    columns["target"][-rows:] += 1e5
    table = pa.table({**columns, "g": np.repeat(np.array(keys, dtype=object), rows)})
    return write_table(table, directory / name)


def shown(value: float | None) -> str:
    """How the tables write a non-count number: 6 decimals, or 6 significant in e-notation."""
    return "-" if value is None else f"{value:.6f}" if abs(value) < 1e6 else f"{value:.6e}"


# -- 1. tables never cut names, keys or numbers --------------------------------------------


@pytest.mark.parametrize("width", [80, 200])
def test_group_table_shows_every_key_and_number_whole(tmp_path, width):
    path = grouped_file(tmp_path)
    result = run("score", str(path), "--by", "g", "--device", "cpu", columns=width)
    assert result.exit_code == 0, result.output
    payload = json.loads(run("score", str(path), "--by", "g", "--device", "cpu", "--json").stdout)
    text = result.stdout
    assert "…" not in text
    for group in payload["groups"]:
        assert group["key"]["g"] in text
        calibration, accuracy = group["calibration"], group["accuracy"]
        for value in (group["nll"], calibration["crps"], calibration["var_scale"]):
            assert shown(value) in text
        assert shown(calibration["mace"]) in text and shown(accuracy["rmse"]) in text
        assert f"{group['rows']:,}" in text
    assert max(group["nll"] for group in payload["groups"]) > 1e6  # a large number, whole
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert all("ensemble_with" in line or str(path) in line for line in too_long)


@pytest.mark.parametrize("width", [80, 200])
def test_every_table_fits_or_stacks_without_cutting(tmp_path, width):
    long_name = "predictions_of_a_model_whose_file_name_is_longer_than_a_ci_log_line_" * 2
    path = grouped_file(tmp_path, name=long_name + ".parquet")
    checks = ["--check", "coverage@0.9 >= 0.99", "--check", "rows == 900"]
    score = run("score", str(path), "--device", "cpu", *checks, columns=width)
    compare = run("compare", str(path), str(path), "--device", "cpu", columns=width)
    for result in (score, compare):
        assert result.exit_code in (0, 1), result.output
        assert "…" not in result.stdout
        assert str(path) in result.stdout
    payload = json.loads(run("score", str(path), "--device", "cpu", "--json").stdout)
    for name in ("crps", "var_scale", "mace", "sharpness"):
        assert shown(payload["calibration"][name]) in score.stdout
        assert shown(payload["calibration"][name]) in compare.stdout
    assert "900" in score.stdout and "coverage@0.9" in score.stdout


def _masked(text: str) -> str:
    """The output without its timing (which changes from run to run)."""
    return re.sub(r"(?m)^.*(seconds|rows per second) .*$", "<timing line>", text)


@pytest.mark.parametrize("width", [80, 200])
def test_group_table_matches_its_fixture(tmp_path, width):
    """A screenshot of the grouped report. After an intended change of the layout, regenerate
    with ``GAUSSNLL_REGENERATE_FIXTURES=1 python -m pytest tests/test_render.py``."""
    path = grouped_file(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the report names the file as given
    try:
        result = run(
            "score",
            path.name,
            "--by",
            "g",
            "--device",
            "cpu",
            "--levels",
            "0.5,0.9",
            "--check",
            "nll <= 2",
            "--per-group",
            columns=width,
        )
    finally:
        os.chdir(cwd)
    assert result.exit_code == 1, result.output
    fixture = FIXTURES / f"groups_table_{width}.txt"
    if REGENERATE:
        fixture.write_text(_masked(result.stdout))
    assert _masked(result.stdout) == fixture.read_text()


# -- 2. a failed gate is never silent on stderr ---------------------------------------------


def test_each_failed_check_is_one_line_on_stderr(tmp_path):
    path = grouped_file(tmp_path)
    checks = ["--check", "coverage@0.9 >= 0.99", "--check", "rows != 900", "--check", "nll > 0"]
    for output in ([], ["--json"], ["--format", "markdown"]):
        result = run("score", str(path), "--device", "cpu", *checks, *output)
        assert result.exit_code == 1
        value = json.loads(run("score", str(path), "--device", "cpu", "--json").stdout)
        coverage = value["calibration"]["coverage"][2]
        assert result.stderr.splitlines() == [
            f"gaussnll: check failed: coverage@0.9 >= 0.99 (got {coverage:.6g})",
            "gaussnll: check failed: rows != 900 (got 900)",  # a count as an integer
        ]
    passing = run("score", str(path), "--device", "cpu", "--check", "rows == 900")
    assert passing.exit_code == 0 and passing.stderr == ""


def test_per_group_failures_name_each_group(tmp_path):
    path = grouped_file(tmp_path)
    result = run(
        "score", str(path), "--by", "g", "--device", "cpu", "--check", "nll <= 0.98", "--per-group"
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(
        "gaussnll: check failed: nll <= 0.98 in group g=ensemble_a (got 0.99"
    )
    assert lines[1].startswith(
        f"gaussnll: check failed: nll <= 0.98 in group g={LONG_KEYS[2]} (got 8.49"
    )


def test_github_actions_annotations(tmp_path):
    path = grouped_file(tmp_path, keys=("50%\r\nup", "b"))
    args = ["--by", "g", "--device", "cpu", "--check", "nll <= 0.5", "--per-group"]
    plain = run("score", str(path), *args)
    annotated = run("score", str(path), *args, GITHUB_ACTIONS="true")
    assert not any(line.startswith("::") for line in plain.stderr.splitlines())
    lines = annotated.stderr.splitlines()
    assert len(lines) == 4  # each failure as a line and as an annotation
    for line, annotation in zip(lines[::2], lines[1::2], strict=True):
        message = line.removeprefix("gaussnll: check failed: ")
        assert annotation == f"::error title=gaussnll check failed::{message.replace('%', '%25')}"
    assert "g=50%25\\r\\nup" in annotated.stderr
    compare = run(
        "compare",
        str(path),
        str(path),
        "--device",
        "cpu",
        "--check",
        "delta_nll > 0",
        GITHUB_ACTIONS="true",
    )
    assert compare.exit_code == 1
    assert compare.stderr.splitlines() == [
        "gaussnll: check failed: delta_nll > 0 (got 0)",
        "::error title=gaussnll check failed::delta_nll > 0 (got 0)",
    ]


def test_github_message_escapes_percent_and_line_ends():
    assert github_message("50%\r\nx") == "50%25%0D%0Ax"


# -- 6. data shown literally --------------------------------------------------------------

ESC = "\x1b[31mred\x1b[0m"
OSC8 = "\x1b]8;;mailto:a@example.com\x1b\\link\x1b]8;;\x1b\\"
PAYLOADS = {  # text → how it reads once shown literally
    "esc": (ESC, "\\x1b[31mred\\x1b[0m"),
    "osc8": (OSC8, "\\x1b]8;;mailto:a@example.com\\x1b\\\\link\\x1b]8;;\\x1b\\\\"),
    "cr": ("a\rb", "a\\rb"),
    "newline": ("a\nb", "a\\nb"),
    "close-markup": ("[/]", "[/]"),
    "markup": ("[bold red]x", "[bold red]x"),
    "pipe": ("a|b", "a|b"),
}


def _payload_file(directory: Path, where: str, text: str) -> tuple[Path, list[str]]:
    """A file holding ``text`` in group keys, in column names (two outputs, so the table
    lists them) or in its own name; the options that read it so."""
    columns = make_predictions(60, seed=1)
    group = f"g{text}" if where == "key" else "g"  # the group column's name too
    table = {**columns, group: np.array([f"k{text}", "plain"] * 30, dtype=object)}
    options = []
    if where == "column":
        for role in ("mean", "target", "var"):
            names = [f"{role[0]}{text}{i}" for i in (0, 1)]
            table.update({name: columns[role] for name in names})
            options += [f"--{role}-col", ",".join(names)]
    elif where == "key":
        options = ["--by", group]
    path = directory / (f"p{text}.parquet" if where == "path" else "p.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_table(pa.table(table), path), options


def _invocation(path: Path, where: str, text: str, options: list[str], output: str, tmp: Path):
    """The CLI arguments that show ``text`` (in its place ``where``) in ``output``."""
    if output == "error":  # a column, a group column or a file that is not there
        missing = {"column": ["--var-col", f"x{text}"], "key": ["--by", f"x{text}"], "path": []}
        target = path.parent / f"x{text}.parquet" if where == "path" else path
        return ["score", str(target), "--device", "cpu", *missing[where]]
    failing = ["--check", "nll <= -100"] + (["--per-group"] if where == "key" else [])
    return ["score", str(path), "--device", "cpu", *options] + {
        "table": failing,
        "markdown": ["--format", "markdown", *failing],
        "json": ["--json"],
        "junit": ["--junit-xml", str(tmp / "j.xml"), *failing],
    }[output]


@pytest.mark.parametrize("output", ["table", "markdown", "json", "junit", "error"])
@pytest.mark.parametrize("where", ["key", "column", "path"])
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_data_is_shown_literally(tmp_path, payload, where, output):
    text, visible = PAYLOADS[payload]
    path, options = _payload_file(tmp_path / "in", where, text)
    result = run(*_invocation(path, where, text, options, output, tmp_path), columns=200)
    shown_text = result.stdout + result.stderr
    assert not RAW_CONTROL.search(shown_text), repr(shown_text)
    assert not re.search("[\x00-\x1f]", result.stderr.rstrip("\n").replace("\n", "")), result.stderr
    if output == "error":
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and visible in result.stderr
        return
    assert result.exit_code in (0, 1), result.output
    if output == "json":
        payload_json = json.loads(result.stdout)
        everything = json.dumps(payload_json, ensure_ascii=False)
        assert json.dumps(text, ensure_ascii=False)[1:-1] in everything  # JSON is unchanged
    elif output == "junit":
        suite = ET.parse(tmp_path / "j.xml").getroot()  # raw control bytes would not parse
        xml_text = ET.tostring(suite, encoding="unicode")
        assert visible in (tmp_path / "j.xml").read_text() or where == "column"
        assert not RAW_CONTROL.search(xml_text)
    elif output == "markdown":
        for table in re.findall(r"(?m)(?:^\|.*\n?)+", result.stdout):
            cells = [len(re.findall(r"(?<!\\)\|", line)) for line in table.splitlines()]
            assert len(set(cells)) == 1, table  # every row has as many cells as its header
        if where == "path":  # in a code span, shown as is (the cell's | escaped)
            assert visible.replace("|", "\\|") in result.stdout
        if where == "key":  # as a Markdown renderer reads the backslash escapes
            assert visible in re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", result.stdout)
    else:
        assert visible in result.stdout


def test_literal_helpers():
    assert literal("plain C:\\dir") == "plain C:\\dir"  # nothing to escape: unchanged
    assert literal("a\x1b\\b") == "a\\x1b\\\\b"  # escapes present: a backslash is doubled
    assert literal("\u202eevil") == "\\u202eevil"
    assert markdown("a|b*c_[x]") == "a\\|b\\*c\\_\\[x\\]"
    assert code_span("a`b") == "``a`b``"
    assert code_span("`x`") == "`` `x` ``"
    assert code_span("a|b") == "`a\\|b`"


# -- 5. progress: bytes where the rows are unknown -------------------------------------------


def test_progress_shows_rows_or_bytes_whichever_has_a_total():
    from rich.progress import Progress

    from gaussnll.cli.progress import AmountColumn, progress_update

    progress = Progress(AmountColumn())
    task = progress.add_task("scoring", total=None, unit="rows")
    update = progress_update(lambda **values: progress.update(task, **values))
    shown_now = lambda: str(AmountColumn().render(progress.tasks[0]))  # noqa: E731
    update(1000, 2500, None, None)
    assert shown_now() == "1,000/2,500 rows"
    update(1000, None, 3_000_000, 12_000_000)
    assert shown_now() == "3.0/12.0 MB"
    update(1000, None, None, None)
    assert shown_now() == "1,000 rows"


def test_layout_drops_optional_columns_then_stacks():
    from io import StringIO

    from rich.console import Console

    from gaussnll.cli.layout import Grid, blocks, show

    grid = Grid(
        "t",
        ("label", "name", "value"),
        [("a long human label for it", "metric_name", "123456.789012")],
        keys=2,
        optional=(0,),
    )

    def shown_at(width: int) -> str:
        console = Console(file=StringIO(), width=width, color_system=None)
        show(console, blocks(console, grid))
        return console.file.getvalue()

    wide, narrow, tiny = shown_at(80), shown_at(40), shown_at(20)
    assert "a long human label for it" in wide and "│" in wide
    assert "a long human label" not in narrow and "│ metric_name │ 123456.789012 │" in narrow
    assert "│" not in tiny  # stacked: every cell whole, on lines of their own
    for cell in grid.rows[0]:
        assert cell in tiny


# -- 3. one name per number -------------------------------------------------------------------


def test_each_number_once_beside_the_name_a_check_uses(tmp_path):
    from gaussnll.core import SCORE_METRICS

    path = write_table(pa.table(make_predictions(500, seed=4)), tmp_path / "p.parquet")
    table = run("score", str(path), "--device", "cpu", columns=200).stdout
    payload = json.loads(run("score", str(path), "--device", "cpu", "--json").stdout)
    assert table.count(shown(payload["nll_mean"])) == 1  # nll is nll_mean: one row, two names
    assert table.count(shown(payload["calibration"]["var_scale"])) == 1  # = z2_mean
    for metric in SCORE_METRICS.metrics.values():
        absent = metric.name in ("skipped_rows", "eps_floored", "weight_sum")
        absent = absent or metric.section in ("ensemble", "samples", "quantiles", "ci")
        # (an ensemble's: tests/test_ensemble.py; samples': tests/test_samples.py; a quantile
        # model's: tests/test_quantiles.py; a weight sum: tests/test_weights.py; the bootstrap
        # intervals, NAME beside NAME_ci_low and NAME_ci_high: tests/test_intervals.py)
        if not metric.per_level and not absent:
            assert re.search(rf"[│ ,]{metric.name}[ ,│]", table), metric.name
            assert metric.spec.label in table or metric.name in ("nll", "z2_mean", "seconds")
    for metric in ("coverage", "inside_counts", "interval_width", "interval_score"):
        assert f"{metric}@p" in table


def test_counts_are_integers_in_tables_logs_and_junit(tmp_path):
    path = grouped_file(tmp_path, keys=("a",))
    junit = tmp_path / "j.xml"
    args = ["--device", "cpu", "--check", "rows != 300", "--check", "inside_counts@0.9 > 1e9"]
    table = run("score", str(path), *args, "--junit-xml", str(junit))
    markdown_text = run("score", str(path), *args, "--format", "markdown").stdout
    assert re.search(r"│ rows +│ +300 │", table.stdout) and "300.000000" not in table.stdout
    assert "| ❌ | `rows != 300` | 300 |" in markdown_text
    assert "(got 300)" in table.stderr
    messages = [f.get("message") for f in ET.parse(junit).getroot().iter("failure")]
    assert messages[0] == "rows = 300, expected != 300"
    assert re.fullmatch(r"inside_counts@0\.9 = \d+, expected > 1e\+09", messages[1])


def test_outputs_table_at_80_columns(tmp_path):
    columns = make_predictions(200, seed=2)
    names = {}
    for role, values in list(columns.items()):
        names[role] = [f"{role}_of_output_{i}_with_a_long_column_name" for i in (0, 1)]
        columns.update({name: values * (1 + 1e7 * i) for i, name in enumerate(names[role])})
    path = write_table(pa.table(columns), tmp_path / "two.parquet")
    options = [
        item
        for role in ("mean", "target", "var")
        for item in (f"--{role}-col", ",".join(names[role]))
    ]
    result = run("score", str(path), "--device", "cpu", *options)
    assert result.exit_code == 0, result.output
    payload = json.loads(run("score", str(path), "--device", "cpu", *options, "--json").stdout)
    assert "…" not in result.stdout
    for output in payload["outputs"]:
        assert output["column"] in result.stdout
        assert shown(output["nll_mean"]) in result.stdout
