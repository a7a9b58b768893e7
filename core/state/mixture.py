"""Ensembles: M Gaussians per element, reduced to their moment-matched Gaussian for the rest of
the pipeline, and scored as a mixture in sums of their own (mergeable, chunk-invariant).

With normalised weights ``w_m``, member means ``μ_m`` and variances ``v_m`` (as the model gave
them):

- the moment-matched Gaussian: ``μ* = Σ w μ_m``, ``v* = Σ w v_m + Σ w (μ_m - μ*)²``, the
  aleatoric and epistemic parts of the law of total variance (the stable form of it);
- the mixture NLL ``-logsumexp_m(log w_m - loss_m)``, ``loss_m`` torch's element loss of member m
  (``v_m`` floored at ``eps``, no constant: it is added at the end, as for the Gaussian's);
- the mixture CDF ``F(y) = Σ w Φ((y - μ_m)/σ_m)`` (a zero variance is a point mass: a step,
  ½ at the step as the single Gaussian's PIT): an element is inside the central p-interval
  when ``|2F - 1| ≤ p``; ``F`` is its PIT, binned by the single Gaussian's rules (a value on a
  PIT bin's edge in the bin nearer ½; one-sided levels ``F ≤ τ`` inclusive);
- the mixture CRPS (Grimit et al. 2006), with ``A(x, s²) = x (2Φ(x/s) - 1) + 2 s φ(x/s)``
  (``|x|`` when ``s = 0``): ``Σ_i w_i A(y - μ_i, v_i) - ½ Σ_ij w_i w_j A(μ_i - μ_j, v_i + v_j)``,
  O(M²) per element, computed one member against the later ones to bound the memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gaussnll.core.loss import nll_terms
from gaussnll.core.state.batch import RowBatch
from gaussnll.core.state.binning import OneSidedGrid, QuantileGrid
from gaussnll.core.state.calibration import CURVE_STEPS
from gaussnll.core.state.sinks import Sums

_INV_SQRT_2 = 1 / math.sqrt(2)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
# Per-row float sums: these, then each member's NLL, then the CRPS.
_LEADING = ("mixture_loss", "aleatoric", "epistemic")


@dataclass(frozen=True)
class MemberWeights:
    """The weights as given, normalised to sum 1, and the members they keep (weight > 0)."""

    normalised: tuple[float, ...]
    kept: tuple[int, ...]

    @classmethod
    def of(cls, given: Sequence[float] | None, members: int) -> MemberWeights:
        """Uniform weights for ``members`` when none are ``given`` (its length is checked by
        the caller, which knows where the rows came from)."""
        weights = list(given) if given is not None else [1.0] * members
        # Scaled by a power of two below the largest first (exact, so the ratios keep their
        # bits): weights of 1e308 sum to no infinity.
        power = math.frexp(max(weights, default=1.0))[1]
        scaled = [math.ldexp(w, -power) for w in weights]
        total = math.fsum(scaled)
        normalised = tuple(w / total for w in scaled)
        return cls(normalised, tuple(m for m, w in enumerate(weights) if w > 0))

    def tensor(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The kept members' weights, ``(kept,)``."""
        return torch.tensor([self.normalised[m] for m in self.kept], dtype=dtype, device=device)


@dataclass(frozen=True)
class Members:
    """Rows of an ensemble: members' ``mean`` and ``var`` ``(rows, M, D)`` (var's ``D`` may be
    1), their ``weights`` ``(M,)``, and the moment-matched Gaussian's parts ``(rows, D)``."""

    mean: Tensor
    var: Tensor
    weights: Tensor
    matched_mean: Tensor
    aleatoric: Tensor
    epistemic: Tensor

    @classmethod
    def of(cls, mean: Tensor, var: Tensor, weights: Tensor) -> Members:
        w = weights.view(1, -1, 1)
        matched_mean = (w * mean).sum(dim=1)
        deviation = mean - matched_mean.unsqueeze(1)
        aleatoric = (w * var).sum(dim=1)
        epistemic = (w * deviation * deviation).sum(dim=1)
        return cls(mean, var, weights, matched_mean, aleatoric, epistemic)

    @classmethod
    def of_draws(cls, draws: Tensor, var: Tensor) -> Members:
        """Samples: ``draws`` ``(rows, M, D)``, equally likely points (``var``: their zero
        variances); the mean of the draws and their population variance in two passes, an
        order of magnitude faster than ``of``'s weighted sums (or ``torch.var_mean``) on the
        CPU."""
        matched_mean = draws.mean(dim=1)
        epistemic = (draws - matched_mean.unsqueeze(1)).square_().mean(dim=1)
        weights = draws.new_full((draws.shape[1],), 1 / draws.shape[1])
        return cls(draws, var, weights, matched_mean, torch.zeros_like(matched_mean), epistemic)

    @property
    def matched_var(self) -> Tensor:
        """``v*``: with one member exactly its variance (the epistemic part is 0)."""
        return self.aleatoric + self.epistemic

    def rows(self, kept: Tensor) -> Members:
        """Only the ``kept`` rows."""
        return Members(
            self.mean[kept],
            self.var[kept],
            self.weights,
            self.matched_mean[kept],
            self.aleatoric[kept],
            self.epistemic[kept],
        )


