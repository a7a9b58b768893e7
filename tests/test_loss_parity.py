"""gaussnll.core.gaussian_nll_loss / GaussianNLLLoss against torch's: values, gradients, errors."""

from __future__ import annotations

import inspect
import itertools

import pytest
import torch
import torch.nn.functional as F

from gaussnll.core import GaussianNLLLoss, gaussian_nll_loss

INPUT_SHAPES = [(7,), (5, 3), (4, 3, 2), (2, 3, 4, 5)]


def var_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every var shape torch accepts for ``shape``: equal, last dim dropped, one dim set to 1."""
    shapes = [shape, shape[:-1]]
    shapes += [(*shape[:i], 1, *shape[i + 1 :]) for i in range(len(shape)) if shape[i] != 1]
    return shapes


CASES = [
    (shape, var_shape, dtype)
    for shape in INPUT_SHAPES
    for var_shape in var_shapes(shape)
    for dtype in (torch.float32, torch.float64)
]


def random_case(shape, var_shape, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=generator, dtype=dtype)
    target = torch.randn(shape, generator=generator, dtype=dtype)
    var = torch.rand(var_shape, generator=generator, dtype=dtype) * 2
    var.view(-1)[0] = 1e-9  # below eps: the floor must be applied, invisibly to autograd
    return mean, target, var


@pytest.mark.parametrize(("shape", "var_shape", "dtype"), CASES)
@pytest.mark.parametrize(
    ("full", "reduction"), list(itertools.product([False, True], ["mean", "sum", "none"]))
)
def test_values_equal_torch_bitwise(shape, var_shape, dtype, full, reduction):
    mean, target, var = random_case(shape, var_shape, dtype, seed=len(shape) * 31 + len(var_shape))
    options = {"full": full, "eps": 1e-6, "reduction": reduction}
    expected = F.gaussian_nll_loss(mean, target, var, **options)
    actual = gaussian_nll_loss(mean, target, var, **options)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    assert torch.equal(actual, expected)


@pytest.mark.parametrize(("shape", "var_shape", "dtype"), CASES)
def test_gradients_equal_torch(shape, var_shape, dtype):
    inputs = random_case(shape, var_shape, dtype, seed=7)
    grads = []
    for loss_fn in (F.gaussian_nll_loss, gaussian_nll_loss):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        loss_fn(*leaves, full=True, eps=1e-3).backward()
        grads.append([leaf.grad for leaf in leaves])
    for ours, theirs in zip(grads[1], grads[0], strict=True):
        assert torch.equal(ours, theirs)


def test_clamp_is_invisible_to_autograd():
    var = torch.tensor([1e-9, 2.0], dtype=torch.float64, requires_grad=True)
    mean = torch.zeros(2, dtype=torch.float64)
    target = torch.ones(2, dtype=torch.float64)
    gaussian_nll_loss(mean, target, var, eps=1e-3, reduction="sum").backward()
    floored = torch.tensor([1e-3, 2.0], dtype=torch.float64)
    assert torch.allclose(var.grad, 0.5 * (1 / floored - 1 / floored**2), rtol=1e-15)


def test_double_backward_equals_torch():
    inputs = random_case((6, 2), (6, 2), torch.float64, seed=3)
    second = []
    for loss_fn in (F.gaussian_nll_loss, gaussian_nll_loss):
        mean, target, var = (t.clone().requires_grad_(True) for t in inputs)
        (grad_var,) = torch.autograd.grad(loss_fn(mean, target, var), var, create_graph=True)
        (hess,) = torch.autograd.grad(grad_var.sum(), var)
        second.append(hess)
    assert torch.equal(second[0], second[1])


def test_float_var_equals_torch():
    mean, target = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    assert torch.equal(gaussian_nll_loss(mean, target, 0.5), F.gaussian_nll_loss(mean, target, 0.5))


def torch_error(call):
    with pytest.raises(Exception) as caught:
        call(F.gaussian_nll_loss)
    return caught.type, str(caught.value)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(
            lambda f: f(torch.zeros(3), torch.zeros(3), torch.tensor([1.0, -1, 1])), id="neg"
        ),
        pytest.param(lambda f: f(torch.zeros(3), torch.zeros(3), -1.0), id="neg-float"),
        pytest.param(
            lambda f: f(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(3, 3)), id="size"
        ),
        pytest.param(
            lambda f: f(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(2)), id="size-1d"
        ),
        pytest.param(
            lambda f: f(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(1, 1)), id="two-ones"
        ),
        pytest.param(
            lambda f: f(torch.zeros(3, 2), torch.zeros(3, 2), -torch.ones(3, 3)),
            id="neg-before-size",
        ),
        pytest.param(
            lambda f: f(torch.zeros(3), torch.zeros(3), torch.ones(3), reduction="avg"),
            id="reduction",
        ),
        pytest.param(lambda f: f(torch.zeros(3), torch.zeros(3), 1), id="int-var"),
    ],
)
def test_errors_equal_torch(call):
    expected_type, expected_message = torch_error(call)
    with pytest.raises(expected_type) as caught:
        call(gaussian_nll_loss)
    assert str(caught.value) == expected_message


def test_module_matches_torch_module_and_reprs_its_options():
    ours = GaussianNLLLoss(full=True, eps=1e-4, reduction="sum")
    theirs = torch.nn.GaussianNLLLoss(full=True, eps=1e-4, reduction="sum")
    mean, target, var = random_case((5, 2), (5, 1), torch.float64, seed=11)
    assert torch.equal(ours(mean, target, var), theirs(mean, target, var))
    assert repr(ours) == "GaussianNLLLoss(full=True, eps=0.0001, reduction='sum')"
    assert isinstance(ours, torch.nn.Module)


def parameters(callable_) -> list[tuple[str, object, object]]:
    """Each parameter's name, kind and default (annotations differ only in spelling)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(callable_).parameters.values()]


