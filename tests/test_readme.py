"""The README and the docs stay true: every shell command and Python block of README.md and
docs/*.md runs against the installed CLI with the exit code it documents and, where a console block
shows output, prints that output; CI runs the README's test command, and the quick-start command
scores the sample data.

Conventions of the pages (docs/development.md, *Documentation*): a page's blocks run in order in
one temporary directory holding ``sample_data/``; a ``console`` line ``$ COMMAND`` runs in bash and
must exit 0, or N when it ends in ``# exit N``; the lines after it are its output (stdout and
stderr), compared line by line, where a line ``...`` stands for any lines and the numbers of a
timing line (seconds, per second) are not compared; a ``bash`` block runs as one script and a
``python`` block as one program, both exiting 0; a block right after ``<!-- not run: REASON -->``
is not run (installs, remote clusters and stores)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import torch_nll
from warm_cli import CLIENT

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

BLOCK = re.compile(
    r"^(?:<!-- not run: (?P<reason>.*?) -->\n)?"
    r"```(?P<language>bash|console|python)\n(?P<code>.*?)^```",
    flags=re.DOTALL | re.MULTILINE,
)
EXIT = re.compile(r"#\s*exit (\d+)\s*$")
TIMING = re.compile(r"seconds|per second")


class Block(NamedTuple):
    """A fenced block of a page, named by where it starts (``page:line``) in messages."""

    where: str
    language: str
    code: str
    reason: str | None  # why it is not run; None: it runs

    def __str__(self) -> str:
        return self.where


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    name = page.relative_to(ROOT)
    return [
        Block(
            f"{name}:{text.count(chr(10), 0, found.start('code')) + 1}",
            found["language"],
            found["code"],
            found["reason"],
        )
        for found in BLOCK.finditer(text)
    ]


def fenced(language: str) -> list[str]:
    return [block.code for block in blocks(ROOT / "README.md") if block.language == language]


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


def console_commands(code: str) -> list[tuple[str, list[str]]]:
    """A console block's ``$`` commands (continuation lines joined) with the output shown."""
    commands: list[tuple[str, list[str]]] = []
    lines = code.splitlines()
    while lines:
        line = lines.pop(0)
        assert line.startswith("$ "), f"console output before any command: {line!r}"
        command = line[2:]
        while command.endswith("\\"):
            command = command[:-1] + lines.pop(0).strip()
        output = []
        while lines and not lines[0].startswith("$ "):
            output.append(lines.pop(0))
        commands.append((command, output))
    return commands


def normalised(line: str) -> str:
    """A line as compared: no trailing blanks, a timing line's numbers and padding left out."""
    line = line.rstrip()
    if TIMING.search(line):
        line = re.sub(r" +", " ", re.sub(r"\d[\d,.]*", "N", line))
    return line


