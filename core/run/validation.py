"""Explain why a chunk is invalid: the first offending row, column and value; and why a report
cannot be given: a sum beyond float64."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gaussnll.core.errors import InputError, NegativeSpreadError
from gaussnll.core.io.forms import FORMS
from gaussnll.core.io.tensors import Location
from gaussnll.core.options import ScoreOptions, Spread, column_label


@dataclass(frozen=True, order=True)
class _Problem:
    row: int
    rank: int
    column: str
    expected: str
    value: float


def raise_first_problem(
    roles: Sequence[tuple[Tensor, Sequence[str]]],
    spread_kind: Spread,
    var: Tensor,
    loss: Tensor,
    where: Location,
    policy: str = "error",
) -> None:
    """Raise an InputError for the earliest row of the chunk with a bad value.

    ``roles`` are the ``(values, column names)`` read from the file, the spread last; ``var`` is
    the variance derived from the spread and ``loss`` the element-wise loss, all row-aligned
    with the file. What is bad depends on the non-finite ``policy``: under ``error`` a NaN or
    infinity anywhere; under ``skip`` only a non-finite loss from finite inputs (rows with
    non-finite inputs were dropped; give them a finite ``loss``); a negative variance or
    standard deviation always, as torch.
    """
    spread, spread_names = roles[-1]
    form = FORMS[spread_kind]
    checks: list[tuple[Tensor, Tensor, Sequence[str], str]] = []
    if policy == "error":
        checks += [(~torch.isfinite(v), v, names, "a finite number") for v, names in roles]
        if form.signed:  # a finite value may stand for an infinite variance
            overflow = torch.isinf(var) & torch.isfinite(spread)
            checks.append((overflow, spread, spread_names, form.expected))
    if not form.signed:
        checks.append((spread < 0, spread, spread_names, form.expected))
    problems = [
        problem
        for rank, (mask, values, names, expected) in enumerate(checks)
        for problem in _first_hit(mask, values, names, rank, expected)
    ]
    if problems:
        first = min(problems)
        negative = not form.signed and first.rank == len(checks) - 1
        raise (NegativeSpreadError if negative else InputError)(
            f"expected {first.expected}, got {first.value!r}",
            path=where.path,
            column=first.column,
            row=where.row(first.row),
        )
    if policy == "propagate":
        return
    bad_rows = (~torch.isfinite(loss)).any(dim=1).nonzero()
    if len(bad_rows):
        raise InputError(
            "the loss is not finite (a zero variance with --eps 0, or an overflow)",
            path=where.path,
            row=where.row(int(bad_rows[0])),
        )


# The smallest normal float64: a weight below it (but above 0) has lost digits already, and
# every product with it more (weights of 5e-324 gave an NLL of exactly 1).
SMALLEST_WEIGHT = torch.finfo(torch.float64).tiny


def good_weights(weight: Tensor) -> Tensor:
    """Which ``weight``s are usable: 0, or a finite number from ``SMALLEST_WEIGHT`` on (a
    missing weight is read as NaN, which is not)."""
    return (weight == 0) | ((weight >= SMALLEST_WEIGHT) & (weight < math.inf))


def raise_bad_weight(weight: Tensor, column: str, where: Location) -> None:
    """Raise an InputError for the first row whose ``weight`` (``(rows, 1)``) is not one of
    ``good_weights``: bad under every non-finite policy."""
    bad = (~good_weights(weight)).squeeze(1).nonzero()
    if len(bad):
        row = int(bad[0])
        value = weight[row, 0].item()
        expected = "a finite number >= 0"
        if 0 < value < SMALLEST_WEIGHT:
            expected = (
                f"0 or at least {SMALLEST_WEIGHT:.4g} (float64's smallest full-precision "
                "number; multiply the weights by a constant)"
            )
        raise InputError(
            f"expected a weight: {expected}, got {value!r}",
            path=where.path,
            column=column,
            row=where.row(row),
        )


def _first_hit(
    mask: Tensor, values: Tensor, names: Sequence[str], rank: int, expected: str
) -> Iterator[_Problem]:
    hits = mask.nonzero()
    if len(hits):
        row, col = (int(i) for i in hits[0])
        column = column_label(names, col, values.shape[1])
        yield _Problem(row, rank, column, expected, values[row, col].item())


# The one infinity a report of finite sums may hold: log s* where every residual is 0.
_INFINITE_BY_RIGHT = ("nll_at_var_scale",)
_SUMS = ("nll_mean", "nll_sum", "weight_sum")  # never NaN from finite rows


def raise_on_overflow(report: Mapping[str, Any], options: ScoreOptions, path: str) -> None:
    """Raise an InputError when a number of ``report`` (the whole input's ``to_dict()``, without
    groups: a group's sums are parts of it) is a sum that overflowed float64 (about 1.8e308):
    the rows' weights adding up to infinity, or weighted values (``w * loss``) or values beyond it.
    Nothing is reported in part. Under ``propagate`` only the weights' sum is checked: there,
    an infinite input makes an infinite number by right."""
    weight = options.columns.weight
    total = report.get("weight_sum")
    if total is not None and not math.isfinite(total):
        raise InputError(
            f"the weights add up to {total} (float64 holds up to 1.8e308): divide them by a "
            "constant (only their ratios change a mean)",
            path=path,
            column=weight,
        )
    if options.nan_policy == "propagate":
        return
    name = next(_overflowed(report), None)
    if name is not None:
        cause = "the weighted values" if weight is not None else "the values"
        raise InputError(
            f"{name} is not finite: {cause} add up to more than float64 holds (1.8e308); "
            + ("divide the weights by a constant" if weight is not None else "rescale them"),
            path=path,
            column=weight,
        )


def _overflowed(entry: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """The dotted names of ``entry``'s numbers that only an overflow makes: an infinity, or a
    NaN where a sum stands."""
    for key, value in entry.items():
        name = f"{prefix}{key}"
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for position, item in items:
            at = name if position is None else f"{name}[{position}]"
            if isinstance(item, Mapping):
                yield from _overflowed(item, f"{at}.")
            elif isinstance(item, float) and _overflow_made(key, item):
                yield at


def _overflow_made(key: str, value: float) -> bool:
    """Whether ``value`` of field ``key`` can only come of an overflow."""
    if key in _INFINITE_BY_RIGHT:
        return False
    return math.isinf(value) or (math.isnan(value) and key in _SUMS)
