"""Turn the ``device`` option into a torch device, with a clear error when it cannot be used,
and run CPU kernels on one thread where splitting them costs more than it gains."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from gaussnll.core.errors import OptionError

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first CUDA device when one is available, else the CPU."""
    if not _DEVICE.match(name):
        raise OptionError("device", f"must be auto, cpu, cuda or cuda:N. Got {name!r} instead.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError("device", f"{name}: no CUDA device is available; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionError(
                "device", f"{name}: only {torch.cuda.device_count()} CUDA device(s) are available"
            )
    return device


@contextmanager
def single_threaded_kernels(applies: bool = True) -> Iterator[None]:
    """Run torch's CPU kernels on one thread each, if ``applies`` (process-wide; restored
    afterwards). Kernels of a chunk or of a batch of groups' summaries are too small to split:
    the threads' synchronisation costs more than it gains, many times more on a loaded
    machine (see bench/README.md)."""
    threads = torch.get_num_threads()
    if applies:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
