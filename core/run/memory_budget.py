"""How much memory the groups' sums of a run may take: what the default group limit follows from.

A quarter of the machine's memory (``os.sysconf``), so the groups' sums, the report derived from
them and the chunks in flight fit together; the environment variable ``GAUSSNLL_GROUP_MEMORY``
(bytes) sets another budget, e.g. on a machine shared with other work.
"""

from __future__ import annotations

import os

BUDGET_VARIABLE = "GAUSSNLL_GROUP_MEMORY"
_SHARE = 4  # the budget is 1/_SHARE of the machine's memory
_UNKNOWN_MEMORY = 8 << 30  # where the machine does not say (bytes)


def group_memory_budget() -> tuple[int, str]:
    """The bytes the groups' sums may take, and where the figure comes from (for messages)."""
    given = os.environ.get(BUDGET_VARIABLE, "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given), BUDGET_VARIABLE
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        memory = _UNKNOWN_MEMORY
    source = f"a quarter of this machine's memory; {BUDGET_VARIABLE} sets another"
    return max(memory, 0) // _SHARE, source
