"""Benchmark ``gaussnll score`` against a bare streaming scan (the floor) and the naive script.

Every case is a separate process, timed from start to exit (interpreter and imports included),
with its own peak RSS (``wait4``). Data is generated once with a fixed seed under ``--data-dir``.
Each file's cases run ``--repeat`` times, taking turns; a case reports its fastest run and the
largest peak RSS of its runs (a noisy machine slows runs down, never speeds them up).

    python bench/bench.py            # 5M, 10M, 50M Parquet rows; 10M CSV rows; 10M rows by group;
                                     # ensembles of 1, 5, 10, 50 members of 1M rows
    python bench/bench.py --parquet-rows 1000000 --csv-rows 1000000 --group-rows 1000000  # quick
    python bench/bench.py --parquet-rows --csv-rows --group-rows   # the ensembles only
    python bench/bench.py --parquet-rows --csv-rows --group-rows --ensemble-members \
        --weight-rows 10000000                                   # the weighted cases only
    python bench/bench.py --parquet-rows --csv-rows --ensemble-members --weight-rows \
        --group-counts 100000 1000000                            # the group cases only
    python bench/bench.py --parquet-rows --csv-rows --group-rows --ensemble-members \
        --weight-rows --ci-rows --sample-rows 10000000 --quantile-rows 10000000 \
        --data-dir /tmp/gaussnll-bench                           # samples and quantiles only
    python bench/bench.py --parquet-rows --csv-rows --group-rows --ensemble-members \
        --weight-rows --sample-rows --quantile-rows --ci-rows 10000000  # the --ci cases only
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from baselines import QUANTILE_COLUMNS, QUANTILE_LEVELS

HERE = Path(__file__).resolve().parent
SEED = 7
WRITE_ROWS = 1 << 20


FLOOR = "floor: pyarrow stream + numpy NLL"
FLOOR_CALIBRATION = "floor + coverage, PIT, CRPS (numpy)"
NAIVE = "naive: pandas + torch"
UNGROUPED = "gaussnll score (no --by)"
UNWEIGHTED = "gaussnll score (unweighted)"
UNWEIGHTED_NLL_ONLY = "gaussnll score --no-calibration (unweighted)"
NO_CI = "gaussnll score (no --ci)"
GROUP_COUNTS = (100, 100_000, 1_000_000)
_HEAD_CHARS = 1 << 16
_JSON_NLL = re.compile(r'^\{.*?\n  "nll": ([^,\n]+),', re.DOTALL)
NUMPY_SAMPLES = "numpy scan: sorted-draw CRPS"
NUMPY_QUANTILES = "numpy scan: pinball + WIS"
# Per form: its numpy scan (a ``baselines.py`` kind), gaussnll's cases (flags after the file),
# and the score both print, compared as a cross-check of exactness.
FORM_CASES = {
    "samples": (
        (NUMPY_SAMPLES, "samples"),
        (
            ("--samples draws", ["--samples", "draws"]),
            (
                "--samples draws --metrics nll,samples",
                ["--samples", "draws", "--metrics", "nll,samples"],
            ),
        ),
        "sample_crps",
    ),
    "quantiles": (
        (NUMPY_QUANTILES, "quantiles"),
        (
            (
                "--quantiles (5 levels)",
                [
                    "--quantiles",
                    ",".join(map(str, QUANTILE_LEVELS)),
                    "--quantile-cols",
                    ",".join(QUANTILE_COLUMNS),
                ],
            ),
        ),
        "wis",
    ),
}


@dataclass
class Result:
    case: str
    floor: str
    file: str
    rows: int
    seconds: float
    peak_rss_mb: float
    nll: float | None  # or the score ``measure`` was asked to read
    cpu_seconds: float = 0.0  # user + system time of the process, threads included
    slowest: float = 0.0  # the slowest of the case's runs (``seconds`` is the fastest)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def generate(path: Path, rows: int, groups: tuple[int, ...] = (), weights: bool = False) -> Path:
    """Write ``rows`` seeded heteroscedastic predictions (mean, var, target) to ``path``, a key
    column ``g<N>`` of N random groups for each of ``groups``, and with ``weights`` a column
    ``w`` of row weights in [0, 3)."""

    def batch(rng: Any, n: int) -> Any:
        import numpy as np
        import pyarrow as pa

        mean = rng.normal(size=n)
        var = rng.uniform(0.05, 3.0, size=n)
        target = mean + 1.2 * np.sqrt(var) * rng.standard_normal(n)
        keys = {f"g{count}": rng.integers(0, count, size=n) for count in groups}
        if weights:
            keys["w"] = rng.uniform(0.0, 3.0, size=n)
        return pa.record_batch({"mean": mean, "var": var, "target": target, **keys})

    return _write(path, rows, WRITE_ROWS, batch)


def generate_ensemble(path: Path, rows: int, members: int) -> Path:
    """Write ``rows`` seeded predictions of ``members`` Gaussians each (list columns ``mean``
    and ``var`` of ``members`` values, as ``--ensemble`` reads them) and a target."""

    def batch(rng: Any, n: int) -> Any:
        import pyarrow as pa

        truth = rng.normal(size=n)
        mean = truth[:, None] + 0.5 * rng.standard_normal((n, members))
        var = rng.uniform(0.05, 3.0, size=(n, members))
        target = truth + rng.standard_normal(n)
        lists = {
            name: pa.FixedSizeListArray.from_arrays(values.ravel(), members)
            for name, values in (("mean", mean), ("var", var))
        }
        return pa.record_batch({**lists, "target": target})

    return _write(path, rows, max(1, WRITE_ROWS // members), batch)


def generate_samples(path: Path, rows: int, draws: int) -> Path:
    """Write ``rows`` seeded rows of ``draws`` draws each (a fixed-size list column ``draws``,
    as ``--samples draws`` reads it) of a slightly over-confident model, and a target."""

    def batch(rng: Any, n: int) -> Any:
        import pyarrow as pa

        truth = rng.normal(size=n)
        values = truth[:, None] + rng.standard_normal((n, draws))
        target = truth + 1.2 * rng.standard_normal(n)
        column = pa.FixedSizeListArray.from_arrays(values.ravel(), draws)
        return pa.record_batch({"draws": column, "target": target})

    return _write(path, rows, max(1, WRITE_ROWS // draws), batch)


def generate_quantiles(path: Path, rows: int) -> Path:
    """Write ``rows`` seeded rows of a Gaussian's quantiles at ``QUANTILE_LEVELS`` (columns
    ``QUANTILE_COLUMNS``, noisy enough that some cross) and a target."""

    def batch(rng: Any, n: int) -> Any:
        import pyarrow as pa
        from scipy.special import ndtri

        mean, std = rng.normal(size=n), rng.uniform(0.2, 2.0, size=n)
        target = mean + 1.2 * std * rng.standard_normal(n)
        columns = {
            name: mean + std * (ndtri(level) + 0.2 * rng.standard_normal(n))
            for name, level in zip(QUANTILE_COLUMNS, QUANTILE_LEVELS, strict=True)
        }
        return pa.record_batch({**columns, "target": target})

    return _write(path, rows, WRITE_ROWS, batch)


def _write(path: Path, rows: int, step: int, batch: Callable[[Any, int], Any]) -> Path:
    """Write ``rows`` rows to ``path`` (unless it exists; Parquet, or CSV by its suffix) in
    batches of ``step`` rows, each ``batch(rng, n)`` of a generator seeded with ``SEED``; under
    a temporary name until done."""
    if path.exists():
        return path
    import numpy as np
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED)
    temporary = path.with_suffix(path.suffix + ".partial")
    writer = None
    for start in range(0, rows, step):
        made = batch(rng, min(step, rows - start))
        if writer is None:
            kind = pq.ParquetWriter if path.suffix == ".parquet" else pacsv.CSVWriter
            writer = kind(str(temporary), made.schema)
        writer.write_batch(made)
    if writer is not None:
        writer.close()
    temporary.rename(path)
    return path


def generate_apart(path: Path, rows: int, groups: tuple[int, ...], weights: bool = False) -> None:
    """``generate`` in a fresh interpreter. Generating here would leave this process large, and
    a child's peak RSS counts its parent's at the fork: every case would report at least that."""
    if path.exists():
        return
    process = multiprocessing.get_context("spawn").Process(
        target=generate, args=(path, rows, groups, weights)
    )
    _join(process, path)


def generate_ensemble_apart(path: Path, rows: int, members: int) -> None:
    """``generate_ensemble`` in a fresh interpreter (see ``generate_apart``)."""
    _generate_in_child(generate_ensemble, path, rows, members)


def _generate_in_child(generator: Callable[..., Path], path: Path, *args: int) -> None:
    """``generator(path, *args)`` in a fresh interpreter (see ``generate_apart``)."""
    if path.exists():
        return
    process = multiprocessing.get_context("spawn").Process(target=generator, args=(path, *args))
    _join(process, path)


def _join(process: multiprocessing.process.BaseProcess, path: Path) -> None:
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"generating {path} failed ({process.exitcode})")


def measure(
    case: str, floor: str, command: list[str], file: Path, rows: int, key: str = "nll"
) -> Result:
    """Run ``command`` to completion; wall time, peak RSS, and the NLL it printed, or the score
    ``key`` names (output goes to temporary files: a full pipe would stall the process being
    timed)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        # Only the head: reading (let alone parsing) 130 MB of group JSON here would leave this
        # process large, and a child's peak RSS counts its parent's at the fork.
        text, error = out.read(_HEAD_CHARS).lstrip(), err.read(_HEAD_CHARS)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{case} failed ({os.waitstatus_to_exitcode(status)}): {error.strip()}")
    value = _nll(text) if key == "nll" else _score(text, key)
    cpu = usage.ru_utime + usage.ru_stime
    return Result(case, floor, file.name, rows, seconds, usage.ru_maxrss / 1024, value, cpu)


