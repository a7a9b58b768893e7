"""The calibration's bin lookups against torch.bucketize and their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from gaussnll.core.binning import EdgeBins, SharedCells, bins_of_cells, folded, uniform_bins

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "edges",
    [
        [0.5, 0.8, 0.9, 0.95, 0.99],
        [0.9, 0.9001, 0.90015, 0.2],  # three edges share one of the 1024 cells
        [0.0, 1.0],
        [1 / 3],
        [],
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_edge_bins_equal_bucketize(edges: list[float], dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(3)
    values = torch.rand(20_000, 2, generator=generator, dtype=torch.float64)
    exact = torch.tensor([0.0, 1.0, *edges], dtype=torch.float64)
    near = torch.cat([exact, torch.nextafter(exact, exact + 1), torch.nextafter(exact, exact - 1)])
    values = torch.cat([values.flatten(), near.clamp(0, 1)]).to(dtype).reshape(-1, 1)
    expected = torch.bucketize(values.double(), torch.tensor(sorted(edges), dtype=torch.float64))
    assert torch.equal(EdgeBins(edges, CPU)(values), expected)


def test_edge_bins_put_nan_in_a_valid_bin() -> None:
    bins = EdgeBins([0.5], CPU)(torch.tensor([[float("nan")], [0.7]], dtype=torch.float64))
    assert bins.tolist() == [[0], [1]]


def test_uniform_bins_floor_and_clamp() -> None:
    values = torch.tensor([0.0, 0.005, 0.01, 0.011, 0.5, 0.999, 1.0, float("nan")])
    assert uniform_bins(values, 20).tolist() == [0, 0, 0, 0, 10, 19, 19, 0]
    assert uniform_bins(values, 100).tolist() == [0, 0, 1, 1, 50, 99, 99, 0]


def _values_near(edges: list[float]) -> torch.Tensor:
    """Random values in [0, 1], and each edge, 0 and 1 exactly and one ulp either side."""
    generator = torch.Generator().manual_seed(5)
    exact = torch.tensor([0.0, 1.0, *edges], dtype=torch.float64)
    near = torch.cat([exact, torch.nextafter(exact, exact + 1), torch.nextafter(exact, exact - 1)])
    random = torch.rand(20_000, generator=generator, dtype=torch.float64)
    return torch.cat([random, near.clamp(0, 1)]).reshape(-1, 1)


def test_edge_bins_with_edges_an_ulp_apart() -> None:
    """More cells cannot separate them: a second comparison table does."""
    edges = [0.3, math.nextafter(0.3, 1.0), 0.7]
    values = _values_near(edges)
    expected = torch.bucketize(values, torch.tensor(edges, dtype=torch.float64))
    assert torch.equal(EdgeBins(edges, CPU)(values), expected)


def test_shared_cells_give_each_grids_bins() -> None:
    grids = {
        "curve": [k / 99 for k in range(99)],
        "score": [j / 100 for j in range(1, 100)],
        "level": [0.25, 0.5, 0.95, 0.999],
    }
    shared = SharedCells(grids, CPU)
    values = _values_near([edge for edges in grids.values() for edge in edges])
    cells = shared(values)
    assert len(shared.edges) == 99 + 99 + 1  # 0.999 is the one level on neither other grid
    assert shared.cells == len(shared.edges) + 1
    for name, edges in grids.items():
        expected = torch.bucketize(values, torch.tensor(edges, dtype=torch.float64))
        assert torch.equal(shared.bin_of_cell[name][cells], expected), name


def test_folded_sums_cells_into_bins() -> None:
    bin_of_cell = bins_of_cells([0.1, 0.2, 0.3, 0.4], [0.2, 0.4])
    assert bin_of_cell.tolist() == [0, 0, 1, 1, 2]
    per_cell = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    assert folded(per_cell, bin_of_cell).tolist() == [[3.0, 7.0, 5.0], [0.0, 0.0, 1.0]]


@pytest.mark.parametrize("steps", [100, 20, 7])
def test_bins_of_u_from_twice_u_are_the_same(steps: int) -> None:
    """The calibration bins ``u = (1 + e)/2`` as ``(1 + e)·(steps/2)``: the same bits."""
    generator = torch.Generator().manual_seed(9)
    edges = torch.arange(steps + 1, dtype=torch.float64) / steps * 2 - 1  # e at u's bin edges
    near = torch.cat([edges, torch.nextafter(edges, edges + 1), torch.nextafter(edges, edges - 1)])
    random = torch.rand(50_000, generator=generator, dtype=torch.float64) * 2 - 1
    e = torch.cat([random, near.clamp(-1, 1)])
    expected = uniform_bins(e * 0.5 + 0.5, steps)
    assert torch.equal(uniform_bins(e + 1, steps, scale=steps / 2), expected)
