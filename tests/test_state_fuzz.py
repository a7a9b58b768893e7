"""State files (JSON and Arrow IPC) and recalibration maps are untrusted input: random mutations
of valid ones (flipped bytes and bits, changed types, huge, negative and non-finite numbers,
dropped and added keys, deep nesting, unhashable keys, truncation), drawn from a seeded RNG,
end in exit 0 with the right numbers or exit 2 with one line, never exit 3, a signal or a
hang."""

from __future__ import annotations

import copy
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, assert_same_report, make_predictions, write_table
from typer.testing import CliRunner

from gaussnll.cli.app import app

ROWS = 90
KEYS = ["a", "b", "c"]
CASES = 25  # per kind of mutation: a few seconds in all
ODD_VALUES: list[Any] = [
    None,
    "abc",
    True,
    -1,
    0,
    2**70,
    10**30,
    1.5,
    float("nan"),
    float("inf"),
    -float("inf"),
    [],
    {},
    [[1, 2]],
    {"x": [1]},
    "\x1b[31m[red]",
]


def run(*args: object):
    return CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Any]:
    """A shard scored by key into a JSON and an Arrow state, its merged report, and a map
    fitted on it."""
    folder = tmp_path_factory.mktemp("fuzz")
    columns = make_predictions(ROWS, seed=11)
    key = [KEYS[k % len(KEYS)] for k in range(ROWS)]
    data = write_table(pa.table({**columns, "key": key}), folder / "shard.parquet")
    states = {}
    for suffix in ("json", "arrow"):
        states[suffix] = folder / f"state.{suffix}"
        result = run("score", data, "--by", "key", "--save-state", states[suffix], "-q")
        assert result.exit_code == 0, result.output
    merged = run("merge", states["json"], "--json", "-q")
    assert merged.exit_code == 0, merged.output
    fitted = folder / "map.json"
    assert run("recalibrate", data, "--by", "key", "-o", fitted, "-q").exit_code == 0
    return {
        "folder": folder,
        "data": data,
        "columns": columns,
        "key": key,
        "states": states,
        "report": json.loads(merged.stdout),
        "map": json.loads(fitted.read_text()),
    }


# --- mutations -----------------------------------------------------------------------------------


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value (long lists sampled by their first items)."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for k, item in enumerate(value[:3]):
            found += _paths(item, (*path, k))
    return found


def _mutated_document(document: Any, rng: random.Random) -> str:
    """``document`` as JSON text with one random change at a random place."""
    document = copy.deepcopy(document)
    path = rng.choice(_paths(document)[1:])
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    kind = rng.choice(["type", "number", "text", "drop", "add", "nest", "unhashable"])
    if kind == "type":
        parent[last] = rng.choice(ODD_VALUES)
    elif kind == "number" and isinstance(parent[last], int | float):
        parent[last] = rng.choice([-parent[last], parent[last] * 10**12, 2**63, float("nan")])
    elif kind == "text":  # what json.dumps never writes: a number beyond a float, or digits
        parent[last] = PLACEHOLDER  # beyond Python's limit, or nesting deeper than it recurses
        token = rng.choice(["1e400", "-1e400", "1" * 5000, "[" * 5000 + "]" * 5000])
        return json.dumps(document).replace(json.dumps(PLACEHOLDER), token)
    elif kind == "drop":
        del parent[last]
    elif kind == "add" and isinstance(parent, dict):
        parent["extra"] = rng.choice(ODD_VALUES)
    elif kind == "add" and isinstance(parent, list):
        parent.append(rng.choice(ODD_VALUES))
    elif kind == "nest":
        parent[last] = _nested(50)
    else:
        parent[last] = [[parent[last]]]
    return json.dumps(document)


PLACEHOLDER = "<placeholder>"


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _flipped(data: bytes, rng: random.Random) -> bytes:
    """``data`` with one random change: a bit flipped, a byte replaced, or the end cut."""
    changed = bytearray(data)
    position = rng.randrange(len(changed))
    kind = rng.random()
    if kind < 0.6:
        changed[position] ^= 1 << rng.randrange(8)
    elif kind < 0.9:
        changed[position] = rng.randrange(256)
    else:
        del changed[position:]
    return bytes(changed)


def _arrow_with_header(state: Path, header: str) -> bytes:
    """The Arrow state ``state`` with its document replaced by ``header`` (JSON text)."""
    table = pa.ipc.open_file(pa.OSFile(str(state))).read_all()
    table = table.replace_schema_metadata({b"gaussnll.state": header.encode()})
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _state_cases(made: dict[str, Any], seed: int) -> list[bytes]:
    """Mutated states of each form: JSON text, the Arrow file's bytes, its document."""
    rng = random.Random(seed)
    as_json = made["states"]["json"].read_bytes()
    as_arrow = made["states"]["arrow"].read_bytes()
    document = json.loads(as_json)
    table = pa.ipc.open_file(pa.OSFile(str(made["states"]["arrow"]))).read_all()
    header = json.loads(table.schema.metadata[b"gaussnll.state"])
    cases = []
    for _ in range(CASES):
        cases.append(_mutated_document(document, rng).encode())
        cases.append(_flipped(as_json, rng))
        cases.append(_flipped(as_arrow, rng))
        cases.append(_arrow_with_header(made["states"]["arrow"], _mutated_document(header, rng)))
    return cases


# --- outcomes ------------------------------------------------------------------------------------


