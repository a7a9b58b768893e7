"""The calibration and accuracy summaries of many reports (groups, outputs), held by column."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaussnll.core.report.fields import PerReport, Shared, json_columns
from gaussnll.core.report.report import AccuracySummary, CalibrationSummary
from gaussnll.core.state.uncertainty import row_fields

Summaries = tuple[CalibrationSummary | None, AccuracySummary | None]
SummaryColumns = tuple[dict[str, Any] | None, dict[str, Any] | None]  # ``json_columns`` of both
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

    @staticmethod
    def gathered(parts: Sequence[tuple[SummaryTable, np.ndarray]]) -> SummaryTable:
        """The rows ``rows`` of each ``(table, rows)`` of ``parts`` (tables of one layout),
        one table after the other."""
        first = parts[0][0]
        return dataclasses.replace(
            first,
            scalars=np.concatenate([table.scalars[rows] for table, rows in parts]),
            vectors={
                name: np.concatenate([table.vectors[name][rows] for table, rows in parts])
                for name in first.vectors
            },
        )

    def row(self, index: int) -> Summaries:
        """A row's summaries: None for a section none of whose families were computed; a
        family not computed leaves its fields None."""
        values = dict(zip(self.scalar_names, self.scalars[index].tolist(), strict=True))
        values.update({name: column[index].tolist() for name, column in self.vectors.items()})
        accuracy = self._accuracy(values)
        if "uncertainty" in self.families:
            values.update(row_fields(values))
        calibration = None
        if self._calibrated:
            calibration = CalibrationSummary(
                levels=list(self.levels), pit_bins=self.pit_bins, **values
            )
        return calibration, None if accuracy is None else AccuracySummary(**accuracy)

    def columns(self, rows: np.ndarray) -> SummaryColumns:
        """The summaries of rows ``rows`` by column (``json_columns`` of each section, None
        where ``row`` gives None): the values ``row`` gives, one row at a time."""
        values: dict[str, Any] = {
            name: PerReport(self.scalars[rows, at]) for at, name in enumerate(self.scalar_names)
        }
        values.update({name: PerReport(column[rows]) for name, column in self.vectors.items()})
        accuracy = self._accuracy(values)
        if "uncertainty" in self.families:  # lists of a length of each row's own
            each = [
                {name: column.values[at].tolist() for name, column in values.items()}
                for at in range(len(rows))
            ]
            fields = [row_fields(row) for row in each]
            values = {name: values[name] for name in each[0]}  # those row_fields left
            values.update({name: PerReport([row[name] for row in fields]) for name in fields[0]})
        accuracy_columns = None if accuracy is None else json_columns(AccuracySummary, accuracy)
        if not self._calibrated:
            return None, accuracy_columns
        shared = {"levels": Shared(list(self.levels)), "pit_bins": Shared(self.pit_bins)}
        return json_columns(CalibrationSummary, {**shared, **values}), accuracy_columns

    def _accuracy(self, values: dict[str, Any]) -> dict[str, Any] | None:
        """The accuracy section's values, popped from ``values`` (None when not computed)."""
        if ACCURACY not in self.families:
            return None
        return {name: values.pop(name) for name in _ACCURACY}

    @property
    def _calibrated(self) -> bool:
        """Whether a family of the calibration section was computed."""
        return bool(self.families - {ACCURACY})
