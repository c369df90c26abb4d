"""The ledger on a PostgreSQL server, so runs on several hosts share one record of what was paid for.

Transactions. Every write transaction takes one transaction-scoped advisory lock (the
"ledger write lock") right after ``BEGIN``, at READ COMMITTED: the exact counterpart of SQLite's
``BEGIN IMMEDIATE``, which the concern modules were written against ("every read inside a write
transaction sees no other writer"). Why not the two usual alternatives:

- SERIALIZABLE aborts a conflicting transaction at any statement or at COMMIT, and the only
  remedy is to run the whole block again; the concern modules' ``with self._write() as con:``
  blocks cannot be re-run from inside the backend, so every write method would need a retry loop.
- Row locks (``SELECT … FOR UPDATE``) need dialect-specific SQL in every read-then-write and a
  per-method argument that the rows locked cover the predicate read: they do not for, e.g.,
  ``record_stem_download``'s "is every stem downloaded?" count, where two downloads of sibling
  stems would each miss the other and no one would mark the job downloaded.

One lock per ledger serialises its writers across hosts as SQLite does on one host. A write
transaction holds it for a few round trips (milliseconds); the work a run does per job (about
ten writes, at most a few jobs per second per API key) stays far below that ceiling: measured on
loopback with fsync on, 150 claims/s one transaction each and 565/s through the group-commit
writer (each write a savepoint: more round trips than SQLite's 176 and 3,100). The claim's
exactly-once guarantee does not rest on the lock: the intent is inserted with ``INSERT … ON
CONFLICT DO NOTHING RETURNING`` on the unique (audio_id, separation_type, attempt) key and
committed before the paid request is sent. A lock not granted within the busy timeout raises
``LedgerBusyError`` (``is_busy``); ``busy_timeout_s=0`` waits one millisecond (the group-commit
writer retries on its event loop).

Reads outside a write transaction run in autocommit, one statement each, like SQLite's; a
``read_snapshot`` is a REPEATABLE READ READ ONLY transaction on a connection of its own, read
through a server-side cursor.

Connections (the pool, reconnecting after a restart, a connection lost inside a transaction):
see ``postgres_connection``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import NullConnectionPool, PoolTimeout

from stemcat.catalog.errors import LedgerBusyError, LedgerUnavailableError
from stemcat.catalog.ledger.backend import marks
from stemcat.catalog.ledger.postgres_connection import PgRow, PostgresConnection, pg_row_factory, to_pyformat
from stemcat.catalog.ledger.urls import is_postgres_url, masked_url
from stemcat.catalog.migrations import postgres_schema_version, upgrade_postgres
from stemcat.catalog.schema import SCHEMA_VERSION

__all__ = ["DEFAULT_BUSY_TIMEOUT_S", "PgRow", "PostgresBackend", "PostgresConnection", "to_pyformat"]

DEFAULT_BUSY_TIMEOUT_S = 60.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
# Write transactions run their statements back to back (milliseconds between them).
IDLE_IN_WRITE_TRANSACTION_S = 30.0

# The ledger write lock: pg_advisory_xact_lock(int4, int4), per database. The first key is
# 'stmc' in ASCII, so it does not collide with another application's single-key locks by accident.
_LOCK_KEYS = (0x73746D63, 1)


class PostgresBackend:
    """A ledger in a PostgreSQL database named by a ``postgresql://`` URL (libpq's URL syntax)."""

    dialect = "postgres"
    # The database's clock, in epoch seconds: judging a lease by it keeps hosts' clock skew out.
    now_sql = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        max_connections: int = 4,
    ) -> None:
        if not is_postgres_url(url):
            raise ValueError(f"not a PostgreSQL URL (postgresql://user@host:port/database): {masked_url(str(url))}")
        self.url = url
        self.busy_timeout_s = busy_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self._pool: NullConnectionPool[Any] | None = None
        self._pool_lock = threading.Lock()
        lock_ms = max(1, int(busy_timeout_s * 1000))
        # One round trip. synchronous_commit is forced on: a claim must be on disk when COMMIT
        # returns, whatever the server's default (off could lose a committed intent in a crash).
        # A client that vanishes mid-transaction (a host cut off the network) would hold the one
        # write lock until the server noticed the dead socket, stopping every host's writers: the
        # server ends a transaction left idle for IDLE_IN_WRITE_TRANSACTION_S instead.
        self._begin_write = (
            "BEGIN ISOLATION LEVEL READ COMMITTED;"
            " SET LOCAL synchronous_commit = on;"
            f" SET LOCAL idle_in_transaction_session_timeout = '{int(IDLE_IN_WRITE_TRANSACTION_S * 1000)}ms';"
            f" SET LOCAL lock_timeout = '{lock_ms}ms';"
            f" SELECT pg_advisory_xact_lock({_LOCK_KEYS[0]}, {_LOCK_KEYS[1]})"
        )

    def __str__(self) -> str:
        return masked_url(self.url)

    def __repr__(self) -> str:
        return f"PostgresBackend({masked_url(self.url)!r})"

    def sibling(self, *, busy_timeout_s: float) -> PostgresBackend:
        """Another backend on the same database (its own pool) with another busy timeout."""
        return PostgresBackend(self.url, busy_timeout_s=busy_timeout_s, connect_timeout_s=self.connect_timeout_s,
                               max_connections=self.max_connections)

    # Pool.

    def checkout(self) -> psycopg.Connection[Any]:
        try:
            return self._get_pool().getconn(timeout=self.connect_timeout_s)
        except PoolTimeout as error:
            raise LedgerUnavailableError(
                str(self), f"no connection within {self.connect_timeout_s:g} s: is the server running?"
            ) from error
        except psycopg.OperationalError as error:
            # libpq's message names host and port only; str(self) masks the password.
            raise LedgerUnavailableError(str(self), str(error).strip().splitlines()[0]) from error

    def give_back(self, raw: psycopg.Connection[Any]) -> None:
        pool = self._pool
        if pool is None or pool.closed:
            raw.close()
            return
        pool.putconn(raw)  # closed there (a null pool keeps none idle)

    def close(self) -> None:
        """Close the pool and every connection in it."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _get_pool(self) -> NullConnectionPool[Any]:
        with self._pool_lock:
            if self._pool is None:
                pool: NullConnectionPool[Any] = NullConnectionPool(
                    self.url,
                    max_size=self.max_connections,
                    kwargs={
                        "autocommit": True,
                        "row_factory": pg_row_factory,
                        "connect_timeout": max(1, int(self.connect_timeout_s)),
                        "application_name": "stemcat-ledger",
                        # Notice a server (or a network path) gone silent within about a minute.
                        "keepalives": 1,
                        "keepalives_idle": 30,
                        "keepalives_interval": 10,
                        "keepalives_count": 3,
                    },
                    timeout=self.connect_timeout_s,
                    num_workers=1,
                    name="stemcat-ledger",
                    open=False,
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    # The Backend protocol.

    def connect(self) -> PostgresConnection:
        con = PostgresConnection(self)
        try:
            if postgres_schema_version(con) != SCHEMA_VERSION:
                with self.write_transaction(con):
                    upgrade_postgres(con, now=time.time)
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def write_transaction(self, con: Any) -> Iterator[object]:
        pg = _postgres(con)
        try:
            pg.begin(self._begin_write)
        except pg_errors.LockNotAvailable as error:
            pg.rollback()
            raise LedgerBusyError(
                f"the ledger at {self} is locked by another writer (waited {self.busy_timeout_s:g} s)"
            ) from error
        except BaseException:
            pg.rollback()
            raise
        try:
            yield pg
        except BaseException:
            pg.rollback()
            raise
        pg.commit()

    @contextmanager
    def savepoint(self, con: Any) -> Iterator[object]:
        pg = _postgres(con)
        pg.execute("SAVEPOINT ledger_write")
        try:
            yield pg
        except BaseException:
            if pg._raw is not None and not pg._raw.broken:
                pg.execute("ROLLBACK TO SAVEPOINT ledger_write")
                pg.execute("RELEASE SAVEPOINT ledger_write")
            raise
        pg.execute("RELEASE SAVEPOINT ledger_write")

    @contextmanager
    def read_snapshot(self) -> Iterator[PostgresConnection]:
        raw = self.checkout()
        con = PostgresConnection(self, raw)
        try:
            con.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # The snapshot is taken at the first query: take it now, so every table comes from one instant.
            con.execute("SELECT 1").fetchone()
            yield con
        finally:
            try:
                con.rollback()
            finally:
                self.give_back(raw)

    def insert_new(self, con: Any, table: str, row: Mapping[str, Any], unique: Sequence[str]) -> bool:
        sql = (
            f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks(len(row))})"
            f" ON CONFLICT ({', '.join(unique)}) DO NOTHING RETURNING 1"
        )
        return bool(_postgres(con).execute(sql, tuple(row.values())).fetchall())

    def is_busy(self, error: BaseException) -> bool:
        return isinstance(
            error, LedgerBusyError | pg_errors.LockNotAvailable | pg_errors.SerializationFailure | pg_errors.DeadlockDetected
        )


def _postgres(con: Any) -> PostgresConnection:
    if not isinstance(con, PostgresConnection):
        raise TypeError(f"the PostgreSQL backend got a {type(con).__name__}, not its own connection")
    return con
