"""Chunks reaching the device: as they are on the CPU; through pinned memory and a side stream
on a GPU, with every report equal to the CPU's (the CUDA tests skip without a GPU)."""

from __future__ import annotations

import pytest
import torch

from gaussnll.core import ColumnSpec, ScoreOptions, compare, score
from gaussnll.core.io.transfer import HostToDevice, wait_for

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_on_the_cpu_tensors_stay_where_they_are():
    tensor = torch.arange(4.0)
    (moved, missing), arrived = HostToDevice(torch.device("cpu")).send([tensor, None])
    assert moved is tensor and missing is None and arrived is None
    wait_for(None, [moved])  # nothing to wait for


@needs_cuda
def test_sent_tensors_arrive_on_the_gpu():
    device = torch.device("cuda")
    host = torch.arange(100_000, dtype=torch.float64)
    (moved,), arrived = HostToDevice(device).send([host])
    wait_for(arrived, [moved])
    assert moved.device.type == "cuda" and torch.equal(moved.cpu(), host)


@needs_cuda
@pytest.mark.parametrize("by", [(), ("id",)])
def test_gpu_report_equals_cpu(parquet_file, by):
    options = ScoreOptions(chunk_size=300, columns=ColumnSpec(by=by))
    cpu = score(str(parquet_file), options, device="cpu")
    gpu = score(str(parquet_file), options, device="cuda")
    assert gpu.nll_mean == pytest.approx(cpu.nll_mean, rel=1e-12)
    assert gpu.calibration.crps == pytest.approx(cpu.calibration.crps, rel=1e-12)
    assert gpu.calibration.pit_counts == cpu.calibration.pit_counts
    for mine, theirs in zip(gpu.groups, cpu.groups, strict=True):
        assert mine.report.nll == pytest.approx(theirs.report.nll, rel=1e-12)


@needs_cuda
def test_gpu_compare_equals_cpu(parquet_file):
    cpu = compare(str(parquet_file), str(parquet_file), ScoreOptions(chunk_size=256, device="cpu"))
    gpu = compare(str(parquet_file), str(parquet_file), ScoreOptions(chunk_size=256, device="cuda"))
    assert gpu.paired.delta_nll == cpu.paired.delta_nll == 0.0
    assert gpu.baseline.nll == pytest.approx(cpu.baseline.nll, rel=1e-12)