def measure_repeated(
    listed: list[tuple[str, str, list[str]]], file: Path, rows: int, repeat: int, key: str = "nll"
) -> list[Result]:
    """Each case's fastest run and largest peak RSS, the cases taking turns ``repeat`` times."""
    runs: dict[str, list[Result]] = {case: [] for case, _, _ in listed}
    for turn in range(repeat):
        for case, floor, command in listed:
            print(f"  {case} ({turn + 1}/{repeat})", file=sys.stderr)
            runs[case].append(measure(case, floor, command, file, rows, key))
    results = []
    for case_runs in runs.values():
        fastest = min(case_runs, key=lambda run: run.seconds)
        fastest.peak_rss_mb = max(run.peak_rss_mb for run in case_runs)
        fastest.slowest = max(run.seconds for run in case_runs)
        results.append(fastest)
    return results


def _nll(head: str) -> float | None:
    """The NLL a case printed, from the head of its output: its JSON's ``nll``, a bare number,
    or None (a table)."""
    if match := _JSON_NLL.search(head):
        return float(match[1])
    try:
        return float(head)
    except ValueError:
        return None


def _score(head: str, key: str) -> float | None:
    """The score ``key`` a case printed: the first ``"key": value`` of its JSON, or a bare
    number (a numpy scan's)."""
    if match := re.search(rf'"{key}": ([^,\n]+)', head):
        return float(match[1])
    return _nll(head)


