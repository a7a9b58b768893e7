"""What gaussnll is measured against, one process each, printing the mean NLL.

    python bench/baselines.py floor FILE    # bare pyarrow streaming read + numpy NLL sum
    python bench/baselines.py naive FILE    # the usual script: pandas read + torch loss

Both follow torch's formula with eps=1e-6 on the columns mean, var, target.
"""

from __future__ import annotations

import sys

EPS = 1e-6
CHUNK_ROWS = 1 << 20


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


def naive(path: str) -> float:
    """What people write today: load the whole file with pandas, call torch."""
    import pandas as pd
    import torch

    frame = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    tensors = [torch.tensor(frame[name].to_numpy()) for name in ("mean", "target", "var")]
    return torch.nn.functional.gaussian_nll_loss(*tensors, eps=EPS).item()


def _stream(path: str, columns: list[str]):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.endswith(".parquet"):
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 22)
        yield from parquet.iter_batches(batch_size=CHUNK_ROWS, columns=columns)
    else:
        types = {name: pa.float64() for name in columns}
        convert = pacsv.ConvertOptions(include_columns=columns, column_types=types)
        read = pacsv.ReadOptions(block_size=1 << 26)
        yield from pacsv.open_csv(path, read_options=read, convert_options=convert)


if __name__ == "__main__":
    kind, path = sys.argv[1], sys.argv[2]
    print(repr({"floor": floor, "naive": naive}[kind](path)))
