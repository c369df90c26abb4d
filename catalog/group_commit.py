"""Ledger writes from coroutines, many per transaction (group commit), on the event loop.

The writes that coroutines ask for during one turn of the event loop run back to back in one
transaction on the loop's own thread (each in a savepoint, so one failing write undoes only
itself), and every caller resumes only after the shared COMMIT returned: a write is durable
when ``await write(...)`` returns, at one fsync per batch. ``BEGIN`` never blocks the loop:
the connection's busy timeout is zero and a busy database is retried with ``asyncio.sleep``
until the ledger's usual timeout. (Why not one transaction per write in a thread: docs/design.md.)
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from stemcat.catalog import sqlite_conn
from stemcat.catalog.ledger import Ledger

P = ParamSpec("P")
T = TypeVar("T")

MAX_WRITES_PER_COMMIT = 256
BUSY_RETRY_FIRST_S = 0.001
BUSY_RETRY_MAX_S = 0.05

_Op = tuple[Callable[[], Any], "asyncio.Future[Any]"]


class LedgerWriter:
    """Queue ledger method calls from coroutines; run them in shared transactions on the loop.

    Reads go through `read` (same connection, never inside an open batch: a batch runs
    without yielding to the loop between BEGIN and COMMIT).
    """

    def __init__(self, ledger: Ledger, *, busy_timeout_s: float = sqlite_conn.DEFAULT_BUSY_TIMEOUT_S,
                 max_writes: int = MAX_WRITES_PER_COMMIT) -> None:
        self.ledger = ledger
        self._busy_timeout_s = busy_timeout_s
        self._max_writes = max_writes
        self._pending: deque[_Op] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self.commits = 0
        self.writes = 0

    @classmethod
    def open(cls, path: Path) -> LedgerWriter:
        """A writer on its own connection to the ledger at `path` (busy timeout zero, retried here)."""
        return cls(Ledger(path, busy_timeout_s=0.0))

    def close(self) -> None:
        self.ledger.close()

    async def write(self, method: Callable[Concatenate[Ledger, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``method(ledger, *args, **kwargs)`` in the next group commit; returns once it is on disk."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((functools.partial(method, self.ledger, *args, **kwargs), future))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain(), name="ledger-group-commit")
        return await future

    async def read(self, method: Callable[Concatenate[Ledger, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a read-only ledger method now, on the loop (sub-millisecond), retrying a busy database."""
        call = functools.partial(method, self.ledger, *args, **kwargs)
        return await self._retry_busy(call)

    async def drain(self) -> None:
        """Wait until every write queued so far is committed (or failed)."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        while self._pending:
            # Let every coroutine that is ready in this turn of the loop queue its write first.
            await asyncio.sleep(0)
            batch = [self._pending.popleft() for _ in range(min(len(self._pending), self._max_writes))]
            live = [(call, future) for call, future in batch if not future.cancelled()]
            if not live:
                continue
            try:
                outcomes = await self._retry_busy(functools.partial(self._commit, live))
            except Exception as error:  # the batch was rolled back: every write in it failed
                for _call, future in live:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_call, future), (ok, value) in zip(live, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _commit(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with self.ledger.batch():
            for call, _future in batch:
                try:
                    outcomes.append((True, call()))
                except Exception as error:  # this write's savepoint was rolled back; the rest commit
                    outcomes.append((False, error))
        self.commits += 1
        self.writes += len(batch)
        return outcomes

    async def _retry_busy(self, call: Callable[[], T]) -> T:
        deadline = time.monotonic() + self._busy_timeout_s
        delay = BUSY_RETRY_FIRST_S
        while True:
            try:
                return call()
            except Exception as error:
                if not self.ledger.backend.is_busy(error) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, BUSY_RETRY_MAX_S)
