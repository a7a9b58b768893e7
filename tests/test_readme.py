"""The README stays true: its Python examples run, and CI runs its test command."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


@pytest.mark.parametrize("code", fenced("python"))
def test_python_examples_run(code, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_command():
    commands = fenced("bash")
    test_command = next(c.strip() for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_readme_setup_runs_the_sample():
    setup = next(c.strip() for c in fenced("bash") if "gaussnll score sample_data" in c)
    assert setup.endswith("gaussnll score sample_data/preds.parquet")
    assert os.path.exists(ROOT / "sample_data" / "preds.parquet")
