"""The repository holds the project's own files only: no output of a documented command, no stale
generated image, committed by running the docs in the checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The top level the design fixes, plus the docs, benchmarks, CI script and mypy's links.
TOP_LEVEL = {
    ".ci",
    ".gitignore",
    ".typecheck",
    "README.md",
    "bench",
    "cli",
    "core",
    "docs",
    "pyproject.toml",
    "sample_data",
    "tests",
}


def git(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run git in this checkout (skips outside one, e.g. in an unpacked sdist)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False)


def tracked() -> list[str]:
    """The paths git tracks."""
    return [path for path in git("ls-files", "-z").stdout.decode().split("\0") if path]


def test_the_root_holds_only_the_projects_own_files():
    top = {path.split("/", 1)[0] for path in tracked()}
    assert top <= TOP_LEVEL, f"unexpected at the repository root: {sorted(top - TOP_LEVEL)}"


def test_docs_hold_pages_and_scripts_not_generated_files():
    docs = [path for path in tracked() if path.startswith("docs/")]
    assert docs, "docs/ holds no pages"
    assert all(path.endswith((".md", ".sh")) for path in docs), docs


def test_the_docs_output_folder_is_ignored():
    ignored = git("check-ignore", "-q", "out/report.png").returncode == 0
    assert ignored, "out/ (where the docs' commands write) is not in .gitignore"
