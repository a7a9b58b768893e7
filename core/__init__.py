"""gaussnll's library: the torch-exact loss, the streaming scorer and its report.

``gaussian_nll_loss`` / ``GaussianNLLLoss`` are drop-in replacements for torch's; ``score``
streams a file through the same loss into a :class:`Report`. Names are imported on first use,
so importing ``gaussnll.core`` (or a light module in it) does not import torch or pyarrow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ColumnSpec": "columns",
    "Spread": "columns",
    "DEFAULT_CHUNK_ROWS": "defaults",
    "ScoreOptions": "options",
    "Scorer": "scorer",
    "score": "api",
    "compare": "comparison",
    "CompareReport": "comparison",
    "GaussnllError": "errors",
    "InputError": "errors",
    "UsageError": "errors",
    "GaussianNLLLoss": "loss",
    "gaussian_nll_loss": "loss",
    "OutputScore": "report",
    "Report": "report",
    "ScoreState": "state",
    "keep_freed_memory": "allocator",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gaussnll.core' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gaussnll.core.{module}"), name)


def __dir__() -> list[str]:
    return __all__
