"""Where a run scores its input: in this process or on a Dask cluster. ``score(source,
options, executor=...)`` takes either, so a caller chooses where, not which function; both cut
the input into partitions, score each into a mergeable state and add the states up, so the
report is the same (to about 1e-12) wherever it was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class InProcess:
    """This process: chunks are scored by ``options.workers`` threads (the default)."""


@dataclass(frozen=True)
class OnDask:
    """The Dask cluster at ``address`` (``local``: a ``LocalCluster`` of ``workers`` processes
    on 127.0.0.1, None: one per core); ``timeout``: seconds to wait for the scheduler's first
    answer (None: ``--timeout``'s default); ``verbose``: Dask's own logging on stderr. Per-row
    losses go to a directory (one Parquet part per partition), so ``rows_to`` is its path."""

    address: str
    workers: int | None = None
    timeout: float | None = None
    verbose: bool = False

    def cluster(self) -> dict[str, Any]:
        """The cluster's keyword arguments of ``score_on_dask`` and ``merge_on_dask``."""
        return asdict(self)


Executor = InProcess | OnDask
