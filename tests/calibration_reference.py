"""The calibration metrics computed the slow, obvious way with scipy (uncertainty-toolbox's
definitions, one pass per level), as the independent reference for the streaming ones.

The scoring rules use the variance as given; a zero variance is a point mass at the mean,
whose CDF steps from 0 to 1 there and is ½ at the mean itself. The z statistics use the
variance floored at ``eps``, as the NLL does.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)


def standardised(error: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``error / std``, and a point mass's limit where ``std`` is 0: ±inf, or 0 on the mean."""
    point = std == 0
    limit = np.where(error > 0, np.inf, np.where(error < 0, -np.inf, 0.0))
    return np.where(point, limit, error / np.where(point, 1.0, std))


def reference(mean, target, var, eps=1e-6, pit_bins=20, levels=LEVELS) -> dict[str, object]:
    """Every calibration and accuracy metric of the report, from the arrays."""
    error = target - mean
    std = np.sqrt(var)
    z = standardised(error, std)
    nll_z = error / np.sqrt(np.maximum(var, eps))

    def inside(p):
        normalized = -z
        return np.mean(
            (normalized >= stats.norm.ppf(0.5 - p / 2))
            & (normalized <= stats.norm.ppf(0.5 + p / 2))
        )

    def quantile(tau):
        return mean + std * stats.norm.ppf(tau)

    expected = np.linspace(0, 1, 100)
    observed = np.array([inside(p) for p in expected])
    grid = np.linspace(0, 1, 200_001)
    area = np.trapezoid(np.abs(np.interp(grid, expected, observed) - grid), grid)
    taus = np.linspace(0.01, 0.99, 99)
    check = np.mean([np.mean((quantile(t) - target) * ((quantile(t) >= target) - t)) for t in taus])

    def interval_score(p):
        low, high = quantile(0.5 - p / 2), quantile(0.5 + p / 2)
        alpha = 1 - p
        return np.mean(
            (high - low)
            + 2 / alpha * np.maximum(low - target, 0)
            + 2 / alpha * np.maximum(target - high, 0)
        )

    finite = np.where(np.isfinite(z), z, 0.0)
    gaussian_crps = std * (
        finite * (2 * stats.norm.cdf(finite) - 1) + 2 * stats.norm.pdf(finite) - 1 / np.sqrt(np.pi)
    )
    crps = np.where(std == 0, np.abs(error), gaussian_crps)
    pit, _ = np.histogram(stats.norm.cdf(z), bins=np.linspace(0, 1, pit_bins + 1))
    return {
        "coverage": [inside(p) for p in levels],
        "interval_width": [np.mean(2 * stats.norm.ppf(0.5 + p / 2) * std) for p in levels],
        "interval_score": [interval_score(p) for p in levels],
        "pit_counts": pit.tolist(),
        "mace": np.mean(np.abs(expected - observed)),
        "rmsce": np.sqrt(np.mean((expected - observed) ** 2)),
        "miscalibration_area": area,
        "crps": np.mean(crps),
        "check_score": check,
        "interval_score_avg": np.mean([interval_score(p) for p in taus]),
        "sharpness": np.sqrt(np.mean(var)),
        "z_mean": np.mean(nll_z),
        "z_std": np.std(nll_z),
        "z2_mean": np.mean(nll_z**2),
        "var_scale": np.mean(nll_z**2),
        "mae": np.mean(np.abs(error)),
        "rmse": np.sqrt(np.mean(error**2)),
        "bias": np.mean(error),
    }


def assert_equals_reference(ours: dict[str, object], expected: dict[str, object]) -> None:
    """Counts exactly, the area to its quadrature's accuracy, every other number to 1e-10."""
    for key, value in expected.items():
        if key == "pit_counts":
            assert ours[key] == value, key
        elif key == "miscalibration_area":
            assert ours[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
        else:
            assert ours[key] == pytest.approx(value, rel=1e-10, abs=1e-13), key
