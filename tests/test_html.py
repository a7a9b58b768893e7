"""``--html FILE``: a well-formed, self-contained page with every figure, data escaped, written
atomically, matplotlib loaded only for it, and rendered by a real browser."""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gaussnll.cli.app import app
from gaussnll.cli.formats import HTML, JUNIT, RENDERERS, STDOUT_FORMATS
from gaussnll.cli.render_recalibrate import RecalibrationReport
from gaussnll.cli.settings import BY_NAME
from gaussnll.core import CompareReport, Report

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}
SVG_NAMESPACES = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink")


def run(*args: str):
    return CliRunner().invoke(app, [*args, "-q"])


class Balance(html.parser.HTMLParser):
    """Fails on an end tag that does not close the innermost open element."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()

    def handle_data(self, data):
        self.texts.append(data)


def parsed(page: str) -> Balance:
    parser = Balance()
    parser.feed(page)
    parser.close()
    assert parser.open == []
    return parser


def svgs(page: str) -> list[ET.Element]:
    """Every inline figure, each parsed as XML (so each is well-formed on its own)."""
    return [ET.fromstring(svg) for svg in re.findall(r"<svg.*?</svg>", page, re.DOTALL)]


def assert_self_contained(page: str) -> None:
    """No URL but the SVG namespace declarations; no script, no external resource."""
    for match in re.finditer(r"https?://[^\s\"'<>)]*", page):
        assert match.group(0) in SVG_NAMESPACES, match.group(0)
        assert re.search(r'xmlns(:\w+)?="$', page[: match.start()][-20:]), match.group(0)
    assert "<script" not in page.lower()
    assert not re.search(r"<(link|img|iframe)\b", page)


@pytest.fixture(scope="module")
def score_page(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("page") / "report.html"
    result = run(
        "score",
        str(SAMPLE / "preds.parquet"),
        "--by",
        "region",
        "--group-metrics",
        "+calibration",  # the groups' curves: a figure of their own
        "--check",
        "ence <= 0.5",
        "--check",
        "mace <= 0.01",
        "--html",
        str(path),
    )
    assert result.exit_code == 1, result.output  # the second check fails
    return path.read_text(encoding="utf-8")


def test_score_page_is_well_formed_and_self_contained(score_page):
    parsed(score_page)
    assert score_page.startswith("<!DOCTYPE html>")
    assert_self_contained(score_page)


def test_score_page_holds_every_figure_and_table(score_page):
    figures = svgs(score_page)
    assert len(figures) == 5  # curve, PIT, error vs uncertainty, σ, the groups' curves
    titles = [" ".join("".join(e.itertext()).split()) for e in figures]
    for title in ("Calibration", "PIT histogram", "Error vs uncertainty", "Predicted σ"):
        assert any(title in text for text in titles), title
    text = " ".join(parsed(score_page).texts)
    for heading in ("Coverage per level", "By region: 3 groups", "Every metric", "Settings"):
        assert heading in text
    for region in ("west", "central", "east"):
        assert region in text
    assert score_page.count("class='worst'") >= 6  # one per metric column


def test_checks_are_marked_passed_or_failed(score_page):
    check_row = r"<tr><td class='key'>([^<]*)</td><td>[^<]*</td><td class='(\w+)'>"
    rows = re.findall(check_row, score_page)
    assert ("ence &lt;= 0.5", "pass") in rows
    assert ("mace &lt;= 0.01", "fail") in rows
    assert "Checks: 1 failed" in score_page


def drawn(path: Path, *args: str) -> str:
    """The page ``args --html path`` draws, checked well-formed and self-contained."""
    result = run(*args, "--html", str(path))
    assert result.exit_code == 0, result.output
    page = path.read_text(encoding="utf-8")
    parsed(page)
    assert_self_contained(page)
    return page


def test_compare_page_overlays_both_models(tmp_path):
    compared = (str(SAMPLE / "preds.parquet"), str(SAMPLE / "preds_candidate.parquet"))
    page = drawn(tmp_path / "compare.html", "compare", *compared, "--id-col", "id")
    figures = svgs(page)
    assert len(figures) == 4  # paired difference, curves, PIT, error vs uncertainty
    legends = [" ".join(e.itertext()) for e in figures[1:]]
    assert all("baseline" in text and "candidate" in text for text in legends)
    assert "verdict: better" in page


def test_data_is_escaped(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "mean": rng.normal(size=300),
            "target": rng.normal(size=300),
            "var": rng.uniform(0.5, 2, 300),
            "g": ["<script>alert(1)</script>", "a&b \x1b[31m", "$x^2$"] * 100,
        }
    )
    data = tmp_path / "odd <name>.parquet"
    frame.to_parquet(data)
    path = tmp_path / "page.html"
    result = run("score", str(data), "--by", "g", "--html", str(path))
    assert result.exit_code == 0, result.output
    page = path.read_text(encoding="utf-8")
    parsed(page)
    assert "<script" not in page and "\x1b" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&amp;b \\x1b[31m" in page
    assert "odd &lt;name&gt;.parquet" in page
    svgs(page)  # group labels inside the figures are escaped XML too


def test_the_page_is_written_atomically(tmp_path):
    path = tmp_path / "page.html"
    path.write_text("old")
    bad = tmp_path / "bad.csv"
    bad.write_text("mean,target,var\n0,1,-1\n")
    result = run("score", str(bad), "--html", str(path))
    assert result.exit_code == 2
    assert path.read_text() == "old"
    missing = tmp_path / "no" / "page.html"
    result = run("score", str(SAMPLE / "preds.parquet"), "--html", str(missing))
    assert result.exit_code == 2 and "page.html" in result.stderr
    assert not missing.parent.exists()
    assert {p.name for p in tmp_path.iterdir()} == {"page.html", "bad.csv"}  # no temporary left


def test_without_matplotlib_html_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # find_spec then finds nothing
    path = tmp_path / "page.html"
    result = run("score", str(SAMPLE / "preds.parquet"), "--html", str(path))
    assert result.exit_code == 2
    assert "matplotlib" in result.stderr and "gaussnll[html]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not path.exists()


def test_html_with_rows_on_stdout_is_a_usage_error(tmp_path):
    path = tmp_path / "page.html"
    result = run("score", str(SAMPLE / "preds.parquet"), "--reduction", "none", "--html", str(path))
    assert result.exit_code == 2 and not path.exists()


LOADED = """
import sys
from gaussnll.cli.app import app
try:
    app(prog_name="gaussnll", args=sys.argv[1:])