def score_command(file: Path, device: str) -> list[str]:
    """``gaussnll score FILE`` on ``device``, without a progress bar."""
    return [sys.executable, "-m", "gaussnll.cli", "score", str(file), "--quiet", "--device", device]


def cases(file: Path, device: str) -> list[tuple[str, str, list[str]]]:
    """(case, the floor it is compared with, command)."""
    score = [*score_command(file, device), "--json"]
    baseline = [sys.executable, str(HERE / "baselines.py")]
    return [
        (FLOOR, FLOOR, [*baseline, "floor", str(file)]),
        ("gaussnll score --no-calibration", FLOOR, [*score, "--no-calibration"]),
        (FLOOR_CALIBRATION, FLOOR_CALIBRATION, [*baseline, "floor-calibration", str(file)]),
        ("gaussnll score (full calibration)", FLOOR_CALIBRATION, score),
        (NAIVE, FLOOR, [*baseline, "naive", str(file)]),
    ]


def group_cases(
    file: Path, device: str, counts: tuple[int, ...] = GROUP_COUNTS
) -> list[tuple[str, str, list[str]]]:
    """Group breakdowns (#4, #26), each compared with the same file scored without --by: for
    each of ``counts`` groups, a table of the top 10 and the JSON of every group (the run
    allows as many groups as the file holds)."""
    score = score_command(file, device)
    listed = [(UNGROUPED, UNGROUPED, [*score, "--json"])]
    for count in counts:
        by = ["--by", f"g{count}", "--max-groups", str(count)]
        listed.append((f"--by g{count} --top 10 (table)", UNGROUPED, [*score, *by, "--top", "10"]))
        listed.append((f"--by g{count} --json (every group)", UNGROUPED, [*score, *by, "--json"]))
    return listed


def weight_cases(file: Path, device: str) -> list[tuple[str, str, list[str]]]:
    """Row weights (#21), each compared with the same file scored without them."""
    score = [*score_command(file, device), "--json"]
    weighted = [*score, "--weight-col", "w"]
    nll_only = "--no-calibration"
    return [
        (UNWEIGHTED, UNWEIGHTED, score),
        ("--weight-col w", UNWEIGHTED, weighted),
        (UNWEIGHTED_NLL_ONLY, UNWEIGHTED_NLL_ONLY, [*score, nll_only]),
        ("--weight-col w --no-calibration", UNWEIGHTED_NLL_ONLY, [*weighted, nll_only]),
    ]


