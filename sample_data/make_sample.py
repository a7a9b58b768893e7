"""Make the sample prediction files (seeded, so every run writes the same data).

A heteroscedastic regression: y = sin(3x) + x/2 + noise with std 0.1 + 0.4|x|. The "model" has a
small bias in its mean and predicts variances 30% too small (over-confident), so calibration
has something to show; ``region`` (west, central or east in ``x``) is a column to break it
down by, and ``weight`` a row weight for ``--weight-col``: the inverse of each region's sampling
rate, as if the east had been sampled at half the rate of the rest. ``preds_candidate.parquet``
is a second model of the same rows for ``gaussnll compare``: bias removed and variances
recalibrated, its rows shuffled (pair by ``id``).
``ensemble.parquet`` holds a 5-member ensemble of the same function (``gaussnll score
--ensemble``): list columns ``mean`` and ``var`` of 5 values per row.
``samples.parquet`` holds 16 draws per row of the over-confident model of ``preds.parquet``'s
rows (``gaussnll score --samples draws``): a list column ``draws``, rounded as the other values
(so a few draws tie).
``quantiles.parquet`` holds a quantile model of ``preds.parquet``'s rows (``gaussnll score
--quantiles 0.05,0.25,0.5,0.75,0.95 --quantile-cols q05,q25,q50,q75,q95``): the Gaussian's
quantiles widened by 10%, with noise of their own, so a few rows' quantiles cross.
``preds_part1.state.json`` and ``preds_part2.state.json`` are the states (``score --by region
--save-state``) of the two halves of ``preds.parquet``'s rows, for ``gaussnll merge``.

    python sample_data/make_sample.py
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from gaussnll.core import ColumnSpec, score

SEED = 20261122
ROWS = 10_000
HERE = Path(__file__).resolve().parent


def predictions(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    """Inputs ``x``, targets, and an over-confident model's predicted mean and variance."""
    x = rng.uniform(-2.0, 2.0, rows)
    true_mean = np.sin(3 * x) + x / 2
    true_std = 0.1 + 0.4 * np.abs(x)
    target = true_mean + true_std * rng.standard_normal(rows)
    mean = true_mean + 0.05 + 0.05 * rng.standard_normal(rows)
    var = 0.7 * true_std**2
    return {"x": x, "mean": mean, "var": var, "target": target}


def regions(x: np.ndarray) -> np.ndarray:
    """A categorical column for ``--by``: where ``x`` lies (the noise grows with ``|x|``)."""
    return np.where(x < -2 / 3, "west", np.where(x > 2 / 3, "east", "central"))


def sampling_weights(region: np.ndarray) -> np.ndarray:
    """Each row's inverse sampling probability: east rows stand for twice as many."""
    return np.where(region == "east", 2.0, 1.0)


def recalibrated(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same model with its mean bias removed and its variances scaled up to calibration."""
    return {**columns, "mean": columns["mean"] - 0.05, "var": columns["var"] / 0.7}


def ensemble(rng: np.random.Generator, rows: int, members: int = 5) -> pa.Table:
    """``members`` models that each fit the function with a bias of their own (they disagree
    most where ``|x|`` is large, like an ensemble off its training data) and predict about the
    right variance on their own: the mixture is better calibrated than any member."""
    x = rng.uniform(-2.0, 2.0, rows)
    true_mean = np.sin(3 * x) + x / 2
    true_std = 0.1 + 0.4 * np.abs(x)
    target = true_mean + true_std * rng.standard_normal(rows)
    bias = rng.normal(scale=0.15, size=members) * (1 + np.abs(x))[:, None]
    mean = true_mean[:, None] + bias + 0.05 * rng.standard_normal((rows, members))
    var = (0.8 * true_std**2)[:, None] * rng.uniform(0.7, 1.3, size=(rows, members))
    lists = {
        name: pa.FixedSizeListArray.from_arrays(np.round(values, 6).ravel(), members)
        for name, values in (("mean", mean), ("var", var))
    }
    return pa.table(
        {
            "id": np.arange(rows),
            "x": np.round(x, 6),
            **lists,
            "target": np.round(target, 6),
            "region": regions(x),
        }
    )


def samples(table: pa.Table, rng: np.random.Generator, draws: int = 16) -> pa.Table:
    """``draws`` draws per row from the model of ``table`` (its mean and variance), with the
    rows' id, target, region and weight."""
    mean = table.column("mean").to_numpy()[:, None]
    std = np.sqrt(table.column("var").to_numpy())[:, None]
    values = np.round(mean + std * rng.standard_normal((len(mean), draws)), 6)
    listed = pa.FixedSizeListArray.from_arrays(values.ravel(), draws)
    kept = table.select(["id", "target", "region", "weight"])
    return kept.add_column(1, "draws", listed)


QUANTILE_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


def quantile_model(table: pa.Table, rng: np.random.Generator) -> pa.Table:
    """A quantile model of ``table``'s rows: ``q_τ = mean + 1.1 σ Φ⁻¹(τ)`` plus noise of
    0.25 σ per quantile (independent, so neighbouring quantiles sometimes cross)."""
    mean = table.column("mean").to_numpy()
    std = np.sqrt(table.column("var").to_numpy())
    quantiles = {}
    for tau in QUANTILE_LEVELS:
        noise = 0.25 * std * rng.standard_normal(len(mean))
        values = mean + 1.1 * std * NormalDist().inv_cdf(tau) + noise
        quantiles[f"q{round(tau * 100):02d}"] = np.round(values, 6)
    kept = ("id", "x", "target", "region", "weight")
    return pa.table({**{name: table.column(name) for name in kept}, **quantiles})


def main() -> None:
    rng = np.random.default_rng(SEED)
    columns = predictions(rng, ROWS)
    table = pa.table(
        {
            "id": np.arange(ROWS),
            **{k: np.round(v, 6) for k, v in columns.items()},
            "region": regions(columns["x"]),
            "weight": sampling_weights(regions(columns["x"])),
        }
    )
    pq.write_table(table, HERE / "preds.parquet")
    pacsv.write_csv(table, HERE / "preds.csv")

    first, second = predictions(rng, 2_000), predictions(rng, 2_000)
    pairs = {
        name: pa.FixedSizeListArray.from_arrays(
            np.round(np.column_stack([first[name], second[name]]).ravel(), 6), 2
        )
        for name in ("mean", "var", "target")
    }
    pq.write_table(pa.table({"id": np.arange(2_000), **pairs}), HERE / "preds_2d.parquet")

    candidate = pa.table(
        {"id": np.arange(ROWS), **{k: np.round(v, 6) for k, v in recalibrated(columns).items()}}
    )
    order = np.random.default_rng(SEED + 1).permutation(ROWS)
    pq.write_table(candidate.take(order), HERE / "preds_candidate.parquet")

    pq.write_table(ensemble(np.random.default_rng(SEED + 2), 2_000), HERE / "ensemble.parquet")
    pq.write_table(samples(table, np.random.default_rng(SEED + 3)), HERE / "samples.parquet")
    quantiles = quantile_model(table, np.random.default_rng(SEED + 3))
    pq.write_table(quantiles, HERE / "quantiles.parquet")

    half = ROWS // 2
    for part, rows in enumerate((table.slice(0, half), table.slice(half)), start=1):
        state = HERE / f"preds_part{part}.state.json"
        score(rows, columns=ColumnSpec(by=("region",)), device="cpu", workers=1, state_to=state)


if __name__ == "__main__":
    main()
