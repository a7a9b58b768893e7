"""gaussian_mixture_nll_loss against torch.distributions.MixtureSameFamily: values, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical, MixtureSameFamily, Normal

from gaussnll.core import gaussian_mixture_nll_loss

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def reference(mean, target, var, weights, dim):
    """-log p(target) of the mixture, members along ``dim``, by torch.distributions."""
    loc = mean.movedim(dim, -1)
    scale = var.expand_as(mean).movedim(dim, -1).sqrt()
    probs = weights if weights is not None else torch.ones(loc.shape[-1], dtype=mean.dtype)
    mixture = MixtureSameFamily(Categorical(probs=probs), Normal(loc, scale))
    return -mixture.log_prob(target)


def case(shape, dim, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=generator, dtype=dtype)
    var = torch.rand(shape, generator=generator, dtype=dtype) * 2 + 0.05
    dim %= len(shape)
    target_shape = shape[:dim] + shape[dim + 1 :]
    target = torch.randn(target_shape, generator=generator, dtype=dtype)
    return mean, target, var


SHAPES = [((5, 7), 0), ((4, 6, 3), 0), ((6, 4, 3), 1), ((3, 4, 5), -1), ((1, 9), 0)]


@pytest.mark.parametrize(("shape", "dim"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_values_match_mixture_same_family(shape, dim, dtype, reduction, weighted):
    mean, target, var = case(shape, dim, dtype)
    members = shape[dim]
    weights = torch.arange(1, members + 1, dtype=dtype) if weighted else None
    expected = reference(mean, target, var, weights, dim)
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    actual = gaussian_mixture_nll_loss(
        mean, target, var, weights, dim=dim, full=True, reduction=reduction
    )
    assert actual.shape == expected.shape
    assert actual.dtype == dtype
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize(("shape", "dim"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_match_mixture_same_family(shape, dim, dtype):
    inputs = case(shape, dim, dtype, seed=3)
    weights = torch.linspace(0.5, 2.0, shape[dim], dtype=dtype)
    grads = []
    for loss in (
        lambda m, t, v: reference(m, t, v, weights, dim).sum(),
        lambda m, t, v: gaussian_mixture_nll_loss(
            m, t, v, weights, dim=dim, full=True, reduction="sum"
        ),
    ):
        leaves = [tensor.clone().requires_grad_(True) for tensor in inputs]
        loss(*leaves).backward()
        grads.append([leaf.grad for leaf in leaves])
    tolerance = 1e-4 if dtype == torch.float32 else 1e-10
    for mine, theirs in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=tolerance, atol=tolerance)


def test_without_full_the_constant_is_left_out():
    mean, target, var = case((4, 10), 0, torch.float64)
    with_constant = gaussian_mixture_nll_loss(mean, target, var, full=True, reduction="none")
    without = gaussian_mixture_nll_loss(mean, target, var, reduction="none")
    torch.testing.assert_close(with_constant - without, torch.full_like(without, HALF_LOG_2PI))


def test_one_member_is_torchs_loss_bitwise():
    mean, target, var = case((1, 50), 0, torch.float64)
    var[0, 0] = 1e-9  # floored by eps, as torch
    expected = F.gaussian_nll_loss(mean[0], target, var[0], reduction="none")
    actual = gaussian_mixture_nll_loss(mean, target, var, reduction="none")
    assert torch.equal(actual, expected)


def test_zero_weight_drops_a_member():
    mean, target, var = case((3, 20), 0, torch.float64)
    weights = torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
    dropped = gaussian_mixture_nll_loss(mean, target, var, weights, reduction="none")
    kept = [0, 2]
    expected = gaussian_mixture_nll_loss(
        mean[kept], target, var[kept], weights[kept], reduction="none"
    )
    torch.testing.assert_close(dropped, expected, rtol=0, atol=1e-14)


def test_var_broadcasts_as_torchs_loss():
    """A var without the last dimension, or with one dimension of size 1, as torch allows."""
    mean, target, var = case((4, 6, 3), 0, torch.float64)
    for narrow in (var[..., 0], var[:, :1, :]):
        wide = narrow.unsqueeze(-1) if narrow.ndim == 2 else narrow
        expected = reference(mean, target, wide, None, 0)
        actual = gaussian_mixture_nll_loss(mean, target, narrow, full=True, reduction="none")
        torch.testing.assert_close(actual, expected)


def test_per_element_weights_broadcast():
    mean, target, var = case((3, 8), 0, torch.float64)
    weights = torch.rand(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    actual = gaussian_mixture_nll_loss(mean, target, var, weights, full=True, reduction="none")
    expected = torch.stack(
        [
            reference(mean[:, i : i + 1], target[i : i + 1], var[:, i : i + 1], weights[:, i], 0)[0]
            for i in range(8)
        ]
    )
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (torch.tensor([1.0, -1.0, 1.0]), "non-negative"),
        (torch.zeros(3), "not all be zero"),
        (torch.ones(2), "2 entries for 3 members"),
    ],
)
def test_bad_weights_raise(weights, message):
    mean, target, var = case((3, 5), 0, torch.float64)
    with pytest.raises(ValueError, match=message):
        gaussian_mixture_nll_loss(mean, target, var, weights.double())


def test_torchs_errors_are_kept():
    mean, target, var = case((3, 5), 0, torch.float64)
    with pytest.raises(ValueError, match="negative"):
        gaussian_mixture_nll_loss(mean, target, -var)
    with pytest.raises(ValueError, match="incorrect size"):
        gaussian_mixture_nll_loss(mean, target, var[:2, :2])
    with pytest.raises(ValueError, match="bogus is not valid"):
        gaussian_mixture_nll_loss(mean, target, var, reduction="bogus")
