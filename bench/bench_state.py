"""State files of many ``--by`` groups: JSON against Arrow IPC.

    python bench/bench_state.py [--groups 1000,10000,100000] [--rows-per-group 10] [--folder DIR]

For each number of groups, a state of that many groups (of 10 rows each, with calibration) is
made once; then, each step in a fresh process, it is written in each format (seconds, file
size, and how much the writing raised the peak resident memory above that of the state
loaded); it is loaded into a ``Scorer`` (seconds, peak resident memory above the process's
before), and two copies of the file are loaded and merged (``merge_state_files``: the same).
"state" is the size of the state's arrays in memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

MIB = 1 << 20
FORMATS = {"json": ".json", "arrow": ".arrow"}


def peak_mib() -> float:
    """This process's peak resident memory since the last ``reset_peak``."""
    return _status_mib("VmHWM")


def resident_mib() -> float:
    return _status_mib("VmRSS")


def reset_peak() -> None:
    """Start a new peak (Linux: writing 5 to clear_refs resets VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MIB
    raise SystemExit(f"no {field} in /proc/self/status")


def make_state(groups: int, rows_per_group: int, path: Path) -> None:
    """A state of ``groups`` groups of ``rows_per_group`` rows each."""
    from gaussnll.core import ColumnSpec, score

    rng = np.random.default_rng(0)
    rows = rows_per_group * groups
    mean = rng.normal(size=rows)
    var = rng.uniform(0.05, 3.0, size=rows)
    target = mean + np.sqrt(var) * rng.standard_normal(rows)
    table = pa.table({"mean": mean, "var": var, "target": target, "g": np.arange(rows) % groups})
    columns = ColumnSpec(by=("g",))
    score(table, columns=columns, max_groups=max(groups, 1), state_to=str(path))


def write_step(source: Path, target: Path) -> dict[str, float]:
    """Load the state ``source``, then time writing it to ``target``."""
    from gaussnll.core import load_state, save_state

    document = load_state(str(source))
    state_mib = sum(array.nbytes for array in document["sums"].values()) / MIB
    before = resident_mib()
    reset_peak()
    started = time.perf_counter()
    save_state(document, str(target))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "state_mib": state_mib, "raised_mib": peak_mib() - before}


def merge_step(path: Path, warm: Path) -> dict[str, float]:
    """Time loading the state ``path`` into a scorer, and loading two copies and merging them,
    after merging the small state ``warm`` of the same format (the first use's imports)."""
    from gaussnll.core import Scorer, load_state, merge_state_files

    merge_state_files([str(warm), str(warm)]).report()
    baseline = resident_mib()
    reset_peak()
    started = time.perf_counter()
    scorer = Scorer.from_state(load_state(str(path)))
    loaded = {"load_seconds": time.perf_counter() - started, "load_mib": peak_mib() - baseline}
    del scorer
    gc.collect()
    baseline = resident_mib()
    reset_peak()
    started = time.perf_counter()
    merged = merge_state_files([str(path), str(path)])
    seconds = time.perf_counter() - started
    rows = int(merged.report().rows)
    return {**loaded, "seconds": seconds, "raised_mib": peak_mib() - baseline, "rows": rows}


def child(step: str, *paths: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", step, *paths]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{step} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="1000,10000,100000")
    parser.add_argument("--rows-per-group", type=int, default=10)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, *paths = args.child
        if step == "make":
            make_state(int(paths[0]), int(paths[1]), Path(paths[2]))
            print("{}")
        elif step == "write":
            print(json.dumps(write_step(Path(paths[0]), Path(paths[1]))))
        else:
            print(json.dumps(merge_step(Path(paths[0]), Path(paths[1]))))
        return
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench_state_"))
    folder.mkdir(parents=True, exist_ok=True)
    header = (
        f"{'groups':>8} {'format':>6} {'state MiB':>9} {'file MiB':>9} {'write s':>8} "
        f"{'write +MiB':>10} {'load s':>7} {'load +MiB':>9} {'load+merge 2 s':>14} "
        f"{'load+merge 2 +MiB':>17}"
    )
    print(header)
    warm = folder / "warm.arrow"
    child("make", "10", "2", str(warm))
    for groups in (int(g) for g in args.groups.split(",")):
        made = folder / f"made_{groups}.arrow"
        child("make", str(groups), str(args.rows_per_group), str(made))
        for name, suffix in FORMATS.items():
            path = folder / f"state_{groups}{suffix}"
            written = child("write", str(made), str(path))
            warmed = folder / f"warm{suffix}"
            if not warmed.exists():
                child("write", str(warm), str(warmed))
            merged = child("merge", str(path), str(warmed))
            if merged["rows"] != 2 * args.rows_per_group * groups:
                raise SystemExit(f"merged {merged['rows']} rows of {groups} groups: not 2 copies")
            print(
                f"{groups:>8} {name:>6} {written['state_mib']:>9.1f} "
                f"{path.stat().st_size / MIB:>9.1f} {written['seconds']:>8.2f} "
                f"{written['raised_mib']:>10.0f} {merged['load_seconds']:>7.2f} "
                f"{merged['load_mib']:>9.0f} {merged['seconds']:>14.2f} "
                f"{merged['raised_mib']:>17.0f}",
                flush=True,
            )
            path.unlink()
        made.unlink()


if __name__ == "__main__":
    main()
