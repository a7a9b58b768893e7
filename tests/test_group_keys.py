"""Group numbering of one key column: the direct table of integer keys numbers groups as the
hash lookup does (in order of first appearance), whatever the chunks, and hands over to it when
the values are too spread out or hold a null."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gaussnll.core.io.grouping import GroupKeys
from gaussnll.core.io.tensors import float_values, numpy_view, present


def first_appearance(values: list) -> tuple[list, list[int]]:
    """The keys in order of first appearance, and each value's group: the reference."""
    order: dict = {}
    groups = [order.setdefault(value, len(order)) for value in values]
    return [(value,) for value in order], groups


def indexed(chunks: list[pa.Array]) -> tuple[GroupKeys, list[int]]:
    keys = GroupKeys(("k",))
    groups: list[int] = []
    for chunk in chunks:
        groups += keys.index(pa.record_batch({"k": chunk})).tolist()
    return keys, groups


@pytest.mark.parametrize(
    "chunks",
    [
        [[5, 3, 5, -2], [7, 3, 100, -2, 8]],  # negative values, growth both ways
        [[10**12, 1, 2], [3, 10**12]],  # too spread out at once: the hash path
        [[1, 2, 3], [4, 10**12, 2], [1, 5]],  # too spread out later: handed over
        [[1, 2, None], [2, 3]],  # a null: the hash path
        [[4, 4, 2], [None, 4], [9, 2, None]],  # a null later
        [[], [3, 1], [1, 3, 2]],  # an empty chunk first
    ],
)
def test_integer_keys_are_numbered_in_order_of_first_appearance(chunks):
    arrays = [pa.array(chunk, type=pa.int64()) for chunk in chunks]
    keys, groups = indexed(arrays)
    expected_keys, expected = first_appearance([v for chunk in chunks for v in chunk])
    assert keys.keys == expected_keys
    assert groups == expected


@pytest.mark.parametrize("kind", [pa.int8(), pa.int32(), pa.uint16(), pa.uint32(), pa.uint64()])
def test_every_integer_type_numbers_its_groups_alike(kind, monkeypatch):
    if kind != pa.uint64():  # looked up directly, without a hash table per chunk
        monkeypatch.setattr(pc, "index_in", lambda *args, **kwargs: pytest.fail("hashed"))
    rng = np.random.default_rng(7)
    values = rng.integers(0, 120, size=2000)
    chunks = [pa.array(part, type=kind) for part in np.array_split(values, 9)]
    keys, groups = indexed(chunks)
    expected_keys, expected = first_appearance(values.tolist())
    assert keys.keys == expected_keys and groups == expected
    assert all(type(key[0]) is int for key in keys.keys)  # as the hash path's to_pylist gives


def test_groups_added_by_a_merge_are_found_by_the_direct_table():
    keys = GroupKeys(("k",))
    keys.index(pa.record_batch({"k": pa.array([1, 2])}))
    keys.add([(7,), (3,)])  # another scorer's groups
    groups = keys.index(pa.record_batch({"k": pa.array([3, 7, 1, 9])}))
    assert groups.tolist() == [3, 2, 0, 4]
    assert keys.keys == [(1,), (2,), (7,), (3,), (9,)]


def test_ids_up_to_millions_are_direct_from_a_first_chunk_that_sees_few_of_them(monkeypatch):
    """Ids 0..3M, the first chunk seeing 1,000 of them (far fewer than 4 entries per id of the
    span): still looked up directly, in order of first appearance."""
    monkeypatch.setattr(pc, "index_in", lambda *args, **kwargs: pytest.fail("hashed"))
    rng = np.random.default_rng(11)
    values = rng.integers(0, 3_000_000, size=6_000)
    chunks = [pa.array(part) for part in np.split(values, [1_000, 2_500])]
    keys, groups = indexed(chunks)
    expected_keys, expected = first_appearance(values.tolist())
    assert keys.keys == expected_keys and groups == expected


def test_looking_up_keys_imports_no_pandas(tmp_path):
    """pyarrow's ``to_numpy`` and ``pa.array`` import pandas at their first call: 0.2-0.3 s on
    the reader thread before the first chunk. Integer keys (looked up directly, or by Arrow
    with a null), text keys and intervals of a numeric column do without."""
    path = tmp_path / "keys.parquet"
    columns = {"mean": [0.0, 1.0, 2.0, 3.0], "var": [1.0, 2.0, 1.0, 2.0]}
    keys = {"id": [7, 3, 7, 9], "sparse": [7, None, 7, 9], "store": ["a", None, "b", "a"]}
    keys["x"] = [0.5, None, float("nan"), 2.5]
    pq.write_table(pa.table({**columns, "target": [0.5, 1.0, 1.5, 2.0], **keys}), path)
    for by in ("id", "sparse", "store", "id:q2", "mean:1.5", "x:1", "x:q2"):
        script = (
            "import sys\n"
            "from gaussnll.cli.app import app\n"
            f"sys.argv = ['gaussnll', 'score', {str(path)!r}, '--by', {by!r}, '--quiet',"
            " '--chunk-size', '2']\n"
            "try:\n    app(prog_name='gaussnll')\nexcept SystemExit as end:\n"
            "    assert end.code in (0, None), end.code\n"
            "print('pandas' in sys.modules, file=sys.stderr)\n"
        )
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert run.stderr.strip().splitlines()[-1] == "False", (by, run.stderr)


@pytest.mark.parametrize(
    "kind",
    [
        *(pa.int8(), pa.int16(), pa.int32(), pa.int64()),
        *(pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()),
        *(pa.float16(), pa.float32(), pa.float64()),
    ],
)
def test_arrow_numbers_read_without_to_numpy_are_to_numpy_s(kind):
    """``numpy_view``, ``present`` and ``float_values`` (keys and intervals read without
    pandas) against pyarrow's ``to_numpy``: slices (a chunk's offset into its buffers), nulls
    and empty arrays of every numeric type."""
    values = [None if k % 5 == 3 else k * 7 % 100 for k in range(40)]
    whole = pa.array(values, kind)
    plain = pa.array([value or 0 for value in values], kind)
    for start, length in ((0, 40), (3, 20), (9, 31), (40, 0), (0, 0)):
        array, dense = whole.slice(start, length), plain.slice(start, length)
        expected = dense.to_numpy(zero_copy_only=False)
        assert numpy_view(dense).dtype == expected.dtype
        np.testing.assert_array_equal(numpy_view(dense), expected)
        np.testing.assert_array_equal(present(array), array.is_valid().to_numpy(False))
        floats = array.to_numpy(zero_copy_only=False).astype(np.float64)
        np.testing.assert_array_equal(float_values(array), floats)
    beyond = pa.array([2**53 + 1, 2**63 - 1, -(2**63) + 1], pa.int64())  # rounded as NumPy
    np.testing.assert_array_equal(float_values(beyond), beyond.to_numpy().astype(np.float64))


def test_a_nan_in_a_composite_key_is_one_value_whatever_the_chunks():
    """NaN is one key value, as in a single key column (which Arrow looks up): in a composite
    key each chunk's NaN made a group of its own, so the groups changed with --chunk-size."""
    keys = GroupKeys(("a", "b"))
    groups: list[int] = []
    nan = float("nan")
    for a, b in (([1, 1, 2], [nan, 0.5, nan]), ([2, 1], [nan, nan]), ([1], [nan])):
        groups += keys.index(pa.record_batch({"a": a, "b": b})).tolist()
    assert groups == [0, 1, 2, 2, 0, 0]
    assert len(keys.keys) == 3
