"""One ledger connection to PostgreSQL behind the seam's ``Connection`` protocol, and its rows.

Connections. A ``psycopg_pool.NullConnectionPool`` caps them (``max_connections``) and makes each
one in the calling thread: the ledger holds its connection for as long as it is open (and a
snapshot holds its own for one export), so idle connections kept warm would buy nothing, while a
``ConnectionPool`` refills itself in a background worker that backs off (1 s, 2 s, 4 s, …) after
failed attempts, and so kept failing for seconds after the server was back. Here a refused
connection fails at once and the first statement after a restart reconnects. A lost connection
raises ``LedgerUnavailableError``; one lost inside a write transaction fails every later
statement of that transaction, so nothing runs outside it, and one lost during COMMIT says that
the outcome is unknown. The pool itself is ``PostgresBackend``'s (``postgres_backend``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import psycopg

from stemcat.catalog.errors import LedgerUnavailableError

if TYPE_CHECKING:
    from stemcat.catalog.ledger.postgres_backend import PostgresBackend

_SERVER_GONE_STATES = ("57P01", "57P02", "57P03")


@lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """Rewrite ``?`` placeholders to psycopg's ``%s`` (and a literal ``%`` to ``%%``), outside quotes."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if char == "%":
            out.append("%%")
            continue
        if quote is not None:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append(char)
    return "".join(out)


class PgRow(tuple):  # noqa: SLOT001 - each row carries its cursor's column index
    """A result row, addressable by column name and by position (like ``sqlite3.Row``)."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> PgRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def keys(self) -> list[str]:
        return list(self._index)

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)


def pg_row_factory(cursor: Any) -> Any:
    description = cursor.description or ()
    index = {column.name: position for position, column in enumerate(description)}

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, index)

    return make


class PostgresConnection:
    """One pooled connection behind the seam's ``Connection`` protocol (``?`` placeholders).

    It takes a connection from the pool on first use and gives a broken one back, so the next
    statement after a server restart reconnects, unless a write transaction was open on it.
    """

    def __init__(self, backend: PostgresBackend, raw: psycopg.Connection[Any] | None = None) -> None:
        self._backend = backend
        self._raw = raw
        self._pinned = raw is not None  # a snapshot's own connection: never swapped
        self._in_transaction = False
        self._closed = False
        self._cursor_names = itertools.count(1)

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        # Without parameters psycopg sends the text as is (no %-escaping; several statements allowed).
        query = to_pyformat(sql) if parameters else sql
        params = tuple(parameters) or None
        while True:
            stale_candidate = self._raw is not None and not self._in_transaction and not self._pinned
            raw = self._connection()
            try:
                return raw.execute(query, params)  # type: ignore[arg-type] # trusted SQL from the concern modules
            except psycopg.Error as error:
                translated = self._translate(error)
                if translated is error:
                    raise
                if not stale_candidate:
                    raise translated from error
                # An idle connection the server dropped (a restart): outside a transaction the
                # statement is a read or a BEGIN, so it is sent once more on a fresh connection.

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        raw = self._connection()
        cursor = raw.cursor()
        try:
            cursor.executemany(to_pyformat(sql), [tuple(params) for params in seq_of_parameters])  # type: ignore[arg-type]
        except psycopg.Error as error:
            raise self._translate(error) from error
        return cursor

    def stream(self, sql: str, parameters: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        """A server-side cursor (inside a transaction): ``fetchmany`` streams instead of loading all rows."""
        raw = self._connection()
        cursor = raw.cursor(name=f"stemcat_export_{next(self._cursor_names)}")
        try:
            cursor.execute(to_pyformat(sql) if parameters else sql, tuple(parameters) or None)  # type: ignore[arg-type]
        except psycopg.Error as error:
            raise self._translate(error) from error
        return cursor

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        raw, self._raw = self._raw, None
        if raw is not None and not self._pinned:
            self._backend.give_back(raw)

    # Transactions (used by PostgresBackend only).

    def begin(self, statement: str) -> None:
        if self._in_transaction:
            raise RuntimeError("a ledger transaction is already open on this connection")
        self.execute(statement)
        self._in_transaction = True

    def commit(self) -> None:
        if self._raw is None:  # lost before COMMIT was sent: the server rolled the transaction back
            self._in_transaction = False
            raise LedgerUnavailableError(str(self._backend), "the connection broke inside the transaction")
        try:
            self.execute("COMMIT")
        except LedgerUnavailableError as error:
            raise LedgerUnavailableError(str(self._backend), "the connection broke during COMMIT",
                                         commit_unknown=True) from error
        finally:
            self._in_transaction = False

    def rollback(self) -> None:
        """Undo the open transaction; nothing to do when its connection is already gone."""
        try:
            if self._raw is not None and not self._raw.broken:
                self.execute("ROLLBACK")
        finally:
            self._in_transaction = False

    def _connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise LedgerUnavailableError(str(self._backend), "this connection was closed")
        if self._raw is None:
            if self._in_transaction or self._pinned:
                raise LedgerUnavailableError(str(self._backend), "the connection broke inside a transaction")
            self._raw = self._backend.checkout()
        return self._raw

    def _translate(self, error: psycopg.Error) -> Exception:
        raw = self._raw
        gone = raw is None or raw.broken or raw.closed or (error.sqlstate or "").startswith("08") \
            or error.sqlstate in _SERVER_GONE_STATES
        if not gone:
            return error
        if raw is not None and not self._pinned:
            self._raw = None
            self._backend.give_back(raw)
        return LedgerUnavailableError(str(self._backend), f"{type(error).__name__}: {str(error).strip()}")
