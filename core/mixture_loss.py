"""The negative log-likelihood of a mixture of Gaussians over a sample dimension (an ensemble,
MC dropout, a sampled Bayesian network), as a torch function for training loops.

``loss_mix = -logsumexp_m(log w_m - loss_m)``, with ``loss_m`` torch's element loss of member
``m``, so ``full`` and ``eps`` mean what they mean for ``gaussian_nll_loss`` (with ``full`` it
is the exact mixture -log density; without it the same constant is left out).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gaussnll.core.loss import REDUCTIONS, gaussian_nll_loss


def gaussian_mixture_nll_loss(
    input: Tensor,
    target: Tensor,
    var: Tensor | float,
    weights: Tensor | None = None,
    *,
    dim: int = 0,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Tensor:
    """The mixture NLL of ``target`` under the members of ``input`` along ``dim``.

    ``input`` holds the member means, with the members along ``dim``; ``var`` is shaped as for
    ``gaussian_nll_loss`` against ``input``. ``target`` has ``input``'s shape without ``dim``
    (or as many dimensions as ``input``, size 1 or M along ``dim``) and broadcasts as in torch.
    ``weights`` (default uniform) are non-negative and normalised to sum 1 along ``dim``: a
    1-D tensor of length M, or a tensor broadcastable to the element losses. The reduction
    (``mean``, ``sum`` or ``none``) is over the elements left once ``dim`` is mixed out.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not valid")
    if input.ndim == 0:
        raise ValueError("input needs a member dimension")
    dim = _member_dim(dim, input.ndim)
    if target.ndim == input.ndim - 1:
        target = target.unsqueeze(dim)
    member_loss = gaussian_nll_loss(input, target, var, full=full, eps=eps, reduction="none")
    log_weights = _log_weights(weights, member_loss, dim)
    loss = -torch.logsumexp(log_weights - member_loss, dim=dim)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _member_dim(dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise IndexError(f"dim {dim} is out of range for input of {ndim} dimensions")
    return dim % ndim


def _log_weights(weights: Tensor | None, member_loss: Tensor, dim: int) -> Tensor:
    """``log w`` normalised along ``dim``, broadcastable to ``member_loss``."""
    members = member_loss.shape[dim]
    if weights is None:
        return member_loss.new_full((), -math.log(members))
    weights = torch.as_tensor(weights, dtype=member_loss.dtype, device=member_loss.device)
    if weights.ndim == 1:
        if weights.shape[0] != members:
            raise ValueError(f"weights has {weights.shape[0]} entries for {members} members")
        shape = [1] * member_loss.ndim
        shape[dim] = members
        weights = weights.reshape(shape)
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise ValueError("weights must be finite and non-negative")
    total = weights.sum(dim=dim, keepdim=True)
    if bool((total == 0).any()):
        raise ValueError("weights must not all be zero")
    return torch.log(weights) - torch.log(total)