def ci_cases(file: Path, device: str) -> list[tuple[str, str, list[str]]]:
    """Bootstrap intervals (#27), each compared with the same file scored without them."""
    score = [*score_command(file, device), "--json"]
    return [
        (NO_CI, NO_CI, score),
        ("--ci (B = 200)", NO_CI, [*score, "--ci"]),
        ("--ci --ci-replicates 50", NO_CI, [*score, "--ci", "--ci-replicates", "50"]),
        ("--ci --metrics nll (B = 200)", NO_CI, [*score, "--ci", "--metrics", "nll"]),
    ]


ENSEMBLE_CASES = (
    ("--ensemble", ["--ensemble", "--json"]),
    ("--ensemble --no-calibration", ["--ensemble", "--json", "--no-calibration"]),
)


def ensemble_table(results: list[Result], members: dict[str, int]) -> str:
    """Each ensemble case against the same case with one member (``members``: by file)."""
    one = {r.case: r.seconds for r in results if members[r.file] == 1}
    lines = [
        "| members | case | rows/s | wall s | peak RSS MB | x 1 member |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {members[r.file]} | {r.case} | {r.rows_per_second:,.0f} | {r.seconds:.2f} | "
        f"{r.peak_rss_mb:,.0f} | {_ratio(r.seconds, one.get(r.case))} |"
        for r in sorted(results, key=lambda r: (r.case, members[r.file]))
    ]
    return "\n".join(lines)


def form_cases(file: Path, form: str, device: str) -> list[tuple[str, str, list[str]]]:
    """Samples or quantiles (#28): the numpy scan of the same score, then gaussnll's cases,
    each compared with that scan."""
    (scan, kind), listed, _ = FORM_CASES[form]
    score = [*score_command(file, device), "--json"]
    return [
        (scan, scan, [sys.executable, str(HERE / "baselines.py"), kind, str(file)]),
        *((case, scan, [*score, *flags]) for case, flags in listed),
    ]


