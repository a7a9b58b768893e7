"""Render the samples section (table, Markdown, HTML) as one grid; the rest of the report is the
draws' moment-matched Gaussian's, rendered as any report."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from gaussnll.cli.layout import Grid
from gaussnll.core import Report

SAMPLES_TITLE = "samples (the draws; the rest is their moment-matched Gaussian)"
SHOWN_RANKS = 12  # ranks listed one by one; more are summarised by their range
Value = TypeVar("Value")


def samples_grid(
    report: Report, number: Callable[[float], str], *, scalars: bool = True
) -> Grid | None:
    """The section as a (label, name, value) grid, numbers as ``number`` writes them: its
    scalars (unless the summary lists them: ``scalars=False``), coverage per level and the rank
    histogram; None without samples."""
    section = report.samples
    if section is None:
        return None
    rows = []
    if scalars:
        fair = section.sample_crps_fair
        rows += [
            ("draws per row", "sample_members", _or_mixed(section.sample_members, str)),
            ("CRPS (energy form)", "sample_crps", number(section.sample_crps)),
            ("CRPS (fair)", "sample_crps_fair", _or_mixed(fair, number, "null (one draw)")),
            ("quantile MACE", "sample_quantile_mace", number(section.sample_quantile_mace)),
        ]
        if section.sample_energy_score is not None:  # several outputs
            fair = section.sample_energy_score_fair
            rows += [
                ("energy score", "sample_energy_score", number(section.sample_energy_score)),
                (
                    "energy score (fair)",
                    "sample_energy_score_fair",
                    _or_mixed(fair, number, "null (one draw)"),
                ),
            ]
    for level, share in zip(section.levels, section.sample_coverage, strict=True):
        rows.append((f"coverage at {level:g}", f"sample_coverage@{level:g}", f"{share:.4f}"))
    ranks = _or_mixed(section.sample_rank_counts, _ranks)
    rows.append(("rank histogram", "sample_rank_counts", ranks))
    return Grid(SAMPLES_TITLE, ("metric", "name", "value"), rows, keys=2, optional=(0,))


def _or_mixed(
    value: Value | None, shown: Callable[[Value], str], null: str = "null (files differ in M)"
) -> str:
    """``value`` as ``shown`` writes it, or ``null`` (by default: the files differ in their
    draws per row)."""
    return null if value is None else shown(value)


def _ranks(counts: list[float]) -> str:
    """The counts per rank, or their range when there are many."""
    shown = [f"{count:g}" for count in counts]
    if len(shown) <= SHOWN_RANKS:
        return ", ".join(shown)
    return f"{len(shown)} ranks from {min(counts):g} to {max(counts):g}"
