"""Score chunks on several threads into one scorer, with the same sums as on one thread.

torch's kernels release the GIL, so worker threads compute in parallel while the reader thread
decodes the next chunks. Whichever thread is free takes the next chunk, computes its
contribution and records the changes to the sums (``sinks.recording``); the consumer applies
them in chunk order as it takes the results. The sums thus see the same additions in the same
order as with one thread: the same bits, on every run, for any number of workers.
Each kernel runs on one thread: splitting 64k-element kernels across cores costs more in
synchronisation than it gains, and the cores are busy with other chunks instead.

With one worker and ``--by`` on the CPU, the consumer scores each chunk but records only the
changes to the groups' sums, which a thread of their own applies in chunk order while the next
chunk is scored: the random writes into many groups' tables are half the work of a chunk.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext

import torch

from gaussnll.core.io.chunks import Chunk
from gaussnll.core.io.devices import single_threaded_kernels
from gaussnll.core.run.scored import Scored
from gaussnll.core.run.scorer import Scorer
from gaussnll.core.state.sinks import Ledger, of_groups, recording

MAX_AUTO_WORKERS = 4
# Chunks in flight per worker: a free worker finds the next chunk queued while results are
# handed over, so it never waits for the consumer (with one in flight it idled).
QUEUED_PER_WORKER = 2


def auto_workers(device: torch.device, grouped: bool, compute_bound: bool) -> int:
    """Workers by default, up to ``MAX_AUTO_WORKERS``: one per core but the reader's when the
    computation outweighs the reading (calibration of Parquet or Arrow), else one per two cores
    (reading is the bottleneck: without calibration, or parsing CSV); on 2 cores a second
    worker gains nothing and costs memory (see bench/README.md). One on a GPU (its kernels
    are queued asynchronously already) and when grouping (the groups' sums are added by one
    thread anyway: with one worker, by a thread of their own beside it)."""
    if device.type != "cpu" or grouped:
        return 1
    cores = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKERS, cores - 1 if compute_bound else cores // 2))


class ScorerPool:
    """``workers`` threads adding chunks to one scorer (see the module docstring)."""

    def __init__(self, scorer: Scorer, workers: int) -> None:
        self.scorer = scorer
        self.workers = workers
        self._in_flight: deque[tuple[Chunk, Future[tuple[Scored, Ledger]]]] = deque()
        self._waiting: Chunk | None = None  # read, not yet handed out (the workers are busy)

    def unfinished(self) -> list[Chunk]:
        """Chunks read whose results were not yielded, in order (after an error: the failing
        chunk first)."""
        waiting = [] if self._waiting is None else [self._waiting]
        return [chunk for chunk, _ in self._in_flight] + waiting

    def scored(self, chunks: Iterator[Chunk]) -> Generator[tuple[Chunk, Scored], None, None]:
        """Score ``chunks``; yield each with what it contributed, in input order, once its
        changes to the sums are made. An error from a chunk is raised in that order too."""
        on_cpu = self.scorer.device.type == "cpu"
        if self.workers == 1:  # the consumer scores each chunk itself: no hand-over
            grouped = on_cpu and self.scorer.group_keys is not None
            with single_threaded_kernels(on_cpu), _GroupSums(grouped) as group_sums:
                for chunk in chunks:
                    self._waiting = chunk
                    with group_sums.recording() as changes:
                        scored = self.scorer.add(chunk)
                    group_sums.apply(changes)
                    self._waiting = None
                    yield chunk, scored
            return
        with (
            single_threaded_kernels(on_cpu),
            ThreadPoolExecutor(self.workers, thread_name_prefix="gaussnll-worker") as pool,
        ):
            for chunk in chunks:
                self._waiting = chunk
                if len(self._in_flight) == self.workers * QUEUED_PER_WORKER:
                    yield self._next_result()
                self._waiting = None
                self.scorer.prepare(chunk)
                self._in_flight.append((chunk, pool.submit(_recorded, self.scorer, chunk)))
            while self._in_flight:
                yield self._next_result()

    def _next_result(self) -> tuple[Chunk, Scored]:
        chunk, future = self._in_flight[0]
        scored, changes = future.result()
        self._in_flight.popleft()
        changes.apply()
        return chunk, scored


class _GroupSums:
    """Changes to the groups' sums (``sinks.of_groups``), recorded per chunk and applied in chunk
    order by a thread of their own, at most ``QUEUED_PER_WORKER`` chunks behind; when not
    ``grouped``, nothing is recorded. Leaving the block waits for every change (the report
    reads the sums next) and raises an error one of them met."""

    def __init__(self, grouped: bool) -> None:
        self._pool = ThreadPoolExecutor(1, "gaussnll-groups") if grouped else None
        self._pending: deque[Future[None]] = deque()

    def __enter__(self) -> _GroupSums:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is None:
            return
        self._pool.shutdown(wait=True)
        if exc[0] is None:
            while self._pending:
                self._pending.popleft().result()

    def recording(self) -> AbstractContextManager[Ledger | None]:
        return nullcontext() if self._pool is None else recording(of_groups)

    def apply(self, changes: Ledger | None) -> None:
        if self._pool is None or changes is None:
            return
        while len(self._pending) >= QUEUED_PER_WORKER:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(changes.apply))


def _recorded(scorer: Scorer, chunk: Chunk) -> tuple[Scored, Ledger]:
    """Score ``chunk``, recording its changes to the sums instead of making them."""
    with recording() as changes:
        return scorer.add(chunk), changes
