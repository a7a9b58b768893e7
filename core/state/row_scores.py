"""Each row's scores of one model, as ``compare`` pairs them across input forms.

A Gaussian's CRPS is closed form, ``σ [z (2Φ(z) - 1) + 2φ(z) - 1/√π]`` (a point mass where
``σ = 0``: ``|r|``), and its quantiles at levels ``τ`` are exact, ``μ + σ Φ⁻¹(τ)``; a quantile
model's rows (or anyone's quantiles at those levels) give the pinball losses, their mean (the
quantile score), ``crps_quantile`` (twice that mean, as scoringrules defines it), the weighted
interval score (``quantiles.wis_of``: the quantile form's own) and the indicators ``y ≤ q_τ``.
Scores use the variance as the model gave it, as the score command's scoring rules do.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gaussnll.core.state.quantiles import QuantileLevels, pinball, wis_of

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_PI = 1 / math.sqrt(math.pi)
_INV_SQRT_2 = 1 / math.sqrt(2)


def gaussian_crps(error: Tensor, std: Tensor) -> Tensor:
    """The CRPS of each element, ``r erf(z/√2) + σ √(2/π) exp(-z²/2) - σ/√π`` with
    ``r = y - μ`` and ``z = r/σ`` (``|r|`` where ``σ = 0``)."""
    z = torch.nan_to_num(error / std, nan=0.0, posinf=math.inf, neginf=-math.inf)
    density = torch.where(std > 0, torch.exp(-0.5 * z * z), torch.zeros_like(z))
    return error * torch.erf(z * _INV_SQRT_2) + std * (_SQRT_2_OVER_PI * density - _INV_SQRT_PI)


def gaussian_quantiles(mean: Tensor, std: Tensor, levels: tuple[float, ...]) -> Tensor:
    """A Gaussian's quantiles ``μ + σ Φ⁻¹(τ)`` at each level ``(rows, K)``; ``mean`` and
    ``std`` ``(rows, 1)``."""
    tau = torch.tensor(levels, dtype=torch.float64, device=mean.device)
    return mean + std * torch.special.ndtri(tau).to(mean.dtype)


def quantile_rows(quantiles: Tensor, target: Tensor, spec: QuantileLevels) -> dict[str, Tensor]:
    """Each row's quantile scores from its quantiles ``(rows, K)`` at ``spec``'s levels and
    its target ``(rows, 1)``: ``quantile_score``, ``crps_quantile`` and ``wis`` ``(rows,)``,
    and ``quantile_coverage`` ``(rows, K)`` (1 where ``y ≤ q_τ``)."""
    levels = torch.tensor(spec.levels, dtype=quantiles.dtype, device=quantiles.device)
    losses = pinball(quantiles, target, levels)
    score = losses.mean(dim=1)
    return {
        "quantile_score": score,
        "crps_quantile": 2 * score,
        "wis": wis_of(losses, spec)[:, 0],
        "quantile_coverage": (target <= quantiles).to(quantiles.dtype),
    }
