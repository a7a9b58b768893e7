"""Turn the ``device`` option into a torch device, with a clear error when it cannot be used."""

from __future__ import annotations

import re

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
