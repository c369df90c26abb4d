"""The seam between the ledger's concerns and the database that holds it.

The concern modules (runs, tracks, claims, job state, stems, callbacks, spend) only ever see a
``Connection`` and a ``Backend``; everything that differs between SQLite and another database
lives behind these two protocols:

- opening the connection and creating or upgrading the schema (``Backend.connect``);
- how a write transaction begins and what it locks (``write_transaction``, ``savepoint``);
- a consistent read-only snapshot on a connection of its own (``read_snapshot``);
- inserting a row only when its unique key is free (``insert_new``), which is how a claim is
  made exactly once;
- recognising "the database is busy, try again" (``is_busy``).

The SQL the concern modules hand to ``Connection.execute`` is written once, in the subset that
SQLite and PostgreSQL share, with ``?`` placeholders: a driver with another parameter style
rewrites them in its ``Connection``. Table and column names in that SQL come from
``catalog.schema`` only; values are always bound. Booleans are bound as 0/1 and timestamps as
epoch seconds, as the schema's column kinds declare them.

Each backend names its SQL ``dialect`` ("sqlite" or "postgres"): ``catalog.schema`` derives the
DDL (``sqlite_ddl``, ``postgres_ddl``) and the snapshot's export query (``Table.export_select``)
for it from the one declaration, and ``catalog.migrations`` upgrades either. ``now_sql`` is an
SQL expression for the database's clock in epoch seconds (run leases are judged by it, so
several hosts agree on one clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol


class Row(Protocol):
    """A result row, addressable by column name and by position."""

    def keys(self) -> list[str]: ...

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class Cursor(Protocol):
    """The result of one statement."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ..., /) -> list[Any]: ...

    def close(self) -> None: ...


class Connection(Protocol):
    """One connection; ``execute`` takes SQL with ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """Where a ledger lives, and the transaction rules the concern modules rely on.

    A write transaction must make a read followed by a write inside it behave as if no other
    writer ran in between (the job life cycle reads a status and then changes it): SQLite gets
    that from ``BEGIN IMMEDIATE``; PostgreSQL from one advisory lock taken by every write
    transaction (``postgres_backend`` says why not SERIALIZABLE or row locks).
    """

    dialect: str
    now_sql: str
    busy_timeout_s: float

    def __str__(self) -> str:
        """Where the ledger lives, for messages (a file path or a URL; never a password)."""
        ...

    def sibling(self, *, busy_timeout_s: float) -> Backend:
        """Another backend on the same database, with another busy timeout."""
        ...

    def close(self) -> None:
        """Release what the backend holds beyond its connections (a pool); called when the ledger closes."""
        ...

    def connect(self) -> Connection:
        """Open the ledger (schema created or upgraded), rows addressable by name and position."""
        ...

    def write_transaction(self, con: Connection) -> AbstractContextManager[object]:
        """One transaction, committed when the block ends and rolled back if it raises."""
        ...

    def savepoint(self, con: Connection) -> AbstractContextManager[object]:
        """One write inside a surrounding transaction: if it raises, only its own changes are undone."""
        ...

    def read_snapshot(self) -> AbstractContextManager[Connection]:
        """A read-only connection of its own holding one consistent snapshot; writers go on."""
        ...

    def insert_new(self, con: Connection, table: str, row: Mapping[str, Any], unique: Sequence[str]) -> bool:
        """Insert ``row`` unless a row with the same ``unique`` columns exists; True when inserted."""
        ...

    def is_busy(self, error: BaseException) -> bool:
        """Whether ``error`` means another connection held the lock too long (worth retrying)."""
        ...


def marks(count: int) -> str:
    """``count`` comma-separated placeholders."""
    return ", ".join("?" for _ in range(count))
