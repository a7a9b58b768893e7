"""Poisson(1) bootstrap weights drawn from each row itself, never from its position.

Replicate ``b`` gives a row the weight ``Poisson(1)`` drawn from a counter-based generator keyed
by ``(seed, b, the row's key)``: the key is a hash of the row's values (``value_keys``) or of
its id (``id_keys``), so a row gets the same B weights however the input is chunked, threaded,
partitioned, cut into shards or merged (Hanley & MacGibbon 2006; Chamandy et al. 2012).

The generator is SplitMix64 (Steele et al. 2014): the row's stream starts at
``mix(key ^ mix(seed))`` and its ``b``-th output is ``mix(start + (b + 1)·γ)``; the top 53
bits of that output are a uniform ``u`` in [0, 1), mapped to ``k`` through the inverse CDF of
Poisson(1) (the ``k`` with ``F(k - 1) ≤ u < F(k)``). Everything is int64 arithmetic, which
wraps like uint64's; right shifts are arithmetic, so each is masked to a logical one.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

_GAMMA = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_UNIFORM_BITS = 53
BLOCK = 1 << 20  # (row, replicate) pairs drawn at once: bounds the temporaries (8 MB each)


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 torch takes."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _shifted(z: Tensor, bits: int) -> Tensor:
    """``z >>> bits``: a logical right shift of int64 patterns."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def mix(z: Tensor) -> Tensor:
    """SplitMix64's output function of int64 patterns (a new tensor)."""
    z = z ^ _shifted(z, 30)
    z.mul_(_signed(_MIX1))
    z ^= _shifted(z, 27)
    z.mul_(_signed(_MIX2))
    z ^= _shifted(z, 31)
    return z


def _poisson_thresholds() -> list[int]:
    """``F(k)·2^53`` (floored) for ``k = 0, 1, ...`` while below ``2^53``: ``u·2^53 < F(k)·2^53``
    is then ``k``'s test, exactly, on integers."""
    thresholds: list[int] = []
    cdf, term, k = 0.0, math.exp(-1.0), 0
    while True:
        cdf += term
        scaled = math.floor(cdf * 2.0**_UNIFORM_BITS)
        if scaled >= 1 << _UNIFORM_BITS:
            return thresholds
        thresholds.append(scaled)
        k += 1
        term /= k


POISSON_THRESHOLDS = tuple(_poisson_thresholds())


def replicate_weights(keys: Tensor, seed: int, replicates: range) -> Tensor:
    """The Poisson(1) weights ``(rows, len(replicates))`` (float64) of rows of int64 ``keys``
    in ``replicates`` (e.g. ``range(B)``)."""
    start = mix(keys ^ mix(torch.tensor([seed], dtype=torch.int64)).to(keys.device))
    counters = torch.arange(replicates.start + 1, replicates.stop + 1, device=keys.device)
    steps = counters.mul_(_signed(_GAMMA))
    state = start.unsqueeze(1) + steps
    uniform = _shifted(mix(state), 64 - _UNIFORM_BITS)
    thresholds = torch.tensor(POISSON_THRESHOLDS, dtype=torch.int64, device=keys.device)
    return torch.searchsorted(thresholds, uniform, right=True).to(torch.float64)


def value_keys(columns: list[Tensor]) -> Tensor:
    """Each row's key from its values (``(rows, ...)`` tensors, every column that defines the
    row): their float64 bit patterns folded through ``mix``, so equal values give equal keys
    whatever file or chunk holds them (``-0.0`` counts as ``0.0``)."""
    key = torch.zeros(columns[0].shape[0], dtype=torch.int64, device=columns[0].device)
    for column in columns:
        values = column.reshape(column.shape[0], -1).to(torch.float64) + 0.0  # -0.0 → 0.0
        for bits in values.view(torch.int64).unbind(1):
            key = mix(key ^ bits)
    return key


def id_keys(ids: pa.Array | pa.ChunkedArray) -> Tensor:
    """Each row's key from its id: an integer id as it is, any other (text, dates) by pandas'
    fixed-key hash of its text; a missing id has one key of its own."""
    if pa.types.is_integer(ids.type):
        values = pc.fill_null(pc.cast(ids, pa.int64()), -(1 << 62)).to_numpy()
        return mix(
            torch.from_numpy(np.array(values, dtype=np.int64))
        )  # a copy: Arrow's is read-only
    import pandas as pd

    text = pc.fill_null(pc.cast(ids, pa.large_string()), "\x00null").to_numpy(zero_copy_only=False)
    hashed = pd.util.hash_array(np.asarray(text, dtype=object)).view(np.int64)
    return torch.from_numpy(np.ascontiguousarray(hashed))