def test_signatures_equal_torch():
    assert parameters(gaussian_nll_loss) == parameters(F.gaussian_nll_loss)
    assert parameters(GaussianNLLLoss.__init__) == parameters(torch.nn.GaussianNLLLoss.__init__)
    assert parameters(GaussianNLLLoss.forward) == parameters(torch.nn.GaussianNLLLoss.forward)


CALL_FORMS = {
    "three": lambda f, x, t, v: f(x, t, v),
    "full": lambda f, x, t, v: f(x, t, v, True),
    "full-eps": lambda f, x, t, v: f(x, t, v, True, 1e-2),
    "all-positional": lambda f, x, t, v: f(x, t, v, True, 1e-2, "sum"),
    "positional-then-keyword": lambda f, x, t, v: f(x, t, v, False, reduction="none"),
    "skip-full": lambda f, x, t, v: f(x, t, v, eps=0.3),
    "var-by-keyword": lambda f, x, t, v: f(x, t, var=v, full=True),
    "all-keyword": lambda f, x, t, v: f(
        input=x, target=t, var=v, full=True, eps=1e-3, reduction="sum"
    ),
    "keywords-reordered": lambda f, x, t, v: f(reduction="none", var=v, target=t, input=x),
}


@pytest.mark.parametrize("form", CALL_FORMS.values(), ids=CALL_FORMS.keys())
def test_every_call_form_equals_torch(form):
    mean, target, var = random_case((6, 3), (6, 1), torch.float64, seed=5)
    assert torch.equal(
        form(gaussian_nll_loss, mean, target, var), form(F.gaussian_nll_loss, mean, target, var)
    )


BAD_CALLS = {
    "too-many-positional": lambda f, x, t, v: f(x, t, v, True, 1e-6, "mean", None),
    "twice": lambda f, x, t, v: f(x, t, v, True, full=False),
    "eps-twice": lambda f, x, t, v: f(x, t, v, False, 1e-6, eps=1e-3),
    "unknown-keyword": lambda f, x, t, v: f(x, t, v, size_average=True),
    "missing-var": lambda f, x, t, v: f(x, t),
    "missing-target-by-keyword": lambda f, x, t, v: f(x, var=v),
    "bad-positional-reduction": lambda f, x, t, v: f(x, t, v, False, 1e-6, "avg"),
    "reduction-not-a-string": lambda f, x, t, v: f(x, t, v, False, 1e-6, None),
    "eps-none": lambda f, x, t, v: f(x, t, v, False, None),
    "reduction-in-eps-place": lambda f, x, t, v: f(x, t, v, False, "sum"),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_every_bad_call_form_errors_as_torch(call):
    mean, target, var = random_case((4, 2), (4, 2), torch.float64, seed=2)
    with pytest.raises(Exception) as theirs:
        call(F.gaussian_nll_loss, mean, target, var)
    with pytest.raises(theirs.type) as ours:
        call(gaussian_nll_loss, mean, target, var)
    assert str(ours.value) == str(theirs.value)


MODULE_FORMS = {
    "defaults": lambda m: m(),
    "keywords": lambda m: m(full=True, eps=1e-2, reduction="none"),
    "positional": lambda m: m(True),
    "unknown-keyword": lambda m: m(size_average=False),
}


@pytest.mark.parametrize("make", MODULE_FORMS.values(), ids=MODULE_FORMS.keys())
def test_module_construction_forms_equal_torch(make):
    mean, target, var = random_case((5, 2), (5, 2), torch.float64, seed=13)
    try:
        theirs = make(torch.nn.GaussianNLLLoss)
    except Exception as error:  # torch's options are keyword-only: ours must refuse the same
        with pytest.raises(type(error)) as ours:
            make(GaussianNLLLoss)
        assert str(ours.value) == str(error)
        return
    ours = make(GaussianNLLLoss)
    assert torch.equal(ours(mean, target, var), theirs(mean, target, var))
    assert torch.equal(ours(mean, target, var=var), theirs(mean, target, var=var))
