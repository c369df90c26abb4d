"""A key's rate budget in PostgreSQL: shared by every process on every machine that reaches it.

Two tables, created on first use (next to the ledger's when the URL is the ledger's):

- ``rate_budgets``: one row per budget (`rules.budget_id`), holding the adaptive state every
  user of the key shares: rate factor, last decrease, not-before (a 455 or a Retry-After),
  throttle and pause counts.
- ``rate_admissions``: the budget's admission log, one row per recent or reserved admission
  (``ticket`` from an identity column, so a revoked ticket is never handed out again; ``at`` in
  epoch seconds). Rows no rule can read any more are pruned by every reservation.

Every step that changes a budget is one transaction at READ COMMITTED that first locks the
budget's row (``SELECT … FOR UPDATE``): admissions of one budget are decided one at a time, and
other budgets (other keys) never wait on it. A row lock rather than ``pg_advisory_xact_lock``:
the lock is the very row whose state the step reads and writes, named by the budget id itself
(no hashing of ids into a shared 64-bit key space, which the ledger's write lock also uses), and
it shows up in ``pg_locks`` as what it is. After the lock is granted the step reads the
database's clock (``clock_timestamp()``, not ``now()``, which is when the transaction began,
possibly long before the lock was granted), and every statement after the lock sees everything
committed by the previous holder (READ COMMITTED takes a snapshot per statement). So the rules
of `stemcat.client.ratelimit.rules` run on one clock and one log for every machine, and no
window of the log ever holds more than the limit. Clients need not agree on the time: a
reservation answers with waits relative to the database's clock, read under the lock.

Throttles (405/430) and pauses (455) go through the same row: the new state is saved and every
slot of the budget still in the future is deleted (revoked); other users learn it when they
claim, and their next reservation plans under the new state.

The store keeps one connection (autocommit, explicit transactions) on the event loop of the
limiter that uses it. A connection that broke is replaced, and the step is tried once more
when the broken one had served earlier steps (the server restarted in between); a step whose
outcome is unknown then runs twice, which only errs on the slow side. ``lock_timeout`` bounds
the wait for a budget's row, and ``idle_in_transaction_session_timeout`` frees a row held by a
process that froze inside a transaction. Failures raise `RateStoreUnavailable` (nothing was sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from stemcat.client.errors import RateStoreUnavailable
from stemcat.client.ratelimit.rules import (
    PacingParams,
    PacingState,
    Reservation,
    Slot,
    after_pause,
    after_successes,
    after_throttle,
    arrival_bounds,
    clock_went_back,
    plan_stamped_slots,
    spacing,
)

try:
    import psycopg
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "a postgresql:// rate store needs psycopg: pip install 'stemcat[postgres]'"
    ) from error

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]

DEFAULT_LOCK_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
IDLE_IN_TRANSACTION_TIMEOUT_S = 60.0
# Held only while the tables are created, so that two processes starting at once do not race
# on CREATE TABLE (PostgreSQL's IF NOT EXISTS is not safe against a concurrent create).
# The first key is 'stmc' in ASCII, like the ledger's; the second names this use.
_SCHEMA_LOCK_KEYS = (0x73746D63, 2)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rate_budgets ("
    " budget text PRIMARY KEY,"
    " factor double precision NOT NULL DEFAULT 1.0,"
    " last_decrease double precision,"
    " not_before double precision,"
    " throttles bigint NOT NULL DEFAULT 0,"
    " pauses bigint NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS rate_admissions ("
    " ticket bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " budget text NOT NULL REFERENCES rate_budgets (budget) ON DELETE CASCADE,"
    " at double precision NOT NULL)",
    "CREATE INDEX IF NOT EXISTS rate_admissions_budget_at ON rate_admissions (budget, at)",
    "COMMENT ON COLUMN rate_admissions.at IS "
    "'when the admission counts, epoch seconds on this database''s clock (stemcat rate store)'",
)
_NOW = "extract(epoch FROM clock_timestamp())::float8"
_LOCK_BUDGET = (
    "SELECT factor, last_decrease, not_before, throttles, pauses FROM rate_budgets WHERE budget = %s FOR UPDATE"
)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _state(row: Sequence[Any]) -> PacingState:
    factor, last_decrease, not_before, throttles, pauses = row
    return PacingState(
        factor=factor,
        last_decrease=-math.inf if last_decrease is None else last_decrease,
        not_before=-math.inf if not_before is None else not_before,
        throttles=throttles,
        pauses=pauses,
    )


def _masked(url: str) -> str:
    """The URL with any password (in the user part or the query) shown as ``***``, for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{netloc.rsplit('@', 1)[1]}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


