"""The checks that narrow optional values for mypy: each misuse fails with a clear error, and
the mypy set-up (``.typecheck`` links) still points at the packages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gaussnll.core import ColumnSpec, OptionError, ScoreOptions, Scorer
from gaussnll.core.io.sources import resolve_source
from gaussnll.core.run.pairing import pair_by_id
from gaussnll.core.state.sinks import Placement, Sums

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parent.parent


def test_typecheck_links_point_at_the_packages():
    for package in ("core", "cli"):
        link = ROOT / ".typecheck" / "gaussnll" / package
        assert link.is_symlink() and not Path(link.readlink()).is_absolute()
        assert link.resolve() == (ROOT / package).resolve()


def test_sums_without_ranges_are_one_range():
    values = torch.arange(12, dtype=torch.float64).reshape(2, 2, 3)
    plain, one_range = Sums((2, 3), CPU), Sums((2, 3), CPU, ranges=[3])
    for sums in (plain, one_range):
        sums.add(values, Placement())
    (whole,) = plain.ranges()
    torch.testing.assert_close(whole, plain.value(), rtol=0, atol=0)
    torch.testing.assert_close(whole, one_range.ranges()[0], rtol=0, atol=0)
    torch.testing.assert_close(whole, values.sum(dim=0, keepdim=True), rtol=0, atol=0)


def test_ungrouped_sums_have_no_group_values():
    sums = Sums((1,), CPU)
    for read in (sums.value, sums.ranges):
        with pytest.raises(ValueError, match="not grouped"):
            read(by_group=True)


def test_grouped_sums_need_each_rows_group():
    sums = Sums((1,), CPU, grouped=True)
    with pytest.raises(ValueError, match="need group"):
        sums.add(torch.ones(3, 1), Placement())
    with pytest.raises(ValueError, match="need group"):
        Sums((), CPU, integer=True, grouped=True).count(3, Placement())
    with pytest.raises(ValueError, match="need mapping"):
        sums.merge(Sums((1,), CPU, grouped=True))


def test_pairing_by_id_needs_the_id_column(tmp_path: Path):
    path = tmp_path / "p.csv"
    path.write_text("mean,target,var\n0,0,1\n")
    source = resolve_source(str(path))
    with pytest.raises(OptionError, match=r"columns\.id"):
        pair_by_id((source, source), ScoreOptions(), CPU)


def test_a_grouped_scorer_refuses_an_ungrouped_one():
    plain = Scorer(device="cpu")
    plain.update(torch.zeros(2), torch.ones(2), torch.ones(2))
    grouped = Scorer(columns=ColumnSpec(by="g"), device="cpu")
    with pytest.raises(ValueError, match="ungrouped scorer"):
        grouped.merge(plain)
