"""Score a partitioned Parquet dataset, and one large CSV file, in one process and on a local
Dask cluster.

    python bench/bench_dask.py [--rows 5000000] [--files 10] [--row-group 250000]
                               [--csv-rows 4000000] [--workers 1,2] [--folder DIR]

Each run is a ``gaussnll score DIR --json`` subprocess (``--dask local --dask-workers N`` for
the cluster runs), timed from start to exit; the client's peak memory is its resident set,
sampled every 20 ms (the workers are separate processes and not counted). The fixed cost of a
run (starting Python and torch; for a cluster also starting it and connecting) is measured on a
one-partition file; the overhead per partition is what one worker takes beyond one scoring
thread (``--workers 1``), each without its fixed cost, divided by the partitions. Every run's
report must equal the single process's to 1e-12. The CSV file (``--csv-rows`` rows, 0: none)
is cut by the cluster into byte ranges of ``CSV_PARTITION_BYTES``; its single process parses
it in parallel ranges itself. A run that writes anything on stderr says so (a good run writes
nothing: Dask's own log lines are silenced).

Many tiny files, which the cluster batches into a few tasks (``distributed.batched``):

    python bench/bench_dask.py --rows 1000000 --files 10000 --row-group 100 --csv-rows 0 --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from gaussnll.core.run.distributed import CSV_PARTITION_BYTES


def predictions(rng: np.random.Generator, rows: int) -> pa.Table:
    mean = rng.normal(size=rows)
    var = rng.uniform(0.05, 3.0, size=rows)
    target = mean + 1.3 * np.sqrt(var) * rng.standard_normal(rows)
    return pa.table({"mean": mean, "var": var, "target": target})


def write_dataset(folder: Path, rows: int, files: int, row_group: int) -> None:
    """``files`` Parquet files of ``rows`` rows in all, row groups of ``row_group`` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(files):
        table = predictions(rng, rows // files)
        pq.write_table(table, folder / f"part{k:05d}.parquet", row_group_size=row_group)


def write_csv(path: Path, rows: int) -> None:
    """One CSV file of ``rows`` rows, written a million rows at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    with pacsv.CSVWriter(path, predictions(rng, 1).schema) as writer:
        for start in range(0, rows, 1_000_000):
            writer.write_table(predictions(rng, min(1_000_000, rows - start)))


def timed(command: list[str]) -> tuple[float, float, dict]:
    """Wall seconds, the process's peak resident MiB, and its JSON report."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {stderr.strip()}")
    if stderr:
        lines = stderr.splitlines()
        print(f"  stderr of a good run ({len(lines)} lines): {lines[0]}")
    return seconds, peak / 2**20, json.loads(stdout)


def same(got: dict, want: dict) -> bool:
    return all(
        math.isclose(got[key], want[key], rel_tol=1e-12) for key in ("nll_mean", "nll_sum")
    ) and (got["rows"] == want["rows"])


def compare(data: Path, tiny: Path, partitions: int, workers: list[int]) -> None:
    """Time ``data`` (of ``partitions`` partitions) in one process, on one scoring thread and
    on clusters of ``workers``; ``tiny``, of one partition, measures the fixed costs."""
    gaussnll = [sys.executable, "-m", "gaussnll.cli", "score"]
    seconds, peak, single = timed([*gaussnll, str(data), "--json", "-q"])
    print(f"{data.name}: {single['rows']:,} rows in {partitions} partitions")
    print(f"single process   {seconds:7.2f} s  client peak {peak:6.0f} MiB")
    threaded = ["--workers", "1"]
    one_thread, _, _ = timed([*gaussnll, str(data), "--json", "-q", *threaded])
    base, _, _ = timed([*gaussnll, str(tiny), "--json", "-q", *threaded])
    print(f"one thread       {one_thread:7.2f} s  fixed cost {base:5.2f} s")
    for count in workers:
        cluster = ["--dask", "local", "--dask-workers", str(count)]
        fixed, _, _ = timed([*gaussnll, str(tiny), "--json", "-q", *cluster])
        wall, peak, report = timed([*gaussnll, str(data), "--json", "-q", *cluster])
        overhead = ((wall - fixed) - (one_thread - base)) / partitions
        print(
            f"dask {count} worker(s)  {wall:7.2f} s  client peak {peak:6.0f} MiB  "
            f"fixed cost {fixed:5.2f} s  overhead/partition {overhead * 1000:+6.0f} ms  "
            f"same numbers: {same(report, single)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--row-group", type=int, default=250_000)
    parser.add_argument("--csv-rows", type=int, default=4_000_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--folder", type=Path)
    arguments = parser.parse_args()
    workers = [int(n) for n in arguments.workers.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        folder = arguments.folder or Path(scratch) / "data"
        if not folder.exists():
            write_dataset(folder, arguments.rows, arguments.files, arguments.row_group)
        one = Path(scratch) / "one" / "one.parquet"
        write_dataset(one.parent, 1_000, 1, 1_000)
        partitions = sum(pq.read_metadata(path).num_row_groups for path in folder.glob("*.parquet"))
        compare(folder, one.parent, partitions, workers)
        if arguments.csv_rows:
            big = Path(scratch) / "csv" / "big.csv"
            write_csv(big, arguments.csv_rows)
            tiny = Path(scratch) / "tiny" / "tiny.csv"
            write_csv(tiny, 1_000)
            ranges = -(-big.stat().st_size // CSV_PARTITION_BYTES)
            compare(big, tiny, ranges, workers)


if __name__ == "__main__":
    main()
