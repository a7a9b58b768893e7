"""Keep freed chunk-sized buffers in the process instead of returning them to the OS.

Each chunk allocates short-lived tensors of a few MB. glibc serves and frees those through
mmap/munmap by default, so every chunk pays page faults for every temporary, which slows the
calibration pass (see bench/README.md). Raising glibc's mmap and trim thresholds lets the heap reuse
the memory; peak RSS stays bounded by the chunk size. Process-wide, so it is opt-in: the CLI
calls it, so do Dask tasks (in the worker process), and Python users scoring in batch may
too. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 25  # glibc's largest allowed value on 64-bit
_TRIM_THRESHOLD_BYTES = 1 << 28


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for chunked streaming; True if it was applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    applied = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    return bool(applied and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
