"""The one transaction discipline every ledger concern writes through, and helpers they share.

Every state change is its own short write transaction, committed before the method returns.
One connection per ledger guarded by a lock makes it thread-safe; the backend's locks make
several processes safe. Inside ``batch()`` (used by ``catalog.group_commit``) the writes share
one transaction instead, each in a savepoint, durable when the batch commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import PurePosixPath
from typing import Any, Self, TypeVar

from stemcat.catalog.errors import LedgerClosedError
from stemcat.catalog.jsoncols import mask_urls_in_json_text
from stemcat.catalog.ledger.backend import Backend, Connection, Row
from stemcat.catalog.schema import CATALOG_TABLES, TABLES, Dialect

T = TypeVar("T")

LOOKUP_CHUNK = 500
WRITE_CHUNK = 5_000


class SnapshotReader:
    """A consistent, read-only view of the ledger for exports (one read transaction)."""

    def __init__(self, con: Connection, dialect: Dialect = "sqlite") -> None:
        self._con = con
        self._dialect = dialect

    def table_batches(self, table: str, batch_size: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
        """Stream a public table's exported columns (schema order) in lists of at most ``batch_size`` rows."""
        if table not in CATALOG_TABLES:
            raise ValueError(f"unknown catalog table {table!r}; expected one of {', '.join(CATALOG_TABLES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        sql = TABLES[table].export_select(self._dialect)
        masked = TABLES[table].masked_in_python(self._dialect)
        stream = getattr(self._con, "stream", None)  # a server-side cursor where the backend has one
        cursor = stream(sql) if stream is not None else self._con.execute(sql)
        try:
            while rows := cursor.fetchmany(batch_size):
                yield [_masked(row, masked) for row in rows] if masked else rows
        finally:
            cursor.close()


class LedgerCore:
    """The connection, its lock and the write/read/batch context managers the concerns use."""

    def __init__(self, backend: Backend, *, clock: Callable[[], float] = time.time) -> None:
        self._backend = backend
        self._clock = clock
        self._lock = threading.RLock()
        self._in_batch = False
        try:
            self._con: Connection | None = backend.connect()
        except BaseException:
            backend.close()
            raise

    @property
    def backend(self) -> Backend:
        """Where this ledger lives (``catalog.ledger.backend``)."""
        return self._backend

    def close(self) -> None:
        """Close the connection; later calls raise ``LedgerClosedError``."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
                self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction around many writes (group commit), committed when the block ends.

        Inside it each write method runs in its own savepoint: a write that raises undoes only
        itself, the others commit together. Beginning the transaction raises an error that
        ``backend.is_busy`` recognises when another connection holds the write lock past the
        busy timeout. Nothing written in the block is durable before the block ends.
        """
        with self._lock:
            con = self._connection()
            if self._in_batch:
                raise RuntimeError("ledger batches do not nest")
            with self._backend.write_transaction(con):
                self._in_batch = True
                try:
                    yield
                finally:
                    self._in_batch = False

    @contextmanager
    def read_snapshot(self) -> Iterator[SnapshotReader]:
        """A consistent read-only view on its own connection; writers (and this ledger) are not blocked."""
        self._connection()
        with self._backend.read_snapshot() as con:
            yield SnapshotReader(con, self._backend.dialect)  # type: ignore[arg-type]

    def table_batches(self, table: str, batch_size: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
        """Stream one public table's exported columns from a consistent snapshot."""
        with self.read_snapshot() as reader:
            yield from reader.table_batches(table, batch_size)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One durable write transaction, or a savepoint inside the open ``batch()``."""
        with self._lock:
            con = self._connection()
            if self._in_batch:
                with self._backend.savepoint(con):
                    yield con
                return
            with self._backend.write_transaction(con):
                yield con

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._lock:
            yield self._connection()

    def _connection(self) -> Connection:
        if self._con is None:
            raise LedgerClosedError(f"ledger {self._backend} is closed")
        return self._con


def _masked(row: Any, positions: tuple[int, ...]) -> tuple[Any, ...]:
    values = list(row)
    for position in positions:
        values[position] = mask_urls_in_json_text(values[position])
    return tuple(values)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, so one statement never binds too many values."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def require_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def relative_data_path(path: str) -> str:
    """Stem and mix paths are stored relative to DATA_DIR so the directory can move."""
    pure = PurePosixPath(require_text(path, "path"))
    if pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"path must be relative to the data directory without '..', got {path!r}")
    return str(pure)


def row_values(row: Row) -> dict[str, Any]:
    """A result row as a plain dict of column name to value."""
    return dict(zip(row.keys(), row, strict=True))