class MixtureState:
    """Sums over elements of the mixture's scores (module docstring) of the members ``weights``
    keep, for the whole input and per group (``sinks``). Given ``levels``, also its CRPS, and
    counts of elements inside each central interval, per PIT bin and per one-sided bin (of the
    levels ``k/99``); without them (no calibration) the CRPS sum stays 0. A ``weighted`` state
    sums weighted values, and its counts are sums of weights."""

    def __init__(
        self,
        weights: MemberWeights,
        device: torch.device,
        *,
        levels: Sequence[float] | None = None,
        pit_bins: int = 20,
        grouped: bool = False,
        weighted: bool = False,
    ) -> None:
        self.weights = weights
        members = len(weights.kept)
        self.levels = None if levels is None else tuple(levels)
        self.pit_bins = pit_bins
        self.grouped = grouped
        self.families = frozenset({"ensemble"})
        self._sums = Sums(
            (len(_LEADING) + members + 1,),
            device,
            grouped=grouped,
            total=not grouped,
            weighted=weighted,
        )
        self._counts = None
        self._pit = QuantileGrid(pit_bins)
        self._one_sided = OneSidedGrid(CURVE_STEPS)
        if self.levels is not None:
            width = len(self.levels) + pit_bins + CURVE_STEPS + 1
            self._counts = Sums(
                (width,),
                device,
                integer=True,
                grouped=grouped,
                total=not grouped,
                weighted=weighted,
            )

    def update(self, batch: RowBatch) -> Tensor:
        """Add a chunk's rows (an ensemble's: ``batch.members`` and ``batch.target`` given);
        return their mixture losses ``(rows, D)`` (no constant)."""
        members, target = batch.members, batch.target
        if members is None or target is None:
            raise ValueError("a mixture state needs each row's members and target")
        key = ("mixture", self.levels, self.pit_bins)
        rows, counts, mixture_loss = batch.shared(
            key, lambda: self._per_row(members, target, batch.eps)
        )
        if self._counts is not None and counts is not None:
            self._counts.add(counts, batch.at)
        self._sums.add(rows, batch.at)
        return mixture_loss

    def _per_row(
        self, members: Members, target: Tensor, eps: float
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """What each row adds: its sums (``_LEADING``, member losses, CRPS), its counts (with
        levels) and its mixture losses (member variances floored at ``eps``)."""
        target = target.unsqueeze(1)
        member_loss = nll_terms(target - members.mean, members.var.clamp(min=eps)).loss
        log_weights = torch.log(members.weights).view(1, -1, 1)
        mixture_loss = -torch.logsumexp(log_weights - member_loss, dim=1)
        parts = [
            mixture_loss.sum(dim=1, keepdim=True),
            members.aleatoric.expand_as(mixture_loss).sum(dim=1, keepdim=True),
            members.epistemic.sum(dim=1, keepdim=True),
            member_loss.sum(dim=2),
        ]
        counts = None
        if self._counts is None:
            parts.append(torch.zeros_like(parts[0]))
        else:
            parts.append(mixture_crps(members, target).sum(dim=1, keepdim=True))
            counts = self._calibration_counts(members, target)
        return torch.cat(parts, dim=1), counts, mixture_loss

    def _calibration_counts(self, members: Members, target: Tensor) -> Tensor:
        """Per row ``(rows, levels + bins + 100)``: elements inside each central interval,
        per PIT bin, then per one-sided bin (a NaN PIT counts in none)."""
        cdf = mixture_cdf(members, target)
        centrality = (2 * cdf - 1).abs()
        levels = torch.tensor(self.levels, dtype=cdf.dtype, device=cdf.device)
        inside = (centrality.unsqueeze(2) <= levels).sum(dim=1)
        pit = _per_bin(self._pit.u_bins(cdf), self.pit_bins)
        one_sided = _per_bin(self._one_sided.u_bins(cdf), CURVE_STEPS + 1)
        return torch.cat([inside, pit, one_sided], dim=1)

    def reserve(self, groups: int) -> None:
        self._sums.reserve(groups)
        if self._counts is not None:
            self._counts.reserve(groups)

    @property
    def bytes_per_group(self) -> int:
        """The memory one group's mixture sums take (grouped states only)."""
        counts = 0 if self._counts is None else self._counts.bytes_per_group
        return self._sums.bytes_per_group + counts

    def merge(self, other: MixtureState, mapping: Tensor | None = None) -> None:
        """Add another state of the same members, levels and PIT bins."""
        if (other.weights, other.levels, other.pit_bins) != (
            self.weights,
            self.levels,
            self.pit_bins,
        ):
            raise ValueError("cannot merge mixture states of different weights or levels")
        self._sums.merge(other._sums, mapping)
        if self._counts is not None and other._counts is not None:
            self._counts.merge(other._counts, mapping)

    def totals(self, by_group: bool = False) -> dict[str, Tensor]:
        """On the CPU, ``(1 or groups, ...)``: ``mixture_loss``, ``aleatoric``, ``epistemic``,
        ``member_loss`` ``(B, M)``, ``crps``; with levels ``inside`` ``(B, levels)`` and
        ``pit`` ``(B, bins)``."""
        sums = self._sums.value(by_group).cpu()
        named = {name: sums[:, k] for k, name in enumerate(_LEADING)}
        named["member_loss"] = sums[:, len(_LEADING) : -1]
        named["crps"] = sums[:, -1]
        if self._counts is not None and self.levels is not None:
            counts = self._counts.value(by_group).cpu()
            pit_start = len(self.levels)
            one_sided_start = pit_start + self.pit_bins
            named["inside"] = counts[:, :pit_start]
            named["pit"] = counts[:, pit_start:one_sided_start]
            named["one_sided"] = counts[:, one_sided_start:]
        return named


def _per_bin(bins: Tensor, count: int) -> Tensor:
    """How many elements of each row ``(rows, D)`` are in each of ``count`` bins (a bin past
    them, as a NaN's, counts in none)."""
    per_bin = torch.zeros((bins.shape[0], count + 2), dtype=torch.int64, device=bins.device)
    per_bin.scatter_add_(1, bins, torch.ones_like(bins))
    return per_bin[:, :count]


def _standard_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x * _INV_SQRT_2))


