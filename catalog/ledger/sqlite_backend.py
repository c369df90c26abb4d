"""The ledger in one SQLite file: WAL, ``synchronous=FULL``, writers serialised by ``BEGIN IMMEDIATE``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stemcat.catalog import sqlite_conn
from stemcat.catalog.ledger.backend import Connection, marks


class SqliteBackend:
    """``ledger.sqlite`` on this host; several processes share it through SQLite's file locks."""

    dialect = "sqlite"
    # This host's clock in epoch seconds (julianday has millisecond resolution).
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path, *, busy_timeout_s: float = sqlite_conn.DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s

    def __str__(self) -> str:
        return str(self.path)

    def sibling(self, *, busy_timeout_s: float) -> SqliteBackend:
        """Another backend on the same file with another busy timeout."""
        return SqliteBackend(self.path, busy_timeout_s=busy_timeout_s)

    def close(self) -> None:
        """Nothing to release: each connection is closed by its owner."""

    def connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite_conn.connect(self.path, busy_timeout_s=self.busy_timeout_s)
        con.row_factory = sqlite3.Row
        try:
            sqlite_conn.ensure_schema(con)
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def write_transaction(self, con: Connection) -> Iterator[object]:
        # BEGIN IMMEDIATE takes the file's write lock up front: every read inside sees no other writer.
        with sqlite_conn.write_transaction(_sqlite(con)):
            yield con

    @contextmanager
    def savepoint(self, con: Connection) -> Iterator[object]:
        with sqlite_conn.savepoint(_sqlite(con)):
            yield con

    @contextmanager
    def read_snapshot(self) -> Iterator[Connection]:
        with sqlite_conn.read_transaction(self.path, busy_timeout_s=self.busy_timeout_s) as con:
            yield con

    def insert_new(self, con: Connection, table: str, row: Mapping[str, Any], unique: Sequence[str]) -> bool:
        # Under BEGIN IMMEDIATE the caller's own check already excludes a conflict; the clause
        # keeps the contract exact should a caller insert without checking first.
        sql = (
            f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks(len(row))})"
            f" ON CONFLICT ({', '.join(unique)}) DO NOTHING RETURNING 1"
        )
        # Fetch every RETURNING row so the statement is finished before the transaction commits.
        return bool(con.execute(sql, tuple(row.values())).fetchall())

    def is_busy(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.OperationalError) and sqlite_conn.is_busy(error)


def _sqlite(con: Connection) -> sqlite3.Connection:
    if not isinstance(con, sqlite3.Connection):
        raise TypeError(f"the SQLite backend got a {type(con).__name__}, not its own connection")
    return con
