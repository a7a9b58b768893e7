"""Options kept in the repository: ``[tool.gaussnll]`` in the nearest ``pyproject.toml``, or a
file given with ``--config`` (its ``[tool.gaussnll]`` table, else its top level).

Keys are the settings' names (``mean_col``, ``nan_policy``, ``checks``...; ``compare``'s checks
are ``compare_checks``), checked against ``settings.SETTINGS``. Command-line options override
them, except ``--check``, which adds to the file's checks (a gate kept in the repository is never
dropped by one given for a run).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaussnll.cli.settings import SETTINGS
from gaussnll.core import UsageError

CONFIG_SETTINGS = {setting.name: setting for setting in SETTINGS if setting.config}


@dataclass(frozen=True)
class Config:
    """Option values from a file, and which file (None: no file)."""

    path: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)

    def with_inputs(self, inputs: Iterable[str]) -> list[str]:
        """Every file a run reads: ``inputs``, and this config file if any (outputs must
        differ from all of them)."""
        return [*inputs, *([] if self.path is None else [self.path])]


def load_config(explicit: str | None, start: Path | None = None) -> Config:
    """The ``--config`` file, else ``[tool.gaussnll]`` of the nearest ``pyproject.toml``."""
    if explicit is not None:
        data = _read(Path(explicit), explicit)
        table = _table(data.get("tool", {}), explicit)
        table = table.get("gaussnll", data) if isinstance(table, dict) else data
        return Config(explicit, _validated(table, explicit))
    for directory in [start or Path.cwd(), *(start or Path.cwd()).parents]:
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            data = _read(candidate, str(candidate))
            found = _table(data.get("tool", {}), str(candidate)).get("gaussnll")
            return Config(str(candidate), _validated(found, str(candidate))) if found else Config()
    return Config()


def _read(path: Path, name: str) -> dict[str, Any]:
    if path.exists() and not path.is_file():  # a FIFO would be waited on forever
        raise UsageError(f"--config {name}: is not a regular file; expected a TOML file")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise UsageError(f"--config {name}: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{name}: not valid TOML: {error}") from error
    except UnicodeDecodeError:
        raise UsageError(f"{name}: not valid TOML: the file is not UTF-8 text") from None


def _table(value: Any, source: str) -> dict[str, Any]:
    """A TOML table, or an error naming the file when it is another kind of value."""
    if not isinstance(value, dict):
        raise UsageError(f"{source}: 'tool' must be a table. Got {type(value).__name__}.")
    return value


def _validated(table: Any, source: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise UsageError(f"{source}: [tool.gaussnll] must be a table. Got {type(table).__name__}.")
    values = {}
    for key, value in table.items():
        setting = CONFIG_SETTINGS.get(key)
        if setting is None:
            raise UsageError(
                f"{source}: unknown gaussnll setting {key!r}; the settings are "
                + ", ".join(CONFIG_SETTINGS)
            )
        expected = setting.config_types
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
            raise UsageError(f"{source}: {key} has the wrong type ({type(value).__name__})")
        strings = setting.parse is None  # a list that is not parsed as numbers
        if isinstance(value, list) and strings and not all(isinstance(v, str) for v in value):
            raise UsageError(f"{source}: {key} must be a list of strings")
        values[key] = setting.value(value)
    return values
