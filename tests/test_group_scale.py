"""Many groups at the cost of one (#26): compact group states with the reference's numbers,
growth that keeps every sum, and the top groups chosen as a full sort would."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
import torch
from calibration_reference import reference
from conftest import make_predictions
from torch.overrides import TorchFunctionMode

from gaussnll.cli.json_lines import compact_json, finite
from gaussnll.core import ColumnSpec, score
from gaussnll.core.families import GROUP_DEFAULT, select
from gaussnll.core.io.grouping import key_order, sort_key
from gaussnll.core.report import derive
from gaussnll.core.report import report as report_module
from gaussnll.core.state import sinks
from gaussnll.core.state.score_state import ScoreState
from gaussnll.core.state.sinks import Binned, GroupSink, Placement, Sums

CPU = torch.device("cpu")
# The default group families' numbers (calibration counted per |e| cell in a group's state).
CURVE_NUMBERS = ("mace", "rmsce", "miscalibration_area")
DEFAULT_GROUP_NUMBERS = (
    "coverage",
    "interval_width",
    "interval_score",
    "crps",
    "sharpness",
    "z_mean",
    "z_std",
    "var_scale",
    "mae",
    "rmse",
    "bias",
)


def test_a_default_group_state_is_compact():
    """The curve's and the coverage's counts are kept per |e| cell: 105 cells of the 209 of e,
    1,184 bytes a group and output with the default levels (2,016 before) for the default
    families but one_sided, whose one-sided levels need the sign of e (2,408 with it)."""
    symmetric = ("nll", "accuracy", "var_scale", "crps", "coverage", "calibration")
    levels = (0.5, 0.8, 0.9, 0.95, 0.99)
    state = ScoreState(1, CPU, levels=levels, grouped=True, selection=select(None, symmetric))
    assert state.bytes_per_group <= 1_200
    default = ScoreState(1, CPU, levels=levels, grouped=True)
    assert default.bytes_per_group <= 2_500


@pytest.mark.parametrize("curves", [False, True])
def test_each_group_of_the_default_families_equals_the_reference(curves):
    """Each group's numbers, from its compact state, against scipy on its rows alone: points
    on interval bounds (|z| at the levels' quantiles) and both signs of the error included.
    The calibration curve's numbers are a group's only when asked for (``curves``)."""
    columns = make_predictions(3_000, seed=11)
    columns["target"][:40] = columns["mean"][:40]  # e = 0: inside every interval
    keys = np.arange(3_000) % 7
    table = pa.table({**columns, "g": keys})
    chosen = (*GROUP_DEFAULT, "calibration") if curves else None
    report = score(
        table, device="cpu", chunk_size=257, columns=ColumnSpec(by="g"), group_metrics=chosen
    )
    assert len(report.groups) == 7
    for group in report.groups:
        rows = keys == group.key[0]
        expected = reference(*(columns[name][rows] for name in ("mean", "target", "var")))
        got = {**vars(group.report.calibration), **vars(group.report.accuracy)}
        for name in DEFAULT_GROUP_NUMBERS + (CURVE_NUMBERS if curves else ()):
            rel = 1e-6 if name == "miscalibration_area" else 1e-10
            np.testing.assert_allclose(got[name], expected[name], rtol=rel, atol=1e-12)
        assert got["pit_counts"] is None  # not a default group family
        assert (got["mace"] is None) is not curves


def test_growing_group_sums_keeps_them_and_starts_new_groups_at_zero():
    """Tables grow with uninitialised spare rows; each group's sums are still its own."""
    sink = GroupSink((1, 3), CPU, integer=True, ranges=[3])
    expected = np.zeros((40, 3), dtype=np.int64)
    rng = np.random.default_rng(3)
    for groups in (5, 6, 17, 40):
        sink.reserve(groups)
        group = rng.integers(0, groups, size=50)
        cell = rng.integers(0, 3, size=50)
        np.add.at(expected, (group, cell), 1)
        part = Binned(0, torch.from_numpy(cell).unsqueeze(1), None)
        sink.add_parts((), [part], torch.from_numpy(group))
        (table,) = sink.ranges()
        np.testing.assert_array_equal(table[:, 0].numpy(), expected[:groups])


def test_the_top_groups_by_a_metric_are_a_full_sort_s_first():
    """--top with --sort-by selects the first K without sorting every group: the same groups
    in the same order as the full sort, ties in key order, groups without a value last."""
    columns = make_predictions(600, seed=4)
    keys = np.arange(600) % 30
    columns["mean"][keys == 3] = columns["target"][keys == 3]  # a tie at mae 0 ...
    columns["mean"][keys == 9] = columns["target"][keys == 9]  # ... with another group
    report = score(pa.table({**columns, "g": keys}), device="cpu", columns=ColumnSpec(by="g"))
    for sort_by in ("mae:asc", "mae", "nll"):
        every = [group.key for group in report.with_groups(sort_by).groups]
        for top in (1, 2, 7, 30, 31):
            assert [g.key for g in report.with_groups(sort_by, top).groups] == every[:top]
    assert report.with_groups("mae:asc", 2).groups_total == 30


def test_a_table_of_the_first_groups_builds_only_their_reports(monkeypatch):
    """Groups are built when read: keeping the first 10 of 450 in key order builds 10 group
    reports (10^6 groups' GroupScores took 2.3 s), the same as the first 10 of all of them."""
    columns = make_predictions(900, seed=9)
    keys = (np.arange(900) * 7) % 450
    table = pa.table({**columns, "g": keys})
    report = score(table, device="cpu", columns=ColumnSpec(by="g"))
    built = []
    original = derive.Reports.__getitem__

    def counted(self, b):
        built.append(b)
        return original(self, b)

    made = []

    class Counted(report_module.GroupScore):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            made.append(self.index)

    monkeypatch.setattr(derive.Reports, "__getitem__", counted)
    monkeypatch.setattr(report_module, "GroupScore", Counted)
    assert len(report.groups) == report.groups_total == 450
    first = report.with_groups(None, 10)
    assert [group.index for group in first.groups] == made  # each built as it is read
    assert [group.key[0] for group in first.groups] == list(range(10)) and built == []
    entries = [group.to_dict(report.by) for group in first.groups]
    first_rows = [int(np.flatnonzero(keys == k)[0]) for k in range(10)]  # group = first row
    assert sorted(built) == sorted(first_rows)
    assert entries == [group.to_dict(report.by) for group in tuple(report.groups)[:10]]


def test_group_summaries_are_derived_a_batch_at_a_time_in_key_order(monkeypatch):
    """Reading the groups in key order derives each batch of summaries once; reading them
    sorted by a metric gives the same numbers, each batch derived at most twice."""
    columns = make_predictions(900, seed=8)
    keys = (np.arange(900) * 7) % 45  # first seen out of key order
    table = pa.table({**columns, "g": keys})
    whole = score(table, device="cpu", columns=ColumnSpec(by="g"))
    expected = {g.key: g.to_dict(whole.by) for g in whole.groups}
    monkeypatch.setattr(derive, "SUMMARY_BATCH", 4)
    derived = []
    original = derive.BatchedSummaries._derived

    def counted(self, chosen):
        derived.append(tuple(chosen.tolist()))
        return original(self, chosen)

    monkeypatch.setattr(derive.BatchedSummaries, "_derived", counted)
    report = score(table, device="cpu", columns=ColumnSpec(by="g"))
    derived.clear()
    assert {g.key: g.to_dict(report.by) for g in report.groups} == expected
    assert len(derived) == len(set(derived)) == 12  # 45 groups in batches of 4
    derived.clear()
    by_metric = report.with_groups("mae")
    assert {g.key: g.to_dict(report.by) for g in by_metric.groups} == expected
    assert len(derived) <= 2 * 12


def test_a_group_counts_in_int32_half_the_bytes():
    """The calibration's counts of a group are int32 while they fit: 368 bytes a group and
    output for the default families, 764 with the calibration curve, 1,376 with the one-sided
    one too (1,184 and 2,408 in int64)."""
    curve = (*GROUP_DEFAULT, "calibration")
    levels = (0.5, 0.8, 0.9, 0.95, 0.99)
    state = ScoreState(1, CPU, levels=levels, grouped=True, selection=select(None, curve))
    assert state.bytes_per_group == 764
    both = select(None, (*curve, "one_sided"))
    assert ScoreState(1, CPU, levels=levels, grouped=True, selection=both).bytes_per_group == 1_376
    assert ScoreState(1, CPU, levels=levels, grouped=True).bytes_per_group == 368


def test_compact_counts_widen_to_int64_before_they_could_overflow(monkeypatch):
    """With the int32 limit lowered to 120, counts stay int32 while the elements added could
    not pass it, then turn int64 with every count kept; a merge adds the bounds, a state file
    holds int64 either way and a restored sink counts on from what it holds."""
    monkeypatch.setattr(sinks, "_INT32_MAX", 120)
    sink = GroupSink((1, 3), CPU, integer=True, ranges=[3], compact=True)
    expected = np.zeros((4, 3), dtype=np.int64)
    rng = np.random.default_rng(5)
    sink.reserve(4)
    dtypes = []
    for _ in range(3):
        group, cell = rng.integers(0, 4, size=50), rng.integers(0, 3, size=50)
        np.add.at(expected, (group, cell), 1)
        part = Binned(0, torch.from_numpy(cell).unsqueeze(1), None)
        sink.add_parts((), [part], torch.from_numpy(group))
        (table,) = sink.ranges()
        dtypes.append(table.dtype)
        np.testing.assert_array_equal(table[:, 0].numpy(), expected)
    assert dtypes == [torch.int32, torch.int32, torch.int64]  # 100 elements, then 150
    assert sink.exported()["0"].dtype == np.int64
    small = GroupSink((1, 3), CPU, integer=True, ranges=[3], compact=True)
    small.reserve(4)
    small.add_parts(
        (),
        [Binned(0, torch.zeros((60, 1), dtype=torch.int64), None)],
        torch.zeros(60, dtype=torch.int64),
    )
    restored = GroupSink((1, 3), CPU, integer=True, ranges=[3], compact=True)
    restored.restore(small.exported())
    assert (restored.bound, restored.ranges()[0].dtype) == (60, torch.int32)
    restored.merge(small, torch.arange(4))  # 120 elements: still fits
    assert (restored.bound, restored.ranges()[0].dtype) == (120, torch.int32)
    restored.merge(small, torch.arange(4))
    assert (restored.bound, restored.ranges()[0].dtype) == (None, torch.int64)
    assert restored.ranges()[0][0, 0, 0].item() == 180


def test_counts_widened_mid_run_keep_every_group_s_numbers(monkeypatch):
    """Compact counts that turn int64 in the middle of a run (the int32 limit lowered), while
    new groups keep coming (tables growing, laid out column by column) and the σ buckets
    coarsen: every group's numbers are those of a run that never widened."""
    columns = make_predictions(3_000, seed=21, outputs=2)
    table = pa.table(
        {
            **{k: pa.FixedSizeListArray.from_arrays(v.ravel(), 2) for k, v in columns.items()},
            "g": np.arange(3_000) // 4,
        }
    )
    chosen = (*GROUP_DEFAULT, "calibration", "pit", "uncertainty", "scores")

    def scored() -> list[tuple]:
        report = score(
            table, device="cpu", chunk_size=97, columns=ColumnSpec(by="g"), group_metrics=chosen
        )
        timeless = {"seconds": 0.0}  # rows_per_second follows
        return [(group.key, repr(replace(group.report, **timeless))) for group in report.groups]

    expected = scored()
    widened = []
    grown = sinks._grown

    def recorded(table, capacity, used, dtype=None):
        widened.append(dtype == torch.int64 and used)
        return grown(table, capacity, used, dtype)

    monkeypatch.setattr(sinks, "_INT32_MAX", 5_000)
    monkeypatch.setattr(sinks, "_grown", recorded)
    assert scored() == expected
    assert any(widened)  # some tables of groups already counted turned int64


def test_group_entries_from_the_memo_are_json_dumps_bytes():
    """Long lists of floats written from the memo: the bytes of ``json.dumps`` (non-finite
    floats as null), signed zeros, lists that are not all floats and a key that holds the
    token included."""
    rng = np.random.default_rng(9)
    curve = (np.cumsum(rng.integers(0, 3, size=40)) / 37).tolist()
    odd = [*curve[:35], -0.0, 0.0, float("nan"), float("inf"), 1e-300, 5e-324]
    entry = {
        "key": {"g": "\ud8000"},  # the first token, as data
        "calibration": {"calibration_curve": curve, "other": odd, "short": [0.5, -0.0]},
        "mixed": [*curve, 1],
        "outputs": [{"curve": curve[::-1]}, {"curve": None}],
        "nll": 0.1,
    }
    plain = json.dumps(finite(entry), default=list)
    assert compact_json(entry) == plain
    entry["key"] = {"g": 3}
    assert compact_json(entry) == json.dumps(finite(entry), default=list)
    assert '"other": [' in plain and "-0.0, 0.0, null, null, 1e-300, 5e-324]" in plain


def test_group_summaries_read_after_the_report_derive_on_one_thread(monkeypatch):
    """Summaries are derived when a group is read, after ``Scorer.report`` returned: on one
    thread there too (two threads' synchronisation cost many times the work, loaded)."""
    columns = make_predictions(300, seed=2)
    table = pa.table({**columns, "g": np.arange(300) % 9})
    report = score(table, device="cpu", columns=ColumnSpec(by="g"))
    threads = []
    original = derive.BatchedSummaries._derived

    def counted(self, chosen):
        threads.append(torch.get_num_threads())
        return original(self, chosen)

    monkeypatch.setattr(derive.BatchedSummaries, "_derived", counted)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = score(table, device="cpu", columns=ColumnSpec(by="g"))
        [group.to_dict(report.by) for group in report.groups]
        assert threads and set(threads) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_key_order_is_sort_key_s_order():
    """Keys of one integer each are ordered by NumPy as ``sort_key`` orders them; beyond
    int64, with nulls, text or several columns, by ``sort_key``."""
    rng = np.random.default_rng(4)
    ints = [(int(v),) for v in rng.permutation(np.arange(-500, 500) * 10**15)]
    cases = [
        ints,
        [(2**63,), (-1,), (3,)],  # a uint64 value
        [(3,), (None,), (-2,)],
        [("b",), ("a",), (None,)],
        [(1, "b"), (1, "a"), (0, None)],
        [(True,), (False,)],
        [],
    ]
    for keys in cases:
        assert key_order(keys).tolist() == sorted(range(len(keys)), key=lambda b: sort_key(keys[b]))


class _Calls(TorchFunctionMode):
    """Counts the passes over the rows (``index_add_`` and ``scatter_add_`` calls) made
    within it."""

    def __init__(self) -> None:
        super().__init__()
        self.passes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.passes += func in (torch.Tensor.index_add_, torch.Tensor.scatter_add_)
        return func(*args, **(kwargs or {}))


def test_a_wide_group_sum_is_added_in_one_pass_and_a_narrow_one_column_by_column():
    """Column by column is one pass over the rows per position: the samples' 125 counts
    of a group took 125 (about 18 times one index_add_'s time); a few moments still go
    column by column, each into a column of its own in memory. The sums are the same bits
    either way."""
    rng = np.random.default_rng(3)
    group = torch.from_numpy(rng.integers(0, 50, size=400))
    for width, passes in ((125, 1), (3, 3)):
        values = torch.from_numpy(rng.normal(size=(400, width)))
        sink = GroupSink((width,), CPU)
        sink.reserve(50)
        with _Calls() as calls:
            sink.add(values, group)
        assert calls.passes == passes
        (table,) = sink.ranges()
        assert table.stride() == ((1, 50) if passes > 1 else (width, 1))
        expected = torch.zeros((50, width), dtype=torch.float64).index_add_(0, group, values)
        assert torch.equal(sink.value(), expected)


def test_groups_sums_are_read_a_group_to_a_row_whatever_their_layout():
    """What the report derives from a group's sums (a matmul, a mean along the row: the
    quantiles' WIS and mean score) gives the bits a group-major table gives: torch reduces a
    column-by-column table's rows in another order (last-bit differences in WIS)."""
    rng = np.random.default_rng(11)
    rows, groups = 2_000, 300
    group = torch.from_numpy(rng.integers(0, groups, size=rows))
    sums = Sums((5,), CPU, grouped=True, total=False)
    sums.reserve(groups)
    sums.add(torch.from_numpy(rng.normal(size=(rows, 5))), Placement(group))
    weights = torch.from_numpy(rng.uniform(size=5))
    value = sums.value(by_group=True)
    row_major = torch.tensor(value.tolist(), dtype=torch.float64)
    assert torch.equal(value @ weights, row_major @ weights)
    assert torch.equal(value.mean(dim=1), row_major.mean(dim=1))
    parts = Sums((1, 11), CPU, grouped=True, total=False, ranges=[6, 5])
    parts.reserve(groups)
    columns = [torch.from_numpy(rng.normal(size=(rows, 1))) for _ in range(6)]
    bins = torch.from_numpy(rng.integers(0, 5, size=(rows, 1)))
    values = torch.from_numpy(rng.normal(size=(rows, 1)))
    parts.add_parts(columns, [Binned(6, bins, values)], Placement(group))
    for table in parts.ranges(by_group=True):
        row_major = torch.tensor(table.tolist(), dtype=torch.float64)
        assert torch.equal(table.mean(dim=-1), row_major.mean(dim=-1))


def _sorted_one_by_one(report, sort_by: str) -> list:
    """The reference order: each group's report built and its metric read, then a stable sort
    (groups without a value last)."""
    metric, _, direction = sort_by.partition(":")
    sign = 1.0 if direction == "asc" else -1.0

    def order(group):
        value = group.report.metric(metric)
        return (True, 0.0) if value is None or math.isnan(value) else (False, sign * value)

    return [group.key for group in sorted(tuple(report.groups), key=order)]


@pytest.mark.parametrize(
    "sort_by",
    [
        "nll",
        "nll:asc",
        "dss",
        "crps:asc",
        "mae:asc",
        "coverage@0.9",
        "coverage@0.5:asc",
        "interval_width@0.9",
        "var_scale",
        "rows",
        "weight_sum:asc",
        "skipped_rows",
        "mace",
        "quantile_mace",
        "check_score",  # not a group family: every group without a value
    ],
)
def test_groups_sorted_by_a_metric_read_at_once_are_in_the_one_by_one_order(sort_by, monkeypatch):
    """--sort-by reads every group's value from the groups' columns, without a Report each,
    in the order of reading each group's report: ties in key order, a group whose rows were
    all skipped (no value) and a metric not computed for groups last."""
    columns = make_predictions(1_200, seed=12)
    keys = np.arange(1_200) % 40
    columns["mean"][keys == 3] = columns["target"][keys == 3]  # ties at mae 0
    columns["mean"][keys == 9] = columns["target"][keys == 9]
    columns["var"][keys == 5] = np.nan  # every row skipped
    weight = 1.0 + (keys % 3)
    table = pa.table({**columns, "g": keys, "w": weight})
    by = ColumnSpec(by="g", weight="w")
    options = {"device": "cpu", "columns": by, "nan_policy": "skip", "chunk_size": 301}
    report = score(table, group_metrics=(*GROUP_DEFAULT, "calibration"), **options)
    expected = _sorted_one_by_one(report, sort_by)
    built = []
    original = derive.Reports.__getitem__
    monkeypatch.setattr(
        derive.Reports, "__getitem__", lambda self, b: built.append(b) or original(self, b)
    )
    ranked = report.with_groups(sort_by)
    if sort_by.partition(":")[0] != "quantile_mace":  # one place: read by column
        assert built == []
    assert [group.key for group in ranked.groups] == expected
    for top in (1, 5, 40):
        assert [group.key for group in report.with_groups(sort_by, top).groups] == expected[:top]
