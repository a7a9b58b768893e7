"""A state's sums as plain arrays and back, found generically: every ``Sums`` reachable from
the state through attributes (and lists, tuples and dicts) of objects of ``gaussnll.core.state``
modules, named by its attribute path (``_loss``, ``calibration._sums``). A state module added
later is carried without new code, as long as it keeps its sums in ``Sums``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from gaussnll.core.state.sinks import Sums

_STATE_MODULES = "gaussnll.core.state."


def named_sums(state: object) -> dict[str, Sums]:
    """Every ``Sums`` of ``state`` by attribute path, in a stable (sorted) order."""
    return dict(sorted(_walk(state, "", set())))


def exported(state: object) -> dict[str, np.ndarray]:
    """Every running sum of ``state`` as NumPy arrays, named ``PATH:PART`` (``_loss:total.error``,
    ``calibration._counts:group.0``; see ``Sums.exported``)."""
    return {
        f"{path}:{name}": array
        for path, sums in named_sums(state).items()
        for name, array in sums.exported().items()
    }


def restore(state: object, arrays: dict[str, np.ndarray]) -> None:
    """Fill the sums of ``state`` (new, of the same options) from ``exported`` arrays. Raises
    ValueError naming a sum that one has and the other lacks, or whose shape differs."""
    sums = named_sums(state)
    given = {name.partition(":")[0] for name in arrays}
    for path in sorted(given.symmetric_difference(sums)):
        where = "the state has" if path in sums else "the saved sums have"
        raise ValueError(f"{where} a sum {path!r} the other lacks")
    for path, target in sums.items():
        prefix = path + ":"
        own = {name[len(prefix) :]: a for name, a in arrays.items() if name.startswith(prefix)}
        try:
            target.restore(own)
        except (KeyError, ValueError) as error:
            raise ValueError(f"sum {path!r}: {error}") from None


def _walk(value: object, path: str, seen: set[int]) -> Iterator[tuple[str, Sums]]:
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, Sums):
        yield path, value
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            yield from _walk(item, _joined(path, str(k)), seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield from _walk(item, _joined(path, key), seen)
    elif type(value).__module__.startswith(_STATE_MODULES) and hasattr(value, "__dict__"):
        for name, item in vars(value).items():
            yield from _walk(item, _joined(path, name), seen)


def _joined(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