def form_table(results: list[Result]) -> str:
    """Each samples or quantiles case against the numpy scan of its file, and its score's
    relative difference from the scan's (``nll`` holds the score each printed)."""
    scans = {r.file: r for r in results if r.case == r.floor}
    lines = [
        "| file | case | rows/s | wall s | peak RSS MB | x numpy scan | score rel. diff |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        scan = scans[r.file]
        diff = (
            abs(r.nll - scan.nll) / abs(scan.nll)
            if r.nll is not None and scan.nll is not None
            else math.nan
        )
        lines.append(
            f"| {r.file} | {r.case} | {r.rows_per_second:,.0f} | {r.seconds:.2f} | "
            f"{r.peak_rss_mb:,.0f} | {r.seconds / scan.seconds:.2f} | {diff:.1e} |"
        )
    return "\n".join(lines)


def _ratio(seconds: float, reference: float | None) -> str:
    return "-" if reference is None else f"{seconds / reference:.2f}"


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
    references = (FLOOR, UNGROUPED, UNWEIGHTED, NO_CI)
    reference = {r.file: r.nll for r in results if r.case in references}
    lines = [
        "| file | case | rows/s | wall s | slowest s | CPU s | peak RSS MB | x floor "
        "| naive / this | NLL rel. diff |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        # A weighted NLL is another number than the unweighted reference: not compared.
        comparable = r.nll is not None and "--weight-col" not in r.case
        diff = abs(r.nll - reference[r.file]) / abs(reference[r.file]) if comparable else 0.0
        lines.append(
            f"| {r.file} | {r.case} | {r.rows_per_second:,.0f} | {r.seconds:.2f} | "
            f"{r.slowest:.2f} | {r.cpu_seconds:.2f} | {r.peak_rss_mb:,.0f} | "
            f"{r.seconds / seconds[r.file, r.floor]:.2f} | "
            f"{naive.get(r.file, float('nan')) / r.seconds:.1f} | {diff:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parquet-rows", type=int, nargs="*", default=[5_000_000, 10_000_000, 50_000_000]
    )
    parser.add_argument("--csv-rows", type=int, nargs="*", default=[10_000_000])
    parser.add_argument(
        "--group-rows", type=int, nargs="*", default=[10_000_000], help="rows of the --by cases"
    )
    parser.add_argument(
        "--group-counts",
        type=int,
        nargs="*",
        default=list(GROUP_COUNTS),
        help=f"groups of the --by cases, among {', '.join(map(str, GROUP_COUNTS))}",
    )
    parser.add_argument(
        "--weight-rows",
        type=int,
        nargs="*",
        default=[10_000_000],
        help="rows of the weighted cases",
    )
    parser.add_argument(
        "--ci-rows", type=int, nargs="*", default=[10_000_000], help="rows of the --ci cases"
    )
    parser.add_argument(
        "--ensemble-rows", type=int, default=1_000_000, help="rows of the --ensemble cases"
    )
    parser.add_argument(
        "--ensemble-members",
        type=int,
        nargs="*",
        default=[1, 5, 10, 50],
        help="members of each ensemble case (1 is the reference; none: no ensemble cases)",
    )
    parser.add_argument(
        "--sample-rows",
        type=int,
        nargs="*",
        default=[10_000_000],
        help="rows of the --samples cases (none: no samples cases)",
    )
    parser.add_argument("--sample-draws", type=int, default=100, help="draws per row")
    parser.add_argument(
        "--quantile-rows",
        type=int,
        nargs="*",
        default=[10_000_000],
        help="rows of the --quantiles cases, 5 levels (none: no quantile cases)",
    )
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument(
        "--skip-naive-above",
        type=int,
        default=60_000_000,
        help="skip the in-memory naive script for larger files",
    )
    parser.add_argument("--device", default="cpu", help="gaussnll's --device (cpu, cuda)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each case (fastest and largest RSS kept)"
    )
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    files = [(args.data_dir / f"bench_{n}.parquet", n) for n in args.parquet_rows]
    files += [(args.data_dir / f"bench_{n}.csv", n) for n in args.csv_rows]
    grouped = [(args.data_dir / f"bench_groups_{n}.parquet", n) for n in args.group_rows]
    weighted = [(args.data_dir / f"bench_weights_{n}.parquet", n) for n in args.weight_rows]
    intervals = [(args.data_dir / f"bench_ci_{n}.parquet", n) for n in args.ci_rows]
    results = []
    for path, rows in files + grouped + weighted + intervals:
        print(f"generating/using {path} ...", file=sys.stderr)
        is_grouped = path.name.startswith("bench_groups_")
        is_weighted = path.name.startswith("bench_weights_")
        generate_apart(path, rows, GROUP_COUNTS if is_grouped else (), is_weighted)
        listed = (
            group_cases(path, args.device, tuple(args.group_counts))
            if is_grouped
            else weight_cases(path, args.device)
            if is_weighted
            else ci_cases(path, args.device)
            if path.name.startswith("bench_ci_")
            else cases(path, args.device)
        )
        listed = [c for c in listed if not (c[0] == NAIVE and rows > args.skip_naive_above)]
        results += measure_repeated(listed, path, rows, args.repeat)
    ensembles, members = [], {}
    for count in args.ensemble_members:
        path = args.data_dir / f"bench_ensemble_{args.ensemble_rows}_m{count}.parquet"
        print(f"generating/using {path} ...", file=sys.stderr)
        generate_ensemble_apart(path, args.ensemble_rows, count)
        members[path.name] = count
        listed = [
            (case, case, [*score_command(path, args.device), *flags])
            for case, flags in ENSEMBLE_CASES
        ]
        ensembles += measure_repeated(listed, path, args.ensemble_rows, args.repeat)
    forms = []
    for form, rows, path in [
        *(
            ("samples", n, args.data_dir / f"bench_samples_{n}_m{args.sample_draws}.parquet")
            for n in args.sample_rows
        ),
        *(
            ("quantiles", n, args.data_dir / f"bench_quantiles_{n}.parquet")
            for n in args.quantile_rows
        ),
    ]:
        print(f"generating/using {path} ...", file=sys.stderr)
        if form == "samples":
            _generate_in_child(generate_samples, path, rows, args.sample_draws)
        else:
            _generate_in_child(generate_quantiles, path, rows)
        listed = form_cases(path, form, args.device)
        forms += measure_repeated(listed, path, rows, args.repeat, FORM_CASES[form][2])
    startup = startup_seconds()
    if results:
        print(table(results))
    if ensembles:
        print()
        print(ensemble_table(ensembles, members))
    if forms:
        print()
        print(form_table(forms))
    print()
    print(f"Each case: the fastest of {args.repeat} runs, with the largest peak RSS of them.")
    print(" | ".join(f"gaussnll {flag}: {seconds:.2f} s" for flag, seconds in startup.items()))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    payload = {
        "results": [asdict(r) for r in results],
        "ensembles": [{**asdict(r), "members": members[r.file]} for r in ensembles],
        "forms": [asdict(r) for r in forms],
        "startup_seconds": startup,
    }
    (out / "latest.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
