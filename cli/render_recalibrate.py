"""Render what ``gaussnll recalibrate`` reports: the map it fitted and the scores before and
after applying it (a table, Markdown, JSON; ``html_report`` draws its page)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from gaussnll.cli.literal import markdown, shown
from gaussnll.cli.render import finite, markdown_table, number
from gaussnll.cli.streams import StdoutConsole
from gaussnll.core import RecalibrationMap, Report

RECALIBRATE_SCHEMA = "gaussnll.recalibrate/1"
# What the map's scale multiplies (the JSON's ``fits``, the table's caption).
PLAIN_FIT = "the scale of each variance"
ENSEMBLE_FIT = (
    "the scale of the moment-matched variance (sum w*v + sum w*(mu - mu*)^2); score --ensemble "
    "applies it to each member's variance, which scales the aleatoric part (sum w*v) only"
)
BEFORE_AFTER = ("metric", "before", "after")


@dataclass(frozen=True)
class RecalibrationReport:
    """A recalibration: the map fitted on ``path`` and written to ``output``, and the reports
    of ``path`` before and after applying it."""

    path: str
    output: str
    fitted: RecalibrationMap
    before: Report
    after: Report

    @property
    def fits(self) -> str:
        """What the map's scale multiplies."""
        return ENSEMBLE_FIT if self.before.ensemble is not None else PLAIN_FIT

    @property
    def title(self) -> str:
        scales = ", ".join(number(s) for s in self.fitted.scale)
        by = self.fitted.by
        groups = f"; {len(self.fitted.groups):,} groups by {', '.join(by)}" if by else ""
        return f"gaussnll recalibrate: {self.path} → {self.output} (scale {scales}{groups})"

    def rows(self) -> list[tuple[str, str, str]]:
        """Each number recalibration changes (by the name a check uses), before and after."""
        first, second = summary(self.before), summary(self.after)
        names = ("nll", "var_scale", "mace")
        rows = [(name, number(first[name]), number(second[name])) for name in names]
        for level in first["coverage"]:
            rows.append(
                (
                    f"coverage@{level}",
                    number(first["coverage"][level]),
                    number(second["coverage"][level]),
                )
            )
        return rows


def recalibrate_json(report: RecalibrationReport) -> Iterator[str]:
    """The map, what it fits and the numbers before and after, as one JSON object (schema
    ``gaussnll.recalibrate/1``)."""
    payload = {
        **report.fitted.to_dict(),
        "schema": RECALIBRATE_SCHEMA,  # the map's own schema is the file's
        "map": report.output,
        "fits": report.fits,
        "before": summary(report.before),
        "after": summary(report.after),
    }
    yield json.dumps(finite(payload), indent=2)


def print_recalibrate(report: RecalibrationReport) -> None:
    table = Table(
        title=Text(shown(report.title)),
        title_justify="left",
        caption=f"fits {report.fits}",
        caption_justify="left",
    )
    for header in BEFORE_AFTER:
        table.add_column(header, justify="left" if header == "metric" else "right")
    for row in report.rows():
        table.add_row(*row)
    StdoutConsole().print(table)


def recalibrate_markdown(report: RecalibrationReport) -> str:
    """The same, as Markdown: the title, the table, and what the map fits."""
    lines = [f"### {markdown(report.title)}", ""]
    lines += markdown_table(BEFORE_AFTER, report.rows(), keys=1, code=0)
    return "\n".join([*lines, "", f"The map fits {markdown(report.fits)}."])


def summary(report: Report) -> dict[str, Any]:
    """The numbers recalibration changes: the NLL, calibration error and coverage."""
    calibration = report.calibration
    assert calibration is not None  # recalibrate always computes it
    return {
        "nll": report.nll_mean,
        "var_scale": calibration.var_scale,
        "mace": calibration.mace,
        "coverage": dict(
            zip(map(str, calibration.levels), calibration.coverage or [], strict=False)
        ),
    }
