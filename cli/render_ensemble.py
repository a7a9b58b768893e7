"""Render an ensemble's mixture section (table and Markdown); the rest of the report is its
moment-matched Gaussian's, rendered as any report."""

from __future__ import annotations

from collections.abc import Callable

from rich.table import Table

from gaussnll.cli.literal import markdown
from gaussnll.core import Report

SHOWN_MEMBERS = 8  # members listed one by one; more are summarised by their range


Format = Callable[[float], str]
ENSEMBLE_TITLE = "ensemble (as a mixture; the rest is its moment-matched Gaussian)"


def ensemble_rows(report: Report, number: Format) -> list[tuple[str, str]]:
    """The section as (label, value) pairs, numbers as ``number`` writes them; none without an
    ensemble."""
    section = report.ensemble
    if section is None:
        return []
    scored = [nll for nll in section.member_nll if nll is not None]
    rows = [
        ("members / weights", f"{section.members} / {_listed(section.weights, '{:.3g}')}"),
        ("mixture NLL", number(section.mixture_nll)),
        ("member NLL (weighted mean)", number(section.member_nll_mean)),
        ("member NLL each", _listed(scored, "{:.4f}")),
        (
            "aleatoric / epistemic var",
            f"{number(section.aleatoric_var)} / {number(section.epistemic_var)}",
        ),
        ("epistemic fraction", f"{section.epistemic_fraction:.4f}"),
    ]
    if section.mixture_crps is not None and report.calibration is not None:
        rows.append(("mixture CRPS", number(section.mixture_crps)))
        coverage = zip(report.calibration.levels, section.mixture_coverage, strict=True)
        rows.append(
            ("mixture coverage", ", ".join(f"{level:g}: {share:.4f}" for level, share in coverage))
        )
    if section.mixture_quantile_mace is not None:
        rows.append(("mixture one-sided MACE", number(section.mixture_quantile_mace)))
    return rows


def ensemble_table(report: Report, number: Format) -> Table:
    table = Table(
        title=ENSEMBLE_TITLE,
        title_justify="left",
        show_header=False,
    )
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for label, value in ensemble_rows(report, number):
        table.add_row(label, value)
    return table


def ensemble_markdown(report: Report, number: Format) -> list[str]:
    """The section as Markdown lines (none without an ensemble)."""
    rows = ensemble_rows(report, number)
    if not rows:
        return []
    lines = ["", "**ensemble** (as a mixture)", "", "| metric | value |", "| --- | ---: |"]
    return lines + [f"| {markdown(label)} | {markdown(value)} |" for label, value in rows]


def _listed(values: list[float], style: str) -> str:
    if len(values) <= SHOWN_MEMBERS:
        return ", ".join(style.format(value) for value in values)
    low, high = style.format(min(values)), style.format(max(values))
    return f"{len(values)} from {low} to {high}"
