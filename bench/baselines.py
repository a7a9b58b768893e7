"""What gaussnll is measured against, one process each, printing the mean NLL.

    python bench/baselines.py floor FILE              # pyarrow streaming read + numpy NLL sum
    python bench/baselines.py floor-calibration FILE  # + coverage, PIT and CRPS in numpy/scipy
    python bench/baselines.py naive FILE              # the usual script: pandas read + torch
    python bench/baselines.py samples FILE            # draws' CRPS from sorted draws (numpy)
    python bench/baselines.py quantiles FILE          # pinball losses and WIS (numpy)

The first three follow torch's formula with eps=1e-6 on the columns mean, var, target; the
last two print the mean CRPS of a list column ``draws`` of M draws, and the mean WIS of the
columns ``QUANTILE_COLUMNS`` at ``QUANTILE_LEVELS``, each against the column ``target``.
"""

from __future__ import annotations

import sys

EPS = 1e-6
CHUNK_ROWS = 1 << 20
QUANTILE_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
QUANTILE_COLUMNS = ("q05", "q25", "q50", "q75", "q95")


def floor(path: str) -> float:
    """The fastest honest streaming scan: project three columns, sum the NLL in numpy."""
    import numpy as np
    import pyarrow as pa

    total, count = 0.0, 0
    for batch in _stream(path, ["mean", "var", "target"]):
        mean, var, target = (batch.column(i).to_numpy() for i in range(3))
        v = np.maximum(var, EPS)
        total += float(np.sum(0.5 * (np.log(v) + (mean - target) ** 2 / v)))
        count += len(mean)
        del batch
    assert pa is not None
    return total / count


def floor_calibration(path: str) -> float:
    """The floor plus coverage at 5 levels, a 20-bin PIT histogram and CRPS, in numpy/scipy."""
    import numpy as np
    from scipy.special import ndtr, ndtri

    levels = np.array([0.5, 0.8, 0.9, 0.95, 0.99])
    half_widths = ndtri(0.5 + levels / 2)
    total, crps_total, count = 0.0, 0.0, 0
    inside = np.zeros(len(levels), dtype=np.int64)
    pit = np.zeros(20, dtype=np.int64)
    for batch in _stream(path, ["mean", "var", "target"]):
        mean, var, target = (batch.column(i).to_numpy() for i in range(3))
        v = np.maximum(var, EPS)
        total += float(np.sum(0.5 * (np.log(v) + (mean - target) ** 2 / v)))
        std = np.sqrt(var)  # the scoring rules use the variance as given, not floored
        z = (target - mean) / std
        abs_z = np.abs(z)
        inside += [np.count_nonzero(abs_z <= q) for q in half_widths]
        u = ndtr(z)
        pit += np.bincount(np.minimum((u * 20).astype(np.int64), 19), minlength=20)
        density = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
        crps_total += float(np.sum(std * (z * (2 * u - 1) + 2 * density - 1 / np.sqrt(np.pi))))
        count += len(mean)
    assert crps_total > 0 and inside.sum() > 0 and pit.sum() == count
    return total / count


def naive(path: str) -> float:
    """What people write today: load the whole file with pandas, call torch."""
    import pandas as pd
    import torch

    frame = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    tensors = [torch.tensor(frame[name].to_numpy()) for name in ("mean", "target", "var")]
    return torch.nn.functional.gaussian_nll_loss(*tensors, eps=EPS).item()


def samples(path: str) -> float:
    """The draws' mean CRPS, energy form, from the draws sorted per row (O(M log M)):
    ``(1/M) Σ|x_i - y| - (1/M²) Σ_i (2i - M - 1) x_(i)``."""
    import numpy as np
    import pyarrow.parquet as pq

    m = pq.ParquetFile(path).schema_arrow.field("draws").type.list_size
    slope = 2 * np.arange(1, m + 1) - m - 1
    total, count = 0.0, 0
    for batch in _stream(path, ["draws", "target"], rows=CHUNK_ROWS // m):
        draws = np.sort(batch.column(0).flatten().to_numpy().reshape(-1, m), axis=1)
        target = batch.column(1).to_numpy()
        accuracy = np.abs(draws - target[:, None]).sum(axis=1) / m
        total += float(np.sum(accuracy - draws @ slope / (m * m)))
        count += len(target)
    return total / count


def quantiles(path: str) -> float:
    """The mean weighted interval score (Bracher et al. 2021) of quantiles at levels forming
    pairs around the median: ``2/K`` times the summed pinball losses of the K levels."""
    import numpy as np

    levels = np.array(QUANTILE_LEVELS)
    pinball, count = np.zeros(len(levels)), 0
    for batch in _stream(path, [*QUANTILE_COLUMNS, "target"]):
        q = np.stack([batch.column(k).to_numpy() for k in range(len(levels))], axis=1)
        target = batch.column(len(levels)).to_numpy()[:, None]
        pinball += (((target < q) - levels) * (q - target)).sum(axis=0)
        count += len(target)
    return float(2 / len(levels) * pinball.sum() / count)


def _stream(path: str, columns: list[str], rows: int = CHUNK_ROWS):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.endswith(".parquet"):
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 22)
        yield from parquet.iter_batches(batch_size=rows, columns=columns)
    else:
        types = {name: pa.float64() for name in columns}
        convert = pacsv.ConvertOptions(include_columns=columns, column_types=types)
        read = pacsv.ReadOptions(block_size=1 << 26)
        yield from pacsv.open_csv(path, read_options=read, convert_options=convert)


if __name__ == "__main__":
    kind, path = sys.argv[1], sys.argv[2]
    baselines = {
        "floor": floor,
        "floor-calibration": floor_calibration,
        "naive": naive,
        "samples": samples,
        "quantiles": quantiles,
    }
    print(repr(baselines[kind](path)))
