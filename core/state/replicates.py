"""Poisson(1) bootstrap weights drawn from each row itself, never from its position.

Replicate ``b`` gives a row the weight ``Poisson(1)`` drawn from a counter-based generator keyed
by ``(seed, b, the row's key)``: the key is a hash of the row's values (``value_keys``) or of
its id (``id_keys``), so a row gets the same B weights however the input is chunked, threaded,
partitioned, cut into shards or merged (Hanley & MacGibbon 2006; Chamandy et al. 2012).

The generator is SplitMix64 (Steele et al. 2014): the row's stream starts at
``mix(key ^ mix(seed))`` and its ``j``-th output is ``mix(start + (j + 1)·γ)``. Each output's
four 16-bit lanes are four uniforms ``u`` in [0, 2^16): replicate ``b`` reads lane ``b mod 4``,
least significant first, of output ``b div 4`` (the lanes in memory order on a little-endian
host, as every CPU and GPU torch runs on). ``u`` maps to ``k`` through the inverse CDF of
Poisson(1) at the lane's midpoint, the ``k`` with ``F(k - 1) ≤ (u + ½)/2^16 < F(k)``, looked
up in a table of the 2^16 values: each weight's probabilities are Poisson(1)'s to 2^-16 (a
bootstrap needs weights of mean 1 and variance 1, not more), and four weights per output of the
generator keep the cost per (row, replicate) to a few operations. Everything is int64
arithmetic, which wraps like uint64's; right shifts are arithmetic, so each is masked to a
logical one.
"""

from __future__ import annotations

import bisect
import functools
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

_GAMMA = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_LANE_BITS = 16  # each 64-bit output of the generator is four uniforms of 16 bits
_LANES, _LANE_VALUES = 64 // _LANE_BITS, 1 << _LANE_BITS
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


def _poisson_table() -> list[float]:
    """The Poisson(1) draw of each 16-bit uniform ``u``: how many ``F(k) ≤ (u + ½)/2^16``."""
    cdf, total, term = [], 0.0, math.exp(-1.0)
    for k in range(1, 30):  # F(29) is 1 in float64
        total += term
        cdf.append(total)
        term /= k
    return [float(bisect.bisect_right(cdf, (u + 0.5) / _LANE_VALUES)) for u in range(_LANE_VALUES)]


@functools.cache
def _poisson(device: torch.device) -> Tensor:
    """``_poisson_table`` on ``device`` (made once per device)."""
    return torch.tensor(_poisson_table(), dtype=torch.float64, device=device)


@functools.cache
def _stream(seed: int) -> int:
    """``mix(seed)``, which every row's key is xored with."""
    return int(mix(torch.tensor([seed], dtype=torch.int64))[0])


def replicate_weights(keys: Tensor, seed: int, replicates: int) -> Tensor:
    """The Poisson(1) weights ``(rows, replicates)`` (float64) of rows of int64 ``keys``."""
    device = keys.device
    start = mix(keys ^ _stream(seed))
    outputs = -(-replicates // _LANES)
    steps = torch.arange(1, outputs + 1, device=device).mul_(_signed(_GAMMA))
    drawn = mix(start.unsqueeze(1) + steps)  # (rows, outputs)
    lanes = drawn.view(torch.int16)[:, :replicates].int().bitwise_and_(_LANE_VALUES - 1)
    return _poisson(device).index_select(0, lanes.reshape(-1)).view(len(keys), -1)


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
    """Each row's key from its id: an integer id as its 64 bits (uint64's past int64's range
    wrap), bytes (binary ids) as they are, any other (text, dates) by its text, both by pandas'
    fixed-key hash; a missing id has one key of its own (``run.row_keys`` keys
    such rows by their values)."""
    if pa.types.is_integer(ids.type):
        values = pc.fill_null(pc.cast(ids, pa.int64(), safe=False), -(1 << 62)).to_numpy()
        return mix(
            torch.from_numpy(np.array(values, dtype=np.int64))
        )  # a copy: Arrow's is read-only
    import pandas as pd

    if not (pa.types.is_binary(ids.type) or pa.types.is_large_binary(ids.type)):
        ids = pc.cast(ids, pa.large_string())
    text = pc.fill_null(ids, pa.scalar("\x00null", ids.type)).to_numpy(zero_copy_only=False)
    hashed = pd.util.hash_array(np.asarray(text, dtype=object)).view(np.int64)
    return torch.from_numpy(np.ascontiguousarray(hashed))
