"""The README stays true: its Python examples run, CI runs its test command, and its quick-start
command scores the sample data."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import torch_nll

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def setup_command(marker: str) -> str:
    """The README's one bash command that contains ``marker``."""
    (command,) = (c.strip() for c in fenced("bash") if marker in c)
    return command


def installed_gaussnll() -> str:
    """The console script next to this interpreter (what ``pip install`` made), else on PATH."""
    beside = Path(sys.executable).with_name("gaussnll")
    found = str(beside) if beside.exists() else shutil.which("gaussnll")
    assert found, "the gaussnll console script is not installed"
    return found


@pytest.mark.parametrize("code", fenced("python"))
def test_python_examples_run(code):
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


def test_readme_has_python_examples():
    assert len(fenced("python")) >= 2


def test_ci_runs_the_readme_test_command():
    test_command = setup_command("pytest")
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_quick_start_scores_the_sample_with_the_installed_command():
    steps = setup_command("gaussnll score sample_data").split(" && ")
    assert steps[-1] == "gaussnll score sample_data/preds.parquet"
    argv = [installed_gaussnll(), *shlex.split(steps[-1])[1:]]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    shown = re.search(r"nll, nll_mean[^\d-]+(-?\d+\.\d+)", result.stdout)
    assert shown, result.stdout
    columns = pq.read_table(ROOT / "sample_data" / "preds.parquet").to_pydict()
    expected = torch_nll({k: np.asarray(columns[k]) for k in ("mean", "target", "var")})
    assert float(shown[1]) == pytest.approx(expected, abs=1e-6)


def test_quick_start_installs_the_pinned_torch_then_this_package():
    steps = setup_command("gaussnll score sample_data").split(" && ")
    test_steps = setup_command("pytest").split(" && ")
    assert steps[0] == test_steps[0] == "python3 -m pip install torch==2.13.0"
    assert steps[1] == "python3 -m pip install ."
    assert PYPROJECT["project"]["scripts"]["gaussnll"] == "gaussnll.cli.app:main"


def test_readme_names_the_python_the_package_requires():
    required = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert f"Python ≥ {required}" in README


def test_exit_code_table_lists_every_exit_code():
    from gaussnll.cli import exits

    codes = {v for k, v in vars(exits).items() if k.startswith("EXIT_")} | {0}
    table = README.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    listed = {int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}
    assert listed == codes


def test_the_readme_lists_every_config_setting_and_every_option():
    from gaussnll.cli.settings import SETTINGS

    listed = README[README.index("Settings: ") :].split("\n\n")[0]
    for setting in SETTINGS:
        if setting.config:
            assert f"`{setting.name}`" in listed, setting.name
        else:
            assert f"`{setting.flag_name}`" in listed, setting.flag_name
