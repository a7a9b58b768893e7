"""Each row's variance scales from a recalibration map: looked up by the row's key in the map's
``by`` columns (Arrow finds each chunk's distinct keys; Python sees only new ones), the map's
overall scales for a key it has not seen."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from gaussnll.core.io.grouping import GroupKeys
from gaussnll.core.io.tensors import Location
from gaussnll.core.recalibration import RecalibrationMap


class ScaleLookup:
    """The scales of each row of the batches it is given, and how many rows had a key the map
    had not seen (``unseen_rows``)."""

    def __init__(self, recalibration: RecalibrationMap) -> None:
        self.map = recalibration
        self.unseen_rows = 0
        self._overall = np.asarray(recalibration.scale, dtype=np.float64)
        self._keys = GroupKeys(recalibration.by) if recalibration.by else None
        self._table = np.empty((0, len(self._overall)))
        self._unseen = np.empty(0, dtype=bool)

    @property
    def columns(self) -> tuple[str, ...]:
        """The key columns the map needs read."""
        return self.map.by

    def scales(self, batch: pa.RecordBatch, where: Location | None = None) -> np.ndarray:
        """``(rows, outputs)`` scales of the batch's rows (``where``: where it sits, for
        errors)."""
        if self._keys is None:
            return np.repeat(self._overall[np.newaxis], batch.num_rows, axis=0)
        index = self._keys.index(batch, where)
        new = self._keys.keys[len(self._table) :]
        if new:
            found = [self.map.scale_of(key) for key in new]
            rows = [self._overall if scales is None else np.asarray(scales) for scales in found]
            self._table = np.vstack([self._table, *rows])
            self._unseen = np.concatenate([self._unseen, [scales is None for scales in found]])
        self.unseen_rows += int(np.count_nonzero(self._unseen[index]))
        return self._table[index]
