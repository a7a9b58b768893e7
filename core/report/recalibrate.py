"""Fit a recalibration map from a report: each output's ``var_scale`` (``s* = mean(z²)``, the
factor on its variances that minimises the NLL), overall and per group. A scale must be finite
and positive, or the map could not be applied (nor read back): a fit without one is refused.

An ensemble's report scores its moment-matched Gaussian, so its map holds the scale of the
moment-matched variance ``Σ w v + Σ w (μ - μ*)²`` (``fitted_on["variance"]``); applied, it
multiplies each member's variance, which scales the aleatoric part ``Σ w v`` only.
"""

from __future__ import annotations

import math

from gaussnll.core.errors import InputError, UsageError
from gaussnll.core.recalibration import RecalibrationMap
from gaussnll.core.report.report import Report

MOMENT_MATCHED = "moment-matched"  # ``fitted_on["variance"]`` of a map fitted on an ensemble


def fit_recalibration(report: Report) -> RecalibrationMap:
    """The map of ``report``'s variance scales (it needs the calibration section)."""
    scale = _scales(report, "")
    groups = {}
    rows = {}
    for group in report.groups:
        named = group.to_dict(report.by)["key"]
        key = tuple(named.values())
        shown = ", ".join(f"{name}={value!r}" for name, value in named.items())
        groups[key] = _scales(group.report, f" of the group {shown}")
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


def _scales(report: Report, scope: str) -> tuple[float, ...]:
    """The variance scale of each output of ``report`` (of the whole input, or of the group
    ``scope`` names), each finite and positive."""
    scales = []
    for output in report.outputs:
        if output.calibration is None or output.calibration.var_scale is None:
            raise UsageError(
                "fitting a recalibration needs the var_scale metrics: drop calibration=False"
            )
        scale = output.calibration.var_scale
        if not (math.isfinite(scale) and scale > 0):
            why = (
                "its targets equal its means, so no variance is best"
                if scale == 0
                else "a NaN or an infinity reached it under --nan-policy propagate"
            )
            raise InputError(
                f"cannot fit a variance scale for output {output.column!r}{scope}: it is "
                f"{scale} ({why}); a map needs a finite positive scale",
                path=report.path,
            )
        scales.append(scale)
    return tuple(scales)
