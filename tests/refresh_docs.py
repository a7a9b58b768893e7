"""Re-paste the output the README and docs/*.md show, after an intended change of what a command
prints: ``python tests/refresh_docs.py [PAGE...]`` runs each page's blocks as tests/test_readme.py
does (in order, in a temporary directory holding ``sample_data/``, a terminal of 100 columns) and
replaces the shown output of every ``console`` command whose output differs, unless it holds a
``...`` line (those it names, to be edited by hand). Read the diff before committing it."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from test_readme import (
    BLOCK,
    PAGES,
    ROOT,
    Block,
    blocks,
    console_commands,
    installed_gaussnll,
    run,
    shows,
)


def refreshed(page: Path, folder: Path, env: dict[str, str]) -> str:
    """The page's text with each differing console output replaced by what its command prints
    (every block runs, in order, as the tests run them)."""
    text = page.read_text()
    spans = [(found.start("code"), found.end("code")) for found in BLOCK.finditer(text)]
    codes: list[str] = []
    for block in blocks(page):
        codes.append(block.code)
        if block.reason is not None:
            continue
        if block.language == "bash":
            _run(["bash", "-c", block.code], folder, env)
        elif block.language == "python":
            _run([sys.executable, "-c", block.code], folder, env)
        else:
            codes[-1] = _console(block, folder, env)
    for (start, end), code in reversed(list(zip(spans, codes, strict=True))):
        text = text[:start] + code + text[end:]
    return text


def _console(block: Block, folder: Path, env: dict[str, str]) -> str:
    """A console block with each command's output as it prints now (its lines as written)."""
    lines: list[str] = []
    written = block.code.splitlines()
    for command, output in console_commands(block.code):
        typed = [written.pop(0)]
        while typed[-1].endswith("\\"):
            typed.append(written.pop(0))
        del written[: len(output)]
        printed = _run(["bash", "-o", "pipefail", "-c", command], folder, env)
        if output and not shows(output, printed):
            if "..." in output:
                print(f"{block}: $ {command}: edit by hand (its output holds '...')")
            else:
                output = printed
        lines += [*typed, *output]
    return "\n".join(lines) + "\n"


def _run(argv: list[str], folder: Path, env: dict[str, str]) -> list[str]:
    return run(argv, folder, env).stdout.splitlines()


def main(names: list[str]) -> None:
    pages = [Path(name).resolve() for name in names] or PAGES
    gaussnll = Path(installed_gaussnll()).parent
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    env["PATH"] = f"{gaussnll}{os.pathsep}{env['PATH']}"
    for page in pages:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "sample_data").symlink_to(ROOT / "sample_data")
            text = refreshed(page, Path(folder), env)
        if text != page.read_text():
            page.write_text(text)
            print(f"{page.relative_to(ROOT)}: refreshed")


if __name__ == "__main__":
    main(sys.argv[1:])
