"""Gaussian negative log-likelihood, value- and gradient-identical to ``torch.nn.GaussianNLLLoss``.

The element-wise formula lives in :func:`nll_terms` so the streaming engine and the
drop-in functional compute every element with the same operations, hence the same bits.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
REDUCTIONS = ("none", "mean", "sum")


class NllTerms(NamedTuple):
    """The element-wise NLL and the terms it is made of (the calibration reuses them)."""

    loss: Tensor  # 0.5 * (log v + (mean - target)^2 / v), no constant
    log_var: Tensor  # log v, shaped like v
    squared_error: Tensor  # (mean - target)^2
    z2: Tensor  # (mean - target)^2 / v


def nll_terms(error: Tensor, floored_var: Tensor) -> NllTerms:
    """The NLL of each element and its terms, with torch's operations in torch's order (the
    same bits), from its ``error`` and ``v`` (already floored). The error may be torch's
    ``mean - target`` or ``target - mean``: IEEE subtraction is exactly antisymmetric and the
    error is squared, so both give the same bits."""
    squared_error = error**2
    log_var = torch.log(floored_var)
    z2 = squared_error / floored_var
    return NllTerms(0.5 * (log_var + z2), log_var, squared_error, z2)


def elementwise_nll(mean: Tensor, target: Tensor, floored_var: Tensor) -> Tensor:
    """Per-element ``0.5 * (log v + (mean - target)^2 / v)``, no constant; ``v`` already floored."""
    return nll_terms(mean - target, floored_var).loss


def gaussian_nll_loss(
    input: Tensor,
    target: Tensor,
    var: Tensor | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Tensor:
    """Drop-in for ``torch.nn.functional.gaussian_nll_loss``: same signature (every option may
    be given by position or keyword), values, gradients and errors.

    ``var`` may be a tensor shaped like ``input``, like ``input`` without its last dimension,
    like ``input`` with one dimension of size 1, or a Python float. ``eps`` floors ``var``; the
    floor is invisible to autograd, exactly as in torch.
    """
    var = _checked_var(input, var)
    if reduction not in REDUCTIONS:
        # Concatenated as torch does, so a reduction that is not a string raises its TypeError.
        raise ValueError(reduction + " is not valid")
    floored = var.clone()
    with torch.no_grad():
        floored.clamp_(min=eps)
    loss = elementwise_nll(input, target, floored)
    if full:
        loss += HALF_LOG_2PI
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _checked_var(input: Tensor, var: Tensor | float) -> Tensor:
    """Validate ``var`` in torch's order (sign first, then shape) and return it broadcastable."""
    if isinstance(var, float):
        if var < 0:
            raise ValueError("var has negative entry/entries")
        return var * torch.ones_like(input)
    if torch.any(var < 0):
        raise ValueError("var has negative entry/entries")
    if var.shape == input.shape:
        return var
    if var.shape == input.shape[:-1]:
        return var.unsqueeze(-1)
    if var.ndim == input.ndim and _mismatched_var_size(input.shape, var.shape) == 1:
        return var
    raise ValueError("var is of incorrect size")


def _mismatched_var_size(input_shape: torch.Size, var_shape: torch.Size) -> int:
    """Sum of var's sizes over the dimensions where it differs from input (torch's rule)."""
    return sum(v for i, v in zip(input_shape, var_shape, strict=True) if i != v)


class GaussianNLLLoss(nn.Module):
    """Drop-in for ``torch.nn.GaussianNLLLoss`` backed by :func:`gaussian_nll_loss`; its options
    are keyword-only, as torch's are."""

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__()
        self.full = full
        self.eps = eps
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor, var: Tensor | float) -> Tensor:
        return gaussian_nll_loss(
            input, target, var, full=self.full, eps=self.eps, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"full={self.full}, eps={self.eps}, reduction={self.reduction!r}"