Step = Callable[[Conn, PacingState, float], Awaitable[T]]


class PostgresAdmissionStore:
    """`AdmissionStore` on a PostgreSQL database at `url`, for the budget named `budget`."""

    def __init__(
        self,
        url: str,
        budget: str,
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.budget = budget
        self._lock_timeout_s = lock_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._conn: Conn | None = None
        self._serving: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"PostgresAdmissionStore({_masked(self.url)!r}, budget={self.budget[:8]}…)"

    # --- AdmissionStore -----------------------------------------------------------------------

    async def reserve(self, params: PacingParams, count: int, *, first_margin_s: float = 0.0) -> Reservation:
        async def step(conn: Conn, state: PacingState, now: float) -> Reservation:
            rows = await (await conn.execute(
                "SELECT at FROM rate_admissions WHERE budget = %s ORDER BY at DESC LIMIT %s",
                (self.budget, params.limit),
            )).fetchall()
            history = [at for (at,) in reversed(rows)]
            if clock_went_back(history[-1] if history else None, now):
                await conn.execute("DELETE FROM rate_admissions WHERE budget = %s", (self.budget,))
                history = []
            planned = plan_stamped_slots(history, state, now, params, count, first_margin_s=first_margin_s)
            tickets: list[int] = []
            if planned:
                inserted = await (await conn.execute(
                    "INSERT INTO rate_admissions (budget, at) "
                    "SELECT %s, stamp FROM unnest(%s::float8[]) WITH ORDINALITY AS p(stamp, n) ORDER BY n "
                    "RETURNING ticket",
                    (self.budget, [stamp for _due, stamp in planned]),
                )).fetchall()
                # Identity values are drawn in insertion order: ascending tickets follow the plan.
                tickets = sorted(ticket for (ticket,) in inserted)
            await self._prune(conn, now, params, state)
            slots = tuple(Slot(ticket, max(0.0, due - now)) for ticket, (due, _stamp) in zip(tickets, planned,
                                                                                              strict=True))
            return Reservation(slots, state.factor)

        return await self._locked(step)

    async def claim(self, tickets: Sequence[int]) -> set[int]:
        if not tickets:
            return set()

        async def read(conn: Conn) -> set[int]:
            rows = await (await conn.execute(
                "SELECT ticket FROM rate_admissions WHERE budget = %s AND ticket = ANY(%s)",
                (self.budget, list(tickets)),
            )).fetchall()
            return {ticket for (ticket,) in rows}

        return await self._run(read)

    async def release(self, tickets: Sequence[int]) -> None:
        if not tickets:
            return

        async def step(conn: Conn, _state: PacingState, now: float) -> None:
            # Only slots not due yet: a due one may already have been used.
            await conn.execute(
                "DELETE FROM rate_admissions WHERE budget = %s AND ticket = ANY(%s) AND at > %s",
                (self.budget, list(tickets), now),
            )

        await self._locked(step)

    async def throttle(self, params: PacingParams, retry_after: float | None) -> PacingState:
        return await self._change(lambda state, now: after_throttle(state, now, retry_after, params), revoke=True)

    async def pause(self, seconds: float) -> PacingState:
        return await self._change(lambda state, now: after_pause(state, now, seconds), revoke=True)

    async def recover(self, params: PacingParams, successes: int) -> PacingState:
        return await self._change(lambda state, _now: after_successes(state, successes, params), revoke=False)

    async def arrived_late(self, tickets: Sequence[int], ages_s: Sequence[float] | None = None) -> None:
        if not tickets:
            return
        if ages_s is not None and len(ages_s) != len(tickets):
            raise ValueError("one age per ticket")

        async def step(conn: Conn, _state: PacingState, now: float) -> None:
            bounds = arrival_bounds(tickets, now, ages_s)
            await conn.execute(
                "UPDATE rate_admissions AS a SET at = greatest(a.at, b.at) "
                "FROM unnest(%s::bigint[], %s::float8[]) AS b(ticket, at) "
                "WHERE a.budget = %s AND a.ticket = b.ticket",
                (list(bounds), list(bounds.values()), self.budget),
            )

        await self._locked(step)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def state(self) -> PacingState:
        """The budget's shared adaptive state (for tests and reports)."""

        async def step(_conn: Conn, state: PacingState, _now: float) -> PacingState:
            return state

        return await self._locked(step)

    # --- transactions ---------------------------------------------------------------------------

    async def _change(self, change: Callable[[PacingState, float], PacingState], *, revoke: bool) -> PacingState:
        async def step(conn: Conn, state: PacingState, now: float) -> PacingState:
            new = change(state, now)
            await conn.execute(
                "UPDATE rate_budgets SET factor = %s, last_decrease = %s, not_before = %s, throttles = %s, "
                "pauses = %s WHERE budget = %s",
                (new.factor, _finite_or_none(new.last_decrease), _finite_or_none(new.not_before),
                 new.throttles, new.pauses, self.budget),
            )
            if revoke:
                # Only slots still in the future: one due now may already be on the wire.
                await conn.execute("DELETE FROM rate_admissions WHERE budget = %s AND at > %s", (self.budget, now))
            return new

        return await self._locked(step)

    async def _prune(self, conn: Conn, now: float, params: PacingParams, state: PacingState) -> None:
        # Keep the newest `limit` entries and anything recent enough to matter; see AdmissionBook._prune.
        horizon = now - params.guarded_window - spacing(params, state)
        await conn.execute(
            "DELETE FROM rate_admissions WHERE budget = %s AND at < %s AND at < "
            "(SELECT at FROM rate_admissions WHERE budget = %s ORDER BY at DESC LIMIT 1 OFFSET %s)",
            (self.budget, horizon, self.budget, params.limit - 1),
        )

    async def _locked(self, step: Step[T]) -> T:
        """Run `step` in one transaction holding the budget's row, on the database's clock."""

        async def transaction(conn: Conn) -> T:
            async with conn.transaction():
                row = await (await conn.execute(_LOCK_BUDGET, (self.budget,))).fetchone()
                if row is None:  # a budget row deleted by hand: make it again
                    await conn.execute("INSERT INTO rate_budgets (budget) VALUES (%s) ON CONFLICT DO NOTHING",
                                       (self.budget,))
                    row = await (await conn.execute(_LOCK_BUDGET, (self.budget,))).fetchone()
                # The clock is read once the lock is held (now() would be the transaction's start).
                clock = await (await conn.execute(f"SELECT {_NOW}")).fetchone()
                if row is None or clock is None:
                    raise RateStoreUnavailable(f"rate store {_masked(self.url)}: budget row missing")
                return await step(conn, _state(row), float(clock[0]))

        return await self._run(transaction)

    async def _run(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        if self._serving is None:
            self._serving = asyncio.Lock()
        async with self._serving:
            for attempt in range(2):
                fresh = self._conn is None
                try:
                    conn = await self._connection()
                    return await work(conn)
                except psycopg.Error as error:
                    broken = self._conn is None or self._conn.broken or self._conn.closed
                    if broken:
                        await self.aclose()
                        if not fresh and attempt == 0:
                            continue  # a connection that served before: the server may have restarted
                    raise RateStoreUnavailable(
                        f"rate store {_masked(self.url)} failed: {type(error).__name__}: {error}"
                    ) from None
                except BaseException:
                    # Anything else, a cancellation mid-transaction above all, leaves the
                    # connection's state unknown: closing it rolls back on the server and frees the row.
                    await self.aclose()
                    raise
            raise AssertionError("unreachable")

    async def _connection(self) -> Conn:
        if self._conn is None:
            self._conn = await self._connect()
        return self._conn

    async def _connect(self) -> Conn:
        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=max(1, round(self._connect_timeout_s)),
            application_name="stemcat-rate-store",
        )
        try:
            # Whatever the database's default: every statement after the row lock must see what the
            # previous holder committed (REPEATABLE READ would keep the snapshot from before the wait).
            await conn.set_isolation_level(psycopg.IsolationLevel.READ_COMMITTED)
            await conn.execute(
                "SELECT set_config('lock_timeout', %s, false), "
                "set_config('idle_in_transaction_session_timeout', %s, false)",
                (f"{round(self._lock_timeout_s * 1000)}ms", f"{round(IDLE_IN_TRANSACTION_TIMEOUT_S * 1000)}ms"),
            )
            found = await (await conn.execute("SELECT to_regclass('rate_admissions_budget_at')")).fetchone()
            async with conn.transaction():
                if found is None or found[0] is None:
                    await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _SCHEMA_LOCK_KEYS)
                    for statement in _SCHEMA:
                        await conn.execute(statement)
                await conn.execute("INSERT INTO rate_budgets (budget) VALUES (%s) ON CONFLICT DO NOTHING",
                                   (self.budget,))
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        return conn
