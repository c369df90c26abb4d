"""A key's rate budget in a SQLite file: shared by every process on this host.

The file holds the admission log (recent and reserved admissions, wall-clock epoch seconds)
and the adaptive state in one row. Every step is one `BEGIN IMMEDIATE` transaction, so
processes take turns and each decision sees every earlier one: the rules of
`stemcat.client.ratelimit.rules` hold across processes exactly as inside one. WAL with
`synchronous=NORMAL`: a killed process loses nothing it committed, and a commit costs no fsync.
Tickets come from AUTOINCREMENT, so a revoked ticket is never handed out again.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from stemcat.client.ratelimit.base import Clock
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

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS admissions (ticket INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_admissions_at ON admissions (at)",
    "CREATE TABLE IF NOT EXISTS pacing_state (id INTEGER PRIMARY KEY CHECK (id = 1), factor REAL NOT NULL, "
    "last_decrease REAL, not_before REAL, throttles INTEGER NOT NULL, pauses INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO pacing_state VALUES (1, 1.0, NULL, NULL, 0, 0)",
)
_OPEN_ATTEMPTS = 50


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class SqliteAdmissionStore:
    """`AdmissionStore` on a SQLite file; blocking work runs on one private thread."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0, clock: Clock = time.time) -> None:
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stemcat-rate-store")
        self._conn: sqlite3.Connection | None = None

    # --- AdmissionStore -----------------------------------------------------------------------

    async def reserve(self, params: PacingParams, count: int, *, first_margin_s: float = 0.0) -> Reservation:
        return await self._run(self._reserve, params, count, first_margin_s)

    async def claim(self, tickets: Sequence[int]) -> set[int]:
        return await self._run(self._claim, list(tickets))

    async def release(self, tickets: Sequence[int]) -> None:
        await self._run(self._release, list(tickets))

    async def throttle(self, params: PacingParams, retry_after: float | None) -> PacingState:
        return await self._run(self._update, lambda state, now: after_throttle(state, now, retry_after, params), True)

    async def pause(self, seconds: float) -> PacingState:
        return await self._run(self._update, lambda state, now: after_pause(state, now, seconds), True)

    async def recover(self, params: PacingParams, successes: int) -> PacingState:
        return await self._run(self._update, lambda state, _now: after_successes(state, successes, params), False)

    async def arrived_late(self, tickets: Sequence[int], ages_s: Sequence[float] | None = None) -> None:
        await self._run(self._arrived_late, list(tickets), None if ages_s is None else list(ages_s))

    async def aclose(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=False)

    def state(self) -> PacingState:
        """The shared adaptive state (blocking; for tests and reports)."""
        return self._transaction(lambda conn, _now: self._load_state(conn))

    # --- the transactions (on the store's thread) -----------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        # Two processes opening a brand-new file may race on the WAL switch: retry briefly.
        attempt = 0
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("COMMIT")
                return conn
            except sqlite3.OperationalError:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                attempt += 1
                if attempt >= _OPEN_ATTEMPTS:
                    conn.close()
                    raise
                time.sleep(0.02)

    def _transaction(self, body: Callable[[sqlite3.Connection, float], T]) -> T:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn, self._clock())  # the clock is read once the lock is held
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    @staticmethod
    def _load_state(conn: sqlite3.Connection) -> PacingState:
        factor, last_decrease, not_before, throttles, pauses = conn.execute(
            "SELECT factor, last_decrease, not_before, throttles, pauses FROM pacing_state WHERE id = 1"
        ).fetchone()
        return PacingState(
            factor=factor,
            last_decrease=-math.inf if last_decrease is None else last_decrease,
            not_before=-math.inf if not_before is None else not_before,
            throttles=throttles,
            pauses=pauses,
        )

    @staticmethod
    def _save_state(conn: sqlite3.Connection, state: PacingState) -> None:
        conn.execute(
            "UPDATE pacing_state SET factor = ?, last_decrease = ?, not_before = ?, throttles = ?, pauses = ? "
            "WHERE id = 1",
            (state.factor, _finite_or_none(state.last_decrease), _finite_or_none(state.not_before),
             state.throttles, state.pauses),
        )

    def _reserve(self, params: PacingParams, count: int, first_margin_s: float) -> Reservation:
        def body(conn: sqlite3.Connection, now: float) -> Reservation:
            state = self._load_state(conn)
            (newest,) = conn.execute("SELECT max(at) FROM admissions").fetchone()
            if clock_went_back(newest, now):
                conn.execute("DELETE FROM admissions")
            rows = conn.execute("SELECT at FROM admissions ORDER BY at DESC LIMIT ?", (params.limit,)).fetchall()
            history = [at for (at,) in reversed(rows)]
            slots = []
            planned = plan_stamped_slots(history, state, now, params, count, first_margin_s=first_margin_s)
            for due, stamp in planned:
                cursor = conn.execute("INSERT INTO admissions (at) VALUES (?)", (stamp,))
                slots.append(Slot(int(cursor.lastrowid or 0), max(0.0, due - now)))
            self._prune(conn, now, params, state)
            return Reservation(tuple(slots), state.factor)

        return self._transaction(body)

    @staticmethod
    def _prune(conn: sqlite3.Connection, now: float, params: PacingParams, state: PacingState) -> None:
        # Keep the newest `limit` entries and anything recent enough to matter; see AdmissionBook._prune.
        horizon = now - params.guarded_window - spacing(params, state)
        conn.execute(
            "DELETE FROM admissions WHERE at < ? AND at < "
            "(SELECT at FROM admissions ORDER BY at DESC LIMIT 1 OFFSET ?)",
            (horizon, params.limit - 1),
        )

    def _claim(self, tickets: list[int]) -> set[int]:
        def body(conn: sqlite3.Connection, _now: float) -> set[int]:
            marks = ",".join("?" * len(tickets))
            rows = conn.execute(f"SELECT ticket FROM admissions WHERE ticket IN ({marks})", tickets).fetchall()
            return {ticket for (ticket,) in rows}

        return self._transaction(body) if tickets else set()

    def _release(self, tickets: list[int]) -> None:
        def body(conn: sqlite3.Connection, now: float) -> None:
            marks = ",".join("?" * len(tickets))
            conn.execute(f"DELETE FROM admissions WHERE at > ? AND ticket IN ({marks})", [now, *tickets])

        if tickets:
            self._transaction(body)

    def _arrived_late(self, tickets: list[int], ages_s: list[float] | None) -> None:
        def body(conn: sqlite3.Connection, now: float) -> None:
            bounds = arrival_bounds(tickets, now, ages_s)
            conn.executemany("UPDATE admissions SET at = max(at, ?) WHERE ticket = ?",
                             [(at, ticket) for ticket, at in bounds.items()])

        if tickets:
            self._transaction(body)

    def _update(self, change: Callable[[PacingState, float], PacingState], revoke: bool) -> PacingState:
        def body(conn: sqlite3.Connection, now: float) -> PacingState:
            state = change(self._load_state(conn), now)
            self._save_state(conn, state)
            if revoke:
                # Only slots still in the future: one due now may already be on the wire.
                conn.execute("DELETE FROM admissions WHERE at > ?", (now,))
            return state

        return self._transaction(body)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
