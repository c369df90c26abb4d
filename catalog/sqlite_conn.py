"""Opening the ledger's SQLite file with the durability settings the ledger relies on."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stemcat.catalog.errors import CatalogError
from stemcat.catalog.jsoncols import mask_urls_in_json_text
from stemcat.catalog.migrations import add_missing_columns, widen_check_constraints
from stemcat.catalog.schema import MASK_URLS_SQL_FUNCTION, SCHEMA_VERSION, sqlite_ddl

DEFAULT_BUSY_TIMEOUT_S = 60.0


def connect(path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open the ledger in WAL mode with ``synchronous=FULL`` so every COMMIT is on disk when it returns."""
    con = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    try:
        # PRAGMA arguments cannot be bound; the value is an int we computed.
        con.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        _enable_wal(con, path, busy_timeout_s)
        con.execute("PRAGMA synchronous = FULL")
        con.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        con.close()
        raise
    return con


def _enable_wal(con: sqlite3.Connection, path: Path, timeout_s: float) -> None:
    """Switch to WAL, retrying: on a brand-new file the switch fails fast, without the busy handler,
    while another process is creating the same file."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            mode = str(con.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            mode = "locked"
        if mode == "wal":
            return
        if time.monotonic() >= deadline:
            raise CatalogError(f"could not switch {path} to WAL mode within {timeout_s:.0f} s (got {mode!r})")
        time.sleep(random.uniform(0.005, 0.05))


def ensure_schema(con: sqlite3.Connection) -> None:
    """Create the tables once, add columns an older ledger lacks; refuse a ledger written by a newer stemcat."""
    # Opening an up-to-date ledger takes no write lock, so it never waits behind a running writer.
    if con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    with write_transaction(con):
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"ledger schema version {version} is newer than this stemcat ({SCHEMA_VERSION}); upgrade stemcat"
            )
        # Columns first: a new index may name a new column.
        add_missing_columns(con)
        widen_check_constraints(con)
        for statement in sqlite_ddl():
            con.execute(statement)
        if version < SCHEMA_VERSION:
            con.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")


@contextmanager
def write_transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One short ``BEGIN IMMEDIATE`` transaction: takes the write lock up front, so no upgrade deadlock."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    try:
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


@contextmanager
def savepoint(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write inside a surrounding transaction: if it raises, only its own changes are undone."""
    con.execute("SAVEPOINT ledger_write")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK TO ledger_write")
        con.execute("RELEASE ledger_write")
        raise
    con.execute("RELEASE ledger_write")


def is_busy(error: sqlite3.OperationalError) -> bool:
    """SQLite's "another connection holds the lock" (the busy timeout ran out)."""
    text = str(error).lower()
    return "locked" in text or "busy" in text


@contextmanager
def read_transaction(path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Iterator[sqlite3.Connection]:
    """A separate query-only connection holding one consistent read snapshot (WAL: writers go on)."""
    con = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    try:
        con.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        con.execute("PRAGMA query_only = ON")
        con.create_function(MASK_URLS_SQL_FUNCTION, 1, mask_urls_in_json_text, deterministic=True)
        con.execute("BEGIN")
        # The snapshot starts at the first read; take it now so every table comes from one instant.
        con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        yield con
    finally:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.close()
