"""The report a scorer's sums give: derived on one thread per kernel, checked for overflow, and
naming the recalibration map that was applied."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from gaussnll.core.errors import InputError
from gaussnll.core.io.devices import single_threaded_kernels
from gaussnll.core.io.grouping import GroupKeys
from gaussnll.core.options import ScoreOptions
from gaussnll.core.report.derive import derive_report
from gaussnll.core.report.report import Report
from gaussnll.core.run.validation import raise_on_overflow
from gaussnll.core.state.score_state import ScoreState


def report_of(
    state: ScoreState,
    options: ScoreOptions,
    group_keys: GroupKeys | None,
    unseen_rows: int,
    device: torch.device,
    allow_empty: bool,
    **common: Any,
) -> Report:
    """Every reported number of ``state`` (scored on ``device``); ``unseen_rows``: the rows
    whose key the recalibration map had not seen; ``allow_empty``: a report of no rows (its
    means NaN) instead of an InputError; ``common``: the path, format and seconds every report
    holds."""
    if state.rows == 0 and not allow_empty:
        reason = (
            "weight 0, or a NaN or infinite value" if state.weighted else "a NaN or infinite value"
        )
        raise InputError(f"every row has {reason}: nothing to score", path=common["path"])
    with single_threaded_kernels(device.type == "cpu"):
        report = derive_report(state, options, group_keys, device=str(device), **common)
    if state.rows:  # without rows, a mean is 0 / 0, not an overflow
        raise_on_overflow(report.to_dict(groups=False), options, common["path"])
    if options.recalibration is None:
        return report
    return replace(report, recalibration=options.recalibration.record(unseen_rows))