except SystemExit:
    pass
print("matplotlib" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("args", "loaded"),
    [
        (["--help"], False),
        (["score", "--help"], False),
        (["score", str(SAMPLE / "preds.parquet"), "-q"], False),
        (["score", str(SAMPLE / "preds.parquet"), "-q", "--html", "{page}"], True),
    ],
)
def test_matplotlib_is_imported_only_to_draw_a_page(tmp_path, args, loaded):
    args = [arg.format(page=tmp_path / "page.html") for arg in args]
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *args], capture_output=True, text=True, timeout=120
    )
    assert done.stderr.strip().splitlines()[-1] == str(loaded), done.stderr


def browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_a_browser_renders_the_page(score_page, tmp_path):
    executable = browser()
    if executable is None:
        pytest.skip("no Chromium or Chrome to render the page")
    page, shot = tmp_path / "page.html", tmp_path / "page.png"
    page.write_text(score_page, encoding="utf-8")
    subprocess.run(
        [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,2400",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=False,
    )
    image = pytest.importorskip("PIL.Image").open(shot).convert("RGB")
    assert image.size == (1200, 2400)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # text, figures, shading: not blank
    background = max(colours)[0] / (1200 * 2400)
    assert background < 0.9  # no single colour fills the page


def test_the_page_has_the_ensemble_section(tmp_path):
    path = tmp_path / "page.html"
    result = run("score", str(SAMPLE / "ensemble.parquet"), "--ensemble", "--html", str(path))
    assert result.exit_code == 0, result.output
    page = path.read_text(encoding="utf-8")
    parsed(page)
    payload = json.loads(
        run("score", str(SAMPLE / "ensemble.parquet"), "--ensemble", "--json").stdout
    )
    assert "<h2>Ensemble (as a mixture; the rest is its moment-matched Gaussian)</h2>" in page
    assert f"<td>{payload['ensemble']['mixture_nll']:.5g}</td>" in page
    assert "<td class='key'>members / weights</td><td>5 / 0.2, 0.2, 0.2, 0.2, 0.2</td>" in page


def test_the_page_has_the_per_output_section_its_names_escaped(tmp_path):
    rng = np.random.default_rng(1)
    names = {role: [f"{role}<b>|{i}" for i in (0, 1)] for role in ("mean", "target", "var")}
    frame = pd.DataFrame(
        {name: rng.uniform(0.5, 2, 200) for names_ in names.values() for name in names_}
    )
    data = tmp_path / "two.parquet"
    frame.to_parquet(data)
    columns = [item for role, each in names.items() for item in (f"--{role}-col", ",".join(each))]
    path = tmp_path / "page.html"
    result = run("score", str(data), *columns, "--html", str(path))
    assert result.exit_code == 0, result.output
    page = path.read_text(encoding="utf-8")
    parsed(page)
    assert "<h2>Per output</h2>" in page
    assert "<td class='key'>mean&lt;b&gt;|0</td>" in page and "<b>" not in page
    markdown = run("score", str(data), *columns, "--format", "markdown").stdout
    assert "**per output**" in markdown
    assert "| mean\\<b\\>\\|1 |" in markdown


def test_recalibrate_draws_its_page_before_and_after(tmp_path):
    fitted_on = str(SAMPLE / "preds.parquet")
    page = drawn(tmp_path / "page.html", "recalibrate", fitted_on, "-o", str(tmp_path / "m.json"))
    assert "<h1>gaussnll recalibrate</h1>" in page and "<h2>Before and after</h2>" in page
    assert len(svgs(page)) == 3  # calibration curves, PIT histograms, error vs uncertainty
    assert "Calibration curves: before and after." in page


def test_every_report_has_every_format_and_every_reporting_command_takes_html():
    reports = {Report, CompareReport, RecalibrationReport}
    for output_format in (*STDOUT_FORMATS, HTML):
        assert set(RENDERERS[output_format]) == reports, output_format
    # JUnit lists the checks: recalibrate takes no --check
    assert set(RENDERERS[JUNIT]) == {Report, CompareReport}
    assert BY_NAME["html"].commands == BY_NAME["format"].commands
    assert (
        BY_NAME["junit_xml"].commands
        == BY_NAME["checks"].commands | BY_NAME["compare_checks"].commands
    )


def test_groups_without_their_curves_draw_no_curves_figure(tmp_path):
    """By default a group has no calibration curve (``--group-metrics +calibration`` adds it):
    the page draws the whole input's figures and the groups' table, without an empty panel."""
    page = drawn(tmp_path / "page.html", "score", str(SAMPLE / "preds.parquet"), "--by", "region")
    titles = [" ".join("".join(e.itertext()).split()) for e in svgs(page)]
    assert len(titles) == 4 and not any("west" in title for title in titles)  # a key
    assert "By region: 3 groups" in " ".join(parsed(page).texts)
