"""How many jobs a run has in flight: a rolling window across batches.

A batch is one Prefect task, but not a barrier: every job holds one of the window's slots from
its start to its end, and the next job starts as soon as any job ends, whichever batch it
belongs to (why not a fixed number of batches in flight: docs/design.md). Batches enter one at
a time: the next is let in when every job of the previous one holds a slot, so jobs start in
manifest order and at most one batch waits for room.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class BatchEntry:
    """One batch's way into the window: open until each of its jobs has taken a slot (or it ended)."""

    def __init__(self, jobs: int) -> None:
        self.unstarted = jobs
        self.all_started = asyncio.Event()
        if jobs <= 0:
            self.all_started.set()

    def started_one(self) -> None:
        self.unstarted -= 1
        if self.unstarted <= 0:
            self.all_started.set()

    def close(self) -> None:
        """The batch ended (or failed) before all its jobs started: let the next one in."""
        self.all_started.set()


class JobWindow:
    """At most `size` jobs in flight, across batches that enter one after another."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a job window needs at least one slot")
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self._previous: BatchEntry | None = None
        self.in_flight = 0

    async def enter(self, jobs: int) -> BatchEntry:
        """Wait until the previous batch has started every job, then admit a batch of `jobs`."""
        if self._previous is not None:
            await self._previous.all_started.wait()
        entry = BatchEntry(jobs)
        self._previous = entry
        return entry

    @asynccontextmanager
    async def job(self, entry: BatchEntry) -> AsyncIterator[None]:
        """Hold one slot for the life of one job of `entry`'s batch."""
        async with self._slots:
            entry.started_one()
            self.in_flight += 1
            try:
                yield
            finally:
                self.in_flight -= 1
