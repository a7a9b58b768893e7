"""--help as a person reads it at 100 columns: flags without a value type, natural defaults,
whole command summaries, and examples that run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.cli.settings import COMPARE, MERGE, RECALIBRATE, RESCALE, SCORE, settings_of

ALL_COMMANDS = (SCORE, COMPARE, RECALIBRATE, RESCALE, MERGE)

ROOT = Path(__file__).parent.parent


def help_text(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.stdout


def flat(text: str) -> str:
    """The help without its box drawing, each run of spaces one space (so a wrapped
    ``[default: ...]`` reads whole)."""
    return re.sub(r"\s+", " ", re.sub("[│╭╮╰╯─]", " ", text))


@pytest.mark.parametrize("command", [(), (SCORE,), (COMPARE,)])
def test_flags_take_no_value(command):
    text = help_text(*command)
    assert "<bool>" not in text
    for line in text.splitlines():
        if re.search(r"--(help|version|json|quiet|debug|full|per-group)\b", line):
            assert "<" not in line.split("  ")[0], line


@pytest.mark.parametrize("command", [SCORE, COMPARE])
def test_defaults_read_naturally(command):
    text = flat(help_text(command))
    assert "[default: 1e-6]" in text and "1e-06" not in text
    assert "[default: var]" in text and "(default" not in text
    assert "[default: 0.5,0.8,0.9,0.95,0.99]" in text
    for setting in settings_of(command, config=True):
        if setting.default not in (None, False, ()) and setting.kind is not bool:
            assert "[default: " in text.split(setting.flag_name, 1)[1].split(" --", 1)[0], setting


def test_command_summaries_are_whole_sentences():
    text = help_text()
    names = "|".join(ALL_COMMANDS)
    rows = [line for line in text.splitlines() if re.match(rf"│ ({names}) ", line)]
    assert len(rows) == len(ALL_COMMANDS)
    panel = text[text.index("Commands") :]
    assert len([line for line in panel.splitlines() if line.startswith("│")]) == len(
        rows
    )  # no wrap
    for row in rows:
        assert re.match(r"│ \w+ +[A-Z].*\. +│$", row), row


def examples(text: str) -> list[str]:
    """The commands after ``Examples:``, a wrapped one joined again."""
    tail = text[text.index("Examples:") + len("Examples:") :]
    found: list[str] = []
    for line in (line.strip() for line in tail.splitlines()):
        if line.startswith("$ "):
            found.append(line[2:])
        elif line and found:
            found[-1] += " " + line
    return found


@pytest.fixture(scope="module")
def examples_folder(tmp_path_factory) -> Path:
    """Where the examples run: sample_data/ and the map that rescale's examples read, so that what
    they write (map.json, recalibrated.csv, ...) never lands in the checkout."""
    folder = tmp_path_factory.mktemp("examples")
    (folder / "sample_data").symlink_to(ROOT / "sample_data")
    fitted = CliRunner().invoke(
        app,
        [
            "recalibrate",
            str(ROOT / "sample_data" / "preds.parquet"),
            "-o",
            str(folder / "map.json"),
        ],
    )
    assert fitted.exit_code == 0, fitted.output
    return folder


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_help_ends_with_examples_that_run(command, monkeypatch, examples_folder):
    text = help_text(command)
    commands = examples(text)
    assert 2 <= len(commands) <= 3
    assert text.rstrip().endswith(commands[-1].split()[-1])
    monkeypatch.chdir(examples_folder)
    for example in commands:
        words = shlex.split(example)
        assert words[:2] == ["gaussnll", command]
        assert any(word.startswith("sample_data/") for word in words)
        result = CliRunner().invoke(app, words[1:])
        assert result.exit_code == 0, (example, result.output)


@pytest.mark.parametrize("command", [SCORE, MERGE])
def test_brackets_in_help_are_text_not_markup(command):
    """rich reads ``[dask]`` as a markup tag and drops it: help escapes its text."""
    text = flat(help_text(command))
    assert "pip install 'gaussnll[dask]', or from a checkout pip install -e '.[dask]'" in text
    assert "[default: the [tool.gaussnll] table of the nearest pyproject.toml]" in text
    if command == SCORE:
        assert "pip install 'gaussnll[html]'" in text
