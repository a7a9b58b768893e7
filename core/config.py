"""Options kept in the repository: ``[tool.gaussnll]`` in the nearest ``pyproject.toml``, or a
file given with ``--config`` (its ``[tool.gaussnll]`` table, else its top level).

Keys are the command-line option names with ``_`` for ``-`` (``mean_col``, ``nan_policy``,
``checks``...); ``compare``'s checks are ``compare_checks``. Command-line options override them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaussnll.core.errors import UsageError

CONFIG_KEYS: dict[str, type | tuple[type, ...]] = {
    "mean_col": str,
    "target_col": str,
    "var_col": str,
    "std_col": str,
    "log_var_col": str,
    "id_col": str,
    "full": bool,
    "eps": (int, float),
    "reduction": str,
    "chunk_size": int,
    "device": str,
    "dtype": str,
    "nan_policy": str,
    "delimiter": str,
    "calibration": bool,
    "levels": list,
    "pit_bins": int,
    "workers": int,
    "checks": list,
    "by": list,
    "top": int,
    "sort_by": str,
    "per_group": bool,
    "compare_checks": list,
    "max_regression": (int, float),
    "confidence": float,
}


@dataclass(frozen=True)
class Config:
    """Option values from a file, and which file (None: no file)."""

    path: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)


def load_config(explicit: str | None, start: Path | None = None) -> Config:
    """The ``--config`` file, else ``[tool.gaussnll]`` of the nearest ``pyproject.toml``."""
    if explicit is not None:
        data = _read(Path(explicit))
        table = data.get("tool", {}).get("gaussnll", data)
        return Config(explicit, _validated(table, explicit))
    for directory in [start or Path.cwd(), *(start or Path.cwd()).parents]:
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            table = _read(candidate).get("tool", {}).get("gaussnll")
            return Config(str(candidate), _validated(table, str(candidate))) if table else Config()
    return Config()


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise UsageError(f"--config {path}: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from error


def _validated(table: Mapping[str, Any], source: str) -> dict[str, Any]:
    for key, value in table.items():
        expected = CONFIG_KEYS.get(key)
        if expected is None:
            raise UsageError(
                f"{source}: unknown gaussnll setting {key!r}; the settings are "
                + ", ".join(CONFIG_KEYS)
            )
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise UsageError(f"{source}: {key} has the wrong type ({type(value).__name__})")
    return dict(table)
