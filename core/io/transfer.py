"""Move a chunk's tensors from the host to the scoring device.

On the CPU nothing moves. On a CUDA device each tensor is copied into pinned (page-locked) host
memory and sent with a non-blocking copy on a side stream, from the reader thread: the transfer
of the next chunk overlaps the kernels of the current one. An event recorded after the copies
travels with the chunk; the scoring stream waits on it on the device, so the host never
synchronises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class HostToDevice:
    """Sends tensors to ``device`` (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def send(self, tensors: Sequence[Tensor | None]) -> tuple[list[Tensor | None], Any]:
        """The tensors on the device, and the CUDA event that marks their arrival (None on the
        CPU, where they are returned as they are)."""
        if self._stream is None:
            return [None if t is None else t.to(self.device) for t in tensors], None
        with torch.cuda.stream(self._stream):
            moved = [
                None if t is None else t.pin_memory().to(self.device, non_blocking=True)
                for t in tensors
            ]
            arrived = torch.cuda.Event()
            arrived.record(self._stream)
        return moved, arrived


def wait_for(arrived: Any, tensors: Sequence[Tensor | None]) -> None:
    """Make the current stream wait (on the device) for tensors sent with ``arrived``, and tell
    the caching allocator they are used on it; nothing to do for ``arrived=None``."""
    if arrived is None:
        return
    present = [tensor for tensor in tensors if tensor is not None]
    stream = torch.cuda.current_stream(present[0].device)
    stream.wait_event(arrived)
    for tensor in present:
        tensor.record_stream(stream)