def shows(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` is ``expected`` with each ``...`` line standing for any lines."""
    pattern = "".join(
        r"(?:.*\n)*?" if line == "..." else re.escape(normalised(line)) + r"\n" for line in expected
    )
    printed = "".join(normalised(line) + "\n" for line in actual)
    return re.fullmatch(pattern, printed) is not None


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """A plain terminal of 100 columns without CI annotations, and on its PATH a ``gaussnll`` (and
    a ``python-block``) that runs in a warm interpreter forked per command (tests/warm_cli.py)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GITHUB_") and key not in {"FORCE_COLOR", "TERM"}
    }
    folder = tmp_path_factory.mktemp("warm")
    env |= {
        "COLUMNS": "100",
        "NO_COLOR": "1",
        "GITHUB_STEP_SUMMARY": str(folder / "summary.md"),
        "GAUSSNLL_WARM_SOCKET": str(folder / "socket"),
        "PATH": f"{folder}{os.pathsep}{Path(installed_gaussnll()).parent}{os.pathsep}{env['PATH']}",
    }
    for name in ("gaussnll", "python-block"):
        (folder / name).write_text(f"#!{sys.executable} -S\n{CLIENT}")
        (folder / name).chmod(0o755)
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("warm_cli.py")), env["GAUSSNLL_WARM_SOCKET"]],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (folder / "socket").exists():
        assert server.poll() is None and time.monotonic() < deadline, "the warm CLI did not start"
        time.sleep(0.05)
    yield env
    server.terminate()
    server.wait()


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> None:
    assert "pip install" not in block.code, f"{block} installs: mark it <!-- not run: REASON -->"
    if block.language == "python":
        done = run(["python-block", block.code], cwd, env)
        assert done.returncode == 0, f"{block}: {done.stdout}"
    elif block.language == "bash":
        done = run(["bash", "-euo", "pipefail", "-c", block.code], cwd, env)
        assert done.returncode == 0, f"{block}: {done.stdout}"
    else:
        for command, output in console_commands(block.code):
            expected = EXIT.search(command)
            done = run(["bash", "-o", "pipefail", "-c", command], cwd, env)
            assert done.returncode == int(expected[1] if expected else 0), (
                f"{block}: $ {command}\n{done.stdout}"
            )
            if output:
                assert shows(output, done.stdout.splitlines()), (
                    f"{block}: $ {command} printed\n{done.stdout}"
                )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_command_and_example_of_the_page_runs_as_documented(page, tmp_path, environment):
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    for block in blocks(page):
        if block.reason is None:
            run_block(block, tmp_path, environment)


def test_the_warm_cli_answers_as_the_installed_script(environment, tmp_path):
    command = "gaussnll score missing.parquet --by region"
    warm = run(["bash", "-c", command], tmp_path, environment)
    cold = run([installed_gaussnll(), *shlex.split(command)[1:]], tmp_path, environment)
    assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout) != (0, "")
    block = run(
        ["python-block", "import sys; print(sys.argv, sys.path[0]); sys.exit(3)"],
        tmp_path,
        environment,
    )
    assert (block.returncode, block.stdout) == (3, "['-c'] \n")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_a_block_not_run_says_why(page):
    for block in blocks(page):
        assert block.reason is None or block.reason.strip(), f"{block}: no reason"


def test_pages_have_commands_and_python_examples():
    every = [block for page in PAGES for block in blocks(page)]
    assert sum(block.language == "python" for block in every) >= 5
    assert sum(block.language == "console" and block.reason is None for block in every) >= 10


def test_the_output_matcher_elides_and_ignores_timings_only():
    assert shows(["a", "...", "d"], ["a", "b", "c", "d"])
    assert shows(["...", "c"], ["a", "b", "c"])
    assert shows(["a", "..."], ["a", "b"])
    assert shows(["│ seconds │    0.030 │"], ["│ seconds │ 12.5 │"])
    assert not shows(["a", "d"], ["a", "b", "d"])
    assert not shows(["│ ence │ 0.23392 │"], ["│ ence │ 0.236891 │"])
    assert not shows(["...", "b"], ["b", "c"])


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


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    headings = re.findall(r"^#+ (.*)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_readme_links_every_docs_page_and_every_link_resolves():
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in README, f"README does not link docs/{page.name}"
    for page in PAGES:
        links = re.findall(r"\]\(([^)#:]*)(?:#([^)]*))?\)", page.read_text())
        for target, anchor in links:
            linked = (page.parent / target).resolve() if target else page
            assert linked.exists(), f"{page.name} links {target}, not there"
            assert not anchor or anchor in anchors(linked), f"{page.name} links {target}#{anchor}"


def test_exit_code_table_lists_every_exit_code():
    from gaussnll.cli import exits

    codes = {v for k, v in vars(exits).items() if k.startswith("EXIT_")} | {0}
    text = (ROOT / "docs" / "ci-gates.md").read_text()
    table = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    listed = {int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}
    assert listed == codes


def test_the_docs_list_every_config_setting_and_every_option():
    from gaussnll.cli.settings import SETTINGS

    text = (ROOT / "docs" / "options.md").read_text()
    listed = text[text.index("Settings: ") :].split("\n\n")[0]
    for setting in SETTINGS:
        if setting.config:
            assert f"`{setting.name}`" in listed, setting.name
        else:
            assert f"`{setting.flag_name}`" in listed, setting.flag_name
