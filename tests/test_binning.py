"""The calibration's bin lookups against torch.bucketize and their closed forms."""

from __future__ import annotations

import pytest
import torch

from gaussnll.core.binning import EdgeBins, uniform_bins

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


def test_uniform_bins_ceil_floor_offset_and_clamp() -> None:
    values = torch.tensor([0.0, 0.005, 0.01, 0.011, 0.5, 0.999, 1.0, float("nan")])
    ceil = uniform_bins(values, 100, ceil=True, offset=-1, top=99)
    assert ceil.tolist() == [0, 0, 0, 1, 49, 99, 99, 0]
    floor = uniform_bins(values, 20, ceil=False, offset=0, top=19)
    assert floor.tolist() == [0, 0, 0, 0, 10, 19, 19, 0]
