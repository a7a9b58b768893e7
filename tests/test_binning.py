"""The calibration's bin lookups against torch.bucketize and exact rational arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from gaussnll.core.state.binning import Cells, EdgeBins, LevelGrid, QuantileGrid, folded

CPU = torch.device("cpu")
SCORE_LEVELS = tuple(j / 100 for j in range(1, 100))


def _values_near(edges: list[float], count: int = 20_000) -> torch.Tensor:
    """Random values in [-1, 1], and ±0, ±1 and each edge exactly and one ulp either side."""
    generator = torch.Generator().manual_seed(5)
    exact = torch.tensor([0.0, -0.0, 1.0, -1.0, *edges], dtype=torch.float64)
    near = torch.cat([exact, torch.nextafter(exact, exact + 1), torch.nextafter(exact, exact - 1)])
    random = torch.rand(count, generator=generator, dtype=torch.float64) * 2 - 1
    return torch.cat([random, near.clamp(-1, 1)]).reshape(-1, 1)


@pytest.mark.parametrize(
    "edges",
    [
        [0.5, -0.8, 0.9, 0.95, -0.99],
        [0.9, 0.9001, 0.90015, -0.2],  # three edges share one cell
        [0.3, math.nextafter(0.3, 1.0), 0.7],  # an ulp apart: a second comparison table
        [math.nextafter(-0.0, -1.0), 0.0],  # ±0 on either side of a cell boundary
        [-1.0, 1 / 3],
        [],
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_edge_bins_equal_bucketize(edges: list[float], dtype: torch.dtype) -> None:
    values = _values_near(edges).to(dtype)
    expected = torch.bucketize(values.double(), torch.tensor(sorted(edges), dtype=torch.float64))
    assert torch.equal(EdgeBins(edges, CPU)(values), expected)


def test_edge_bins_put_nan_in_a_valid_bin() -> None:
    bins = EdgeBins([0.5], CPU)(torch.tensor([[float("nan")], [0.7]], dtype=torch.float64))
    assert bins.tolist() == [[0], [1]]


def test_level_grid_counts_the_intervals_outside() -> None:
    levels = (0.0, 0.25, 0.5, 0.95)
    values = _values_near([edge for p in levels for edge in (p, -p)])
    expected = torch.bucketize(values.abs(), torch.tensor(levels, dtype=torch.float64))
    grid = LevelGrid(levels)
    assert [grid.bin(e) for e in values.flatten().tolist()] == expected.flatten().tolist()


@pytest.mark.parametrize("steps", [100, 20, 7, 1])
def test_quantile_grid_bins_u_exactly(steps: int) -> None:
    """``e`` against each boundary ``2i/steps - 1`` (``u = i/steps``), correctly rounded as the
    levels are, in exact rational arithmetic; a boundary itself goes to the bin nearer
    ``u = 1/2``, and ``u = 1/2`` up."""
    grid = QuantileGrid(steps)
    boundaries = [Fraction(float(Fraction(2 * i - steps, steps))) for i in range(1, steps)]
    values = _values_near([float(b) for b in boundaries], count=2_000).flatten().tolist()
    for e in values:
        exact = Fraction(e)
        expected = sum(exact > b if b > 0 else exact >= b for b in boundaries)
        assert grid.bin(e) == expected, e
    assert grid.bin(0.0) == grid.bin(-0.0) == steps // 2


def test_quantile_grids_add_no_edges_to_the_score_levels() -> None:
    """The quantile grid of 100 steps and a PIT of 20 bins step where the score levels do."""
    score_edges = {*LevelGrid(SCORE_LEVELS).edges(), math.nextafter(-0.0, -1.0)}
    assert set(QuantileGrid(100).edges()) <= score_edges
    assert set(QuantileGrid(20).edges()) <= score_edges


def test_cells_give_each_grids_bin_and_the_sign() -> None:
    """Every grid's bin and the sign of ``e`` from its cell, and from its coarser cell among
    the edges of fewer grids (``cell_of``)."""
    grids = {
        "curve": LevelGrid(tuple(k / 99 for k in range(99))),
        "score": LevelGrid(SCORE_LEVELS),
        "level": LevelGrid((0.25, 0.5, 0.95, 0.999)),
        "check": QuantileGrid(100),
        "pit": QuantileGrid(7),
    }
    cells = Cells(grids)
    coarse = Cells({name: grids[name] for name in ("level", "check")})
    values = _values_near(cells.edges)
    cell = cells.lookup(CPU)(values).flatten()
    coarse_cell = coarse.cell_of(cells)[cell]
    assert cells.cells == len(cells.edges) + 1 and coarse.cells < cells.cells
    flat = values.flatten().tolist()
    for name, grid in grids.items():
        expected = [grid.bin(e) for e in flat]
        assert cells.bin_of_cell[name][cell].tolist() == expected, name
        if name in coarse.bin_of_cell:
            assert coarse.bin_of_cell[name][coarse_cell].tolist() == expected, name
    signs = [math.copysign(1.0, e) if e else 0.0 for e in flat]
    assert cells.sign_of_cell[cell].tolist() == signs
    assert coarse.sign_of_cell[coarse_cell].tolist() == signs


def test_folded_sums_cells_into_bins() -> None:
    bin_of_cell = torch.tensor([0, 0, 1, 1, 2])
    per_cell = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    assert folded(per_cell, bin_of_cell).tolist() == [[3.0, 7.0, 5.0], [0.0, 0.0, 1.0]]
