"""Score a partitioned Parquet dataset in one process and on a local Dask cluster.

    python bench/bench_dask.py [--rows 5000000] [--files 10] [--row-group 250000]
                               [--workers 1,2] [--folder DIR]

Each run is a ``gaussnll score DIR --json`` subprocess (``--dask local --dask-workers N`` for
the cluster runs), timed from start to exit; the client's peak memory is its resident set,
sampled every 20 ms (the workers are separate processes and not counted). The fixed cost of a
run (starting Python and torch; for a cluster also starting it and connecting) is measured on a
one-partition file; the overhead per partition is what one worker takes beyond one scoring
thread (``--workers 1``), each without its fixed cost, divided by the partitions. Every run's
report must equal the single process's to 1e-12.
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
import pyarrow.parquet as pq


def write_dataset(folder: Path, rows: int, files: int, row_group: int) -> None:
    """``files`` Parquet files of ``rows`` rows in all, row groups of ``row_group`` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per_file = rows // files
    for k in range(files):
        mean = rng.normal(size=per_file)
        var = rng.uniform(0.05, 3.0, size=per_file)
        target = mean + 1.3 * np.sqrt(var) * rng.standard_normal(per_file)
        table = pa.table({"mean": mean, "var": var, "target": target})
        pq.write_table(table, folder / f"part{k:03d}.parquet", row_group_size=row_group)


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
    return seconds, peak / 2**20, json.loads(stdout)


def same(got: dict, want: dict) -> bool:
    return all(
        math.isclose(got[key], want[key], rel_tol=1e-12) for key in ("nll_mean", "nll_sum")
    ) and (got["rows"] == want["rows"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--row-group", type=int, default=250_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--folder", type=Path)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = arguments.folder or Path(scratch) / "data"
        if not folder.exists():
            write_dataset(folder, arguments.rows, arguments.files, arguments.row_group)
        one = Path(scratch) / "one" / "one.parquet"
        write_dataset(one.parent, 1_000, 1, 1_000)
        partitions = sum(pq.read_metadata(path).num_row_groups for path in folder.glob("*.parquet"))
        gaussnll = [sys.executable, "-m", "gaussnll.cli", "score"]
        seconds, peak, single = timed([*gaussnll, str(folder), "--json", "-q"])
        print(f"{single['rows']:,} rows in {partitions} partitions")
        print(f"single process   {seconds:7.2f} s  client peak {peak:6.0f} MiB")
        threaded = ["--workers", "1"]
        one_thread, _, _ = timed([*gaussnll, str(folder), "--json", "-q", *threaded])
        base, _, _ = timed([*gaussnll, str(one.parent), "--json", "-q", *threaded])
        print(f"one thread       {one_thread:7.2f} s  fixed cost {base:5.2f} s")
        for workers in (int(n) for n in arguments.workers.split(",")):
            cluster = ["--dask", "local", "--dask-workers", str(workers)]
            fixed, _, _ = timed([*gaussnll, str(one.parent), "--json", "-q", *cluster])
            wall, peak, report = timed([*gaussnll, str(folder), "--json", "-q", *cluster])
            overhead = ((wall - fixed) - (one_thread - base)) / partitions
            print(
                f"dask {workers} worker(s)  {wall:7.2f} s  client peak {peak:6.0f} MiB  "
                f"fixed cost {fixed:5.2f} s  overhead/partition {overhead * 1000:+6.0f} ms  "
                f"same numbers: {same(report, single)}"
            )


if __name__ == "__main__":
    main()