def _member_cdf(difference: Tensor, var: Tensor) -> Tensor:
    """``Φ(difference / σ)``; where the variance is 0 a step at 0 with ½ on it (the midpoint
    of the step, as a single Gaussian's PIT: a point mass on the target is inside every
    central interval)."""
    std = var.sqrt()
    positive = std > 0
    smooth = _standard_cdf(difference / torch.where(positive, std, 1.0))
    return torch.where(positive, smooth, 0.5 * (1 + torch.sign(difference)))


def mixture_cdf(members: Members, target: Tensor) -> Tensor:
    """``F(y) = Σ w Φ((y - μ_m)/σ_m)`` of each element, ``(rows, D)``; ``target`` is
    ``(rows, 1, D or 1)``."""
    weights = members.weights.view(1, -1, 1)
    return (weights * _member_cdf(target - members.mean, members.var)).sum(dim=1)


def _a(x: Tensor, var: Tensor) -> Tensor:
    """``A(x, s²) = E|X|`` for ``X ~ N(x, s²)``: ``x (2Φ(x/s) - 1) + 2 s φ(x/s)``, written as
    ``x erf(t/√2) + s √(2/π) exp(-t²/2)`` with ``t = x/s``. A zero ``s`` is raised to the
    smallest normal float, where the formula's limit is exact: ``|x|`` (``erf(±∞) = ±1``,
    ``exp(-∞) = 0``)."""
    std = var.sqrt().clamp_(min=torch.finfo(var.dtype).tiny)
    t = x / std
    smooth = torch.erf(t * _INV_SQRT_2).mul_(x)
    return smooth.add_(t.square_().mul_(-0.5).exp_().mul_(std), alpha=_SQRT_2_OVER_PI)


def mixture_crps(members: Members, target: Tensor) -> Tensor:
    """The mixture CRPS of each element, ``(rows, D)`` (module docstring); ``target`` is
    ``(rows, 1, D or 1)``."""
    mean, var, weights = members.mean, members.var, members.weights
    w = weights.view(1, -1, 1)
    accuracy = (w * _a(target - mean, var)).sum(dim=1)
    # ½ Σ_ij: each member with itself (A(0, 2v) = 2σ·φ(0)·√2), then each pair once.
    spread = 0.5 * (w * w * _SQRT_2_OVER_PI * torch.sqrt(2 * var)).sum(dim=1)
    for i in range(mean.shape[1] - 1):
        later = slice(i + 1, None)
        pairs = _a(mean[:, i : i + 1] - mean[:, later], var[:, i : i + 1] + var[:, later])
        spread = spread + weights[i] * (w[:, later] * pairs).sum(dim=1)
    return accuracy - spread
