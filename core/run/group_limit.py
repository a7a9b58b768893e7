"""A scorer's groups: their keys from the options, and how many a run may hold (``--max-groups``,
or by default the groups whose sums fit the memory budget), checked each time groups are
reserved, so a run over the limit stops with one line before its memory runs out."""

from __future__ import annotations

from gaussnll.core.errors import OptionError, UsageError
from gaussnll.core.families import FAMILIES
from gaussnll.core.io.grouping import GroupKeys
from gaussnll.core.options import ScoreOptions
from gaussnll.core.run.memory_budget import group_memory_budget
from gaussnll.core.state.score_state import ScoreState


def group_keys_of(options: ScoreOptions) -> GroupKeys | None:
    """The keys of the groups ``options.columns.by`` makes (None: no ``--by``); quantile bins
    (``COL:qK``) must have been resolved to edges by a first pass over the data."""
    if any(isinstance(bins, int) for bins in options.intervals.values()):
        raise UsageError(
            "quantile bins need a first pass over the data, which a Scorer does not make: "
            "score a file or a table, or give the intervals' edges"
        )
    by = options.columns.by
    return GroupKeys(by, options.edges()) if by else None


def reserve_groups(state: ScoreState, group_keys: GroupKeys, max_groups: int | None) -> None:
    """Make room in ``state`` for the groups seen so far, unless there are more than
    ``max_groups`` (None: than the groups whose sums fit the memory budget): an OptionError
    naming ``max_groups``, the budget and what each group costs."""
    found, size = len(group_keys.keys), state.bytes_per_group
    if max_groups is None:
        budget, source = group_memory_budget()
        limit = budget // max(size, 1)
        stated = f"is {limit:,} by default (the groups whose sums fit {_size(budget)}: {source})"
    else:
        limit, stated = max_groups, f"is {max_groups:,}"
    if found > limit:
        families = ",".join(name for name in FAMILIES if name in state.selection.groups)
        raise OptionError(
            "max_groups",
            f"{stated} but the by columns {', '.join(map(repr, group_keys.columns))} "
            f"hold more groups ({found:,} found so far); each group's sums take "
            f"{_size(size)} with the group metrics {families}, so {limit:,} groups take "
            f"about {_size(limit * size)}: raise the limit, choose fewer --group-metrics "
            "or group by fewer values",
        )
    state.reserve(found)


def _size(size: float) -> str:
    """A byte count for a person: ``56 bytes``, ``5.1 KB``, ``510 MB``."""
    if size < 1000:
        return f"{size:,.0f} bytes"
    units = ["KB", "MB", "GB", "TB"]
    size /= 1000
    while size >= 1000 and len(units) > 1:
        size /= 1000
        units.pop(0)
    return f"{size:.3g} {units[0]}"
