"""The calibration and accuracy summaries of many reports (groups, outputs), held by column."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from gaussnll.core.report.report import AccuracySummary, CalibrationSummary
from gaussnll.core.state.uncertainty import row_fields

Summaries = tuple[CalibrationSummary | None, AccuracySummary | None]
ACCURACY = "accuracy"
_ACCURACY = tuple(field.name for field in dataclasses.fields(AccuracySummary))


@dataclass(frozen=True)
class SummaryTable:
    """The calibration and accuracy summaries of a batch (e.g. groups), stored by column: a
    row's dataclasses are built only when asked for, so 10^5 groups hold arrays of numbers,
    not 10^5 objects. The scalar summaries (all floats) sit side by side in one matrix, so a
    row reads them in one step rather than one column at a time (see bench/README.md); each
    per-level or per-bin summary is a matrix of its own."""

    levels: tuple[float, ...]
    pit_bins: int
    scalar_names: tuple[str, ...]
    scalars: np.ndarray  # (rows, scalar_names)
    vectors: dict[str, np.ndarray]  # name: (rows, levels or bins)
    families: frozenset[str]  # the metric families whose numbers the columns hold

    @classmethod
    def of_columns(
        cls,
        levels: tuple[float, ...],
        pit_bins: int,
        columns: dict[str, np.ndarray],
        rows: int,
        families: frozenset[str],
    ) -> SummaryTable:
        """The table of ``columns`` of ``rows`` rows: one value (1-d) or one per level or bin
        (2-d) a row, of the metric ``families``."""
        scalars = {name: column for name, column in columns.items() if column.ndim == 1}
        vectors = {name: column for name, column in columns.items() if column.ndim == 2}
        matrix = np.stack(list(scalars.values()), axis=1) if scalars else np.empty((rows, 0))
        return cls(levels, pit_bins, tuple(scalars), matrix, vectors, families)

    def row(self, index: int) -> Summaries:
        """A row's summaries: None for a section none of whose families were computed; a
        family not computed leaves its fields None."""
        values = dict(zip(self.scalar_names, self.scalars[index].tolist(), strict=True))
        values.update({name: column[index].tolist() for name, column in self.vectors.items()})
        accuracy = None
        if ACCURACY in self.families:
            accuracy = AccuracySummary(**{name: values.pop(name) for name in _ACCURACY})
        if "uncertainty" in self.families:
            values.update(row_fields(values))
        calibration = None
        if self.families - {ACCURACY}:
            calibration = CalibrationSummary(
                levels=list(self.levels), pit_bins=self.pit_bins, **values
            )
        return calibration, accuracy
