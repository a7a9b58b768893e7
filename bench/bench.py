"""Benchmark ``gaussnll score`` against a bare streaming scan (the floor) and the naive script.

Every case is a separate process, timed from start to exit (interpreter and imports included),
with its own peak RSS (``wait4``). Data is generated once with a fixed seed under ``--data-dir``.

    python bench/bench.py                         # 10M and 50M Parquet rows, 10M CSV rows
    python bench/bench.py --parquet-rows 1000000 --csv-rows 1000000   # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 7
WRITE_ROWS = 1 << 20


FLOOR = "floor: pyarrow stream + numpy NLL"
FLOOR_CALIBRATION = "floor + coverage, PIT, CRPS (numpy)"
NAIVE = "naive: pandas + torch"


@dataclass
class Result:
    case: str
    floor: str
    file: str
    rows: int
    seconds: float
    peak_rss_mb: float
    nll: float | None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def generate(path: Path, rows: int) -> Path:
    """Write ``rows`` seeded heteroscedastic predictions (mean, var, target) to ``path``."""
    if path.exists():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED)
    temporary = path.with_suffix(path.suffix + ".partial")
    writer = None
    for start in range(0, rows, WRITE_ROWS):
        n = min(WRITE_ROWS, rows - start)
        mean = rng.normal(size=n)
        var = rng.uniform(0.05, 3.0, size=n)
        target = mean + 1.2 * np.sqrt(var) * rng.standard_normal(n)
        batch = pa.record_batch({"mean": mean, "var": var, "target": target})
        if writer is None:
            writer = (pq.ParquetWriter if path.suffix == ".parquet" else pacsv.CSVWriter)(
                str(temporary), batch.schema
            )
        writer.write_batch(batch)
    writer.close()
    temporary.rename(path)
    return path


def measure(case: str, floor: str, command: list[str], file: Path, rows: int) -> Result:
    """Run ``command`` to completion; wall time, peak RSS, and the NLL it printed."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{case} failed ({process.returncode}): {err.strip()}")
    nll = json.loads(out)["nll"] if out.lstrip().startswith("{") else float(out) if out else None
    return Result(case, floor, file.name, rows, seconds, usage.ru_maxrss / 1024, nll)


def cases(file: Path, device: str) -> list[tuple[str, str, list[str]]]:
    """(case, the floor it is compared with, command)."""
    python = sys.executable
    score = [python, "-m", "gaussnll.cli", "score", str(file), "--json", "--quiet"]
    score += ["--device", device]
    baseline = [python, str(HERE / "baselines.py")]
    return [
        (FLOOR, FLOOR, [*baseline, "floor", str(file)]),
        ("gaussnll score --no-calibration", FLOOR, [*score, "--no-calibration"]),
        (FLOOR_CALIBRATION, FLOOR_CALIBRATION, [*baseline, "floor-calibration", str(file)]),
        ("gaussnll score (full calibration)", FLOOR_CALIBRATION, score),
        (NAIVE, FLOOR, [*baseline, "naive", str(file)]),
    ]


def startup_seconds() -> dict[str, float]:
    """Wall time of ``gaussnll --help`` and ``--version`` (best of 3)."""
    timings = {}
    for flag in ("--help", "--version"):
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "gaussnll.cli", flag], capture_output=True)
            runs.append(time.perf_counter() - started)
        timings[flag] = min(runs)
    return timings


def table(results: list[Result]) -> str:
    seconds = {(r.file, r.case): r.seconds for r in results}
    naive = {r.file: r.seconds for r in results if r.case == NAIVE}
    reference = {r.file: r.nll for r in results if r.case == FLOOR}
    lines = [
        "| file | case | rows/s | wall s | peak RSS MB | x floor | naive / this | NLL rel. diff |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        diff = abs(r.nll - reference[r.file]) / abs(reference[r.file]) if r.nll is not None else 0
        lines.append(
            f"| {r.file} | {r.case} | {r.rows_per_second:,.0f} | {r.seconds:.2f} | "
            f"{r.peak_rss_mb:,.0f} | {r.seconds / seconds[r.file, r.floor]:.2f} | "
            f"{naive.get(r.file, float('nan')) / r.seconds:.1f} | {diff:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parquet-rows", type=int, nargs="*", default=[10_000_000, 50_000_000])
    parser.add_argument("--csv-rows", type=int, nargs="*", default=[10_000_000])
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument(
        "--skip-naive-above",
        type=int,
        default=60_000_000,
        help="skip the in-memory naive script for larger files",
    )
    parser.add_argument("--device", default="cpu", help="gaussnll's --device (cpu, cuda)")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    files = [(args.data_dir / f"bench_{n}.parquet", n) for n in args.parquet_rows]
    files += [(args.data_dir / f"bench_{n}.csv", n) for n in args.csv_rows]
    results = []
    for path, rows in files:
        print(f"generating/using {path} ...", file=sys.stderr)
        generate(path, rows)
        for case, floor, command in cases(path, args.device):
            if case == NAIVE and rows > args.skip_naive_above:
                continue
            print(f"  {case}", file=sys.stderr)
            results.append(measure(case, floor, command, path, rows))
    startup = startup_seconds()
    print(table(results))
    print()
    print(" | ".join(f"gaussnll {flag}: {seconds:.2f} s" for flag, seconds in startup.items()))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    payload = {"results": [asdict(r) for r in results], "startup_seconds": startup}
    (out / "latest.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
