"""Score chunks on several threads, each into its own state, and merge the states at the end.

torch's kernels release the GIL, so scorers on worker threads compute in parallel while the
reader thread decodes the next chunks. Chunk ``k`` always goes to scorer ``k % workers``: every
state sums the same chunks in the same order on every run, so results are reproducible.
Each kernel then runs on one thread: splitting 64k-element kernels across cores costs more in
synchronisation than it gains, and the cores are busy with other chunks instead.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import torch

from gaussnll.core.scorer import Chunk, Scored, Scorer

MAX_AUTO_WORKERS = 4
# Chunks handed to each worker ahead: its next chunk is queued while the last one's result is
# handed over, so the worker never waits for the consumer (one in flight idled it 25%).
QUEUED_PER_WORKER = 2


def auto_workers(device: torch.device, grouped: bool, calibration: bool) -> int:
    """Workers by default, up to ``MAX_AUTO_WORKERS``: with calibration, one per core (the
    computation outweighs the reading: on 2 vCPUs a second worker made 50M rows 10% faster);
    without, one per two cores (the reader is the bottleneck: a second worker gained nothing).
    One on a GPU (its kernels are queued asynchronously already) and when grouping (each
    worker would hold a state per group)."""
    if device.type != "cpu" or grouped:
        return 1
    cores = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKERS, cores if calibration else cores // 2))


class ScorerPool:
    """``workers`` scorers of one options; they share the group index, so their states merge
    group by group."""

    def __init__(self, first: Scorer, workers: int) -> None:
        self.scorers = [first, *(first.sibling() for _ in range(workers - 1))]
        self._in_flight: deque[tuple[Chunk, Future[Scored]]] = deque()
        self._waiting: Chunk | None = None  # read, not yet handed out (its scorer is busy)

    def unfinished(self) -> list[Chunk]:
        """Chunks read whose results were not yielded, in order (after an error: the failing
        chunk first)."""
        waiting = [] if self._waiting is None else [self._waiting]
        return [chunk for chunk, _ in self._in_flight] + waiting

    def scored(self, chunks: Iterator[Chunk]) -> Iterator[tuple[Chunk, Scored]]:
        """Score ``chunks``; yield each with what it contributed, in input order. An error
        from a chunk is raised in that order too."""
        workers = len(self.scorers)
        on_cpu = self.scorers[0].device.type == "cpu"
        with _single_threaded_kernels(on_cpu), ExitStack() as stack:
            # One thread per scorer, so a scorer's chunks run one at a time, in order.
            threads = [
                stack.enter_context(ThreadPoolExecutor(1, f"gaussnll-worker-{k}"))
                for k in range(workers)
            ]
            for index, chunk in enumerate(chunks):
                self._waiting = chunk
                if len(self._in_flight) == workers * QUEUED_PER_WORKER:
                    yield self._next_result()
                self._waiting = None
                worker = index % workers
                future = threads[worker].submit(self.scorers[worker].add, chunk)
                self._in_flight.append((chunk, future))
            while self._in_flight:
                yield self._next_result()

    def merged(self) -> Scorer:
        """The first scorer, with every other worker's sums added (in a fixed order)."""
        first = self.scorers[0]
        for other in self.scorers[1:]:
            first.merge(other)
        return first

    def _next_result(self) -> tuple[Chunk, Scored]:
        chunk, future = self._in_flight[0]
        scored = future.result()
        self._in_flight.popleft()
        return chunk, scored


@contextmanager
def _single_threaded_kernels(applies: bool) -> Iterator[None]:
    """Run torch's CPU kernels on one thread each, if ``applies`` (process-wide; restored
    afterwards)."""
    threads = torch.get_num_threads()
    if applies:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