def _assert_merged_or_refused(result, want: dict[str, Any]) -> None:
    """Exit 0 with the unchanged state's numbers, or exit 2 with one line."""
    if result.exit_code == 0:
        assert_same_report(json.loads(result.stdout), want)
    else:
        assert_one_line_error(result, "gaussnll: ")


def test_mutated_states_merge_to_the_right_numbers_or_are_refused(made, tmp_path):
    refused = 0
    for k, data in enumerate(_state_cases(made, seed=29)):
        state = tmp_path / f"case{k}.state"
        state.write_bytes(data)
        result = run("merge", state, "--json", "-q")
        _assert_merged_or_refused(result, made["report"])
        refused += result.exit_code == 2
    assert refused > CASES  # most mutations are caught (a changed digest or schema)


def _expected_nll(made: dict[str, Any], document: dict[str, Any]) -> float:
    """torch's mean NLL with each variance times its key's scale in ``document`` (a map, read
    with ``json``), the overall scale for a key it lacks."""
    scales = {entry["key"]["key"]: entry["scale"][0] for entry in document.get("groups", [])}
    factor = np.array([float(scales.get(key, document["scale"][0])) for key in made["key"]])
    columns = made["columns"]
    mean, target, var = (torch.from_numpy(columns[k]) for k in ("mean", "target", "var"))
    return F.gaussian_nll_loss(mean, target, var * torch.from_numpy(factor)).item()


def test_mutated_maps_score_to_the_right_numbers_or_are_refused(made, tmp_path):
    rng = random.Random(30)
    text = json.dumps(made["map"]).encode()
    scored = 0
    for k in range(CASES * 2):
        data = _mutated_document(made["map"], rng).encode() if k % 2 else _flipped(text, rng)
        fitted = tmp_path / f"map{k}.json"
        fitted.write_bytes(data)
        result = run("score", made["data"], "--recalibration", fitted, "--json", "-q")
        if result.exit_code != 0:
            assert_one_line_error(result, "gaussnll: ")
            continue
        scored += 1
        want = _expected_nll(made, json.loads(data))
        assert json.loads(result.stdout)["nll"] == pytest.approx(want, rel=1e-12)
    assert scored  # some mutations leave a valid map (another key, a key's scale)


def test_a_special_file_is_refused_in_one_line(made, tmp_path):
    """In a process of its own with a timeout: reading a FIFO would block for ever."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    runs, specials = [], []
    for special in map(str, (fifo, Path("/dev/zero"), tmp_path)):
        runs.append(["merge", special])
        runs.append(["score", str(made["data"]), "--recalibration", special])
        runs.append(["rescale", special, str(made["data"]), "-o", str(tmp_path / "o.csv")])
        specials += [special] * 3
    for outcome, special in zip(_in_a_process(runs), specials, strict=True):
        assert outcome["code"] == 2, outcome
        (line,) = outcome["stderr"].splitlines()
        assert line.startswith(f"gaussnll: error: {special}: cannot read the "), line
        assert line.endswith(", not a regular file"), line


def test_a_state_claiming_more_than_it_holds_allocates_nothing(made, tmp_path):
    """Sizes from the document are checked against the sums present before anything is made
    (10**9 outputs would be 8 GB of sums)."""
    document = json.loads(made["states"]["json"].read_text())
    del document["identity"]  # as an older state, whose sums no digest vouches for
    for key, value in (("outputs", 10**9), ("members", 10**9)):
        claimed = tmp_path / f"{key}.json"
        claimed.write_text(json.dumps({**document, key: value}))
        assert_one_line_error(run("merge", claimed), str(claimed), "not a gaussnll state file")


def _offsets_past_the_values(state: Path) -> bytes:
    """The Arrow state ``state`` written uncompressed, the list offsets of its largest sums
    (two int64s, ``[0, n]``) pointing past their values."""
    table = pa.ipc.open_file(pa.OSFile(str(state))).read_all()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    values = max(len(column[0].values) for column in table.columns)
    offsets = struct.pack("<qq", 0, values)
    assert offsets in data
    return data.replace(offsets, struct.pack("<qq", values + 1, values + 2))


SCRIPT = """
import json, sys
from typer.testing import CliRunner
from gaussnll.cli.app import app
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, args)
    print(json.dumps({"code": result.exit_code, "stderr": result.stderr}), flush=True)
"""


def _in_a_process(runs: list[list[str]]) -> list[dict[str, Any]]:
    """The exit code and stderr of each command line of ``runs``, run one after the other in
    a Python process of their own, which must end by itself (no signal, no hang)."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(runs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_damaged_arrow_states_end_without_a_signal(made, tmp_path):
    """In a process of its own, as a damaged buffer used to abort the process (SIGABRT)."""
    rng = random.Random(31)
    as_arrow = made["states"]["arrow"].read_bytes()
    damaged = tmp_path / "offsets.arrow"
    damaged.write_bytes(_offsets_past_the_values(made["states"]["arrow"]))
    runs = [["merge", str(damaged)]]
    for k in range(CASES):
        path = tmp_path / f"flip{k}.arrow"
        changed = bytearray(as_arrow)
        changed[rng.randrange(len(changed))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(changed))
        runs.append(["merge", str(path), "--json", "-q"])
    outcomes = _in_a_process(runs)
    assert len(outcomes) == CASES + 1
    assert outcomes[0]["code"] == 2 and "Arrow IPC" in outcomes[0]["stderr"]
    assert {outcome["code"] for outcome in outcomes} <= {0, 2}
