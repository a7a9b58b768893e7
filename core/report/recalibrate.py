"""Fit a recalibration map from a report: each output's ``var_scale`` (``s* = mean(z²)``, the
factor on its variances that minimises the NLL), overall and per group.

An ensemble's report scores its moment-matched Gaussian, so its map holds the scale of the
moment-matched variance ``Σ w v + Σ w (μ - μ*)²`` (``fitted_on["variance"]``); applied, it
multiplies each member's variance, which scales the aleatoric part ``Σ w v`` only.
"""

from __future__ import annotations

from gaussnll.core.errors import UsageError
from gaussnll.core.recalibration import RecalibrationMap
from gaussnll.core.report.report import Report

MOMENT_MATCHED = "moment-matched"  # ``fitted_on["variance"]`` of a map fitted on an ensemble


def fit_recalibration(report: Report) -> RecalibrationMap:
    """The map of ``report``'s variance scales (it needs the calibration section)."""
    scale = _scales(report)
    groups = {}
    rows = {}
    for group in report.groups:
        key = tuple(group.to_dict(report.by)["key"].values())
        groups[key] = _scales(group.report)
        rows[key] = group.report.rows
    return RecalibrationMap(
        scale=scale,
        outputs=tuple(output.column for output in report.outputs),
        eps=report.eps,
        by=report.by,
        groups=groups,
        group_rows=rows,
        fitted_on={
            "path": report.path,
            "rows": report.rows,
            **({"variance": MOMENT_MATCHED} if report.ensemble is not None else {}),
        },
    )


def _scales(report: Report) -> tuple[float, ...]:
    scales = []
    for output in report.outputs:
        if output.calibration is None or output.calibration.var_scale is None:
            raise UsageError(
                "fitting a recalibration needs the var_scale metrics: drop calibration=False"
            )
        scales.append(output.calibration.var_scale)
    return tuple(scales)
