"""Every output format of every report, in one registry: ``RENDERERS[format][report type]``.

``table``, ``markdown`` and ``json`` go to stdout, ``junit`` and ``html`` to files. A renderer
takes a report object — a score ``Report`` (of ``score`` and ``merge``), a ``CompareReport``, a
``RecalibrationReport`` — and ``Shown``, what the run adds to it (the checks' results, the
settings, the config file, the command), and returns its text in pieces; the table prints itself
(to fit the terminal) and returns None. A command renders through ``to_stdout`` and ``text``;
a new format is one entry here per report type, a new report one entry per format.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gaussnll.cli.html_report import compare_page, recalibrate_page, score_page
from gaussnll.cli.junit import junit_xml
from gaussnll.cli.render import CheckResults, print_report, report_json, report_markdown
from gaussnll.cli.render_compare import compare_json, compare_markdown, print_compare
from gaussnll.cli.render_recalibrate import (
    RecalibrationReport,
    print_recalibrate,
    recalibrate_json,
    recalibrate_markdown,
)
from gaussnll.cli.streams import write_behind, writing_stdout
from gaussnll.core import COMPARE_METRICS, SCORE_METRICS, CompareReport, Report

TABLE, MARKDOWN, JSON, JUNIT, HTML = "table", "markdown", "json", "junit", "html"
STDOUT_FORMATS = (TABLE, JSON, MARKDOWN)  # what --format chooses


@dataclass(frozen=True)
class Shown:
    """What a run adds to its report: the command, the checks' results, the resolved settings
    and the config file read."""

    command: str
    results: CheckResults = ()
    settings: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None


Renderer = Callable[[Any, Shown], Iterable[str] | None]

RENDERERS: dict[str, dict[type, Renderer]] = {
    TABLE: {
        Report: lambda report, shown: print_report(
            report, shown.results, config_file=shown.config_file
        ),
        CompareReport: lambda report, shown: print_compare(
            report, shown.results, config_file=shown.config_file
        ),
        RecalibrationReport: lambda report, shown: print_recalibrate(report),
    },
    MARKDOWN: {
        Report: lambda report, shown: [
            report_markdown(report, shown.results, config_file=shown.config_file)
        ],
        CompareReport: lambda report, shown: [
            compare_markdown(report, shown.results, config_file=shown.config_file)
        ],
        RecalibrationReport: lambda report, shown: [recalibrate_markdown(report)],
    },
    JSON: {
        Report: lambda report, shown: report_json(
            report, shown.results, config_file=shown.config_file, settings=shown.settings
        ),
        CompareReport: lambda report, shown: compare_json(
            report, shown.results, config_file=shown.config_file, settings=shown.settings
        ),
        RecalibrationReport: lambda report, shown: recalibrate_json(report),
    },
    JUNIT: {  # the checks: a command without --check has none
        Report: lambda report, shown: [
            junit_xml(
                shown.results,
                f"gaussnll {shown.command} {report.path}",
                report.seconds,
                SCORE_METRICS,
            )
        ],
        CompareReport: lambda report, shown: [
            junit_xml(
                shown.results, f"gaussnll compare {report.label}", report.seconds, COMPARE_METRICS
            )
        ],
    },
    HTML: {
        Report: lambda report, shown: [
            score_page(report, shown.results, shown.settings, shown.command)
        ],
        CompareReport: lambda report, shown: [compare_page(report, shown.results, shown.settings)],
        RecalibrationReport: lambda report, shown: [recalibrate_page(report, shown.settings)],
    },
}


def _rendered(output_format: str, report: Any, shown: Shown) -> Iterable[str] | None:
    renderer = RENDERERS[output_format].get(type(report))
    if renderer is None:
        raise TypeError(f"no {output_format} renderer of {type(report).__name__}")
    return renderer(report, shown)


def to_stdout(output_format: str, report: Any, shown: Shown) -> None:
    """Print ``report`` on stdout in ``output_format`` (``STDOUT_FORMATS``)."""
    with writing_stdout():
        pieces = _rendered(output_format, report, shown)
        if pieces is not None:
            write_behind(pieces)
            sys.stdout.write("\n")


def text(output_format: str, report: Any, shown: Shown) -> str:
    """``report`` as the text of a file in ``output_format`` (``junit``, ``html``)."""
    return "".join(_rendered(output_format, report, shown) or ())
