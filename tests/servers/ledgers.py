"""Every ledger test runs on both backends: ``ledger_target`` is a SQLite file in the test's data
directory or a fresh PostgreSQL database (``tests.servers.postgres``), with the helpers the tests
need on either.

The fixture is registered for the whole suite (``tests/conftest.py``); its params are ``sqlite``
and ``postgres``. Where the machine has no PostgreSQL server binaries, the ``postgres`` param is
skipped with the reason (the ``postgres_server`` fixture says why). Fixtures of a wider scope
(one sample ledger per module) use ``ledger_target_for``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stemcat.catalog.ledger import Backend, Ledger, SqliteBackend

BACKENDS = ("sqlite", "postgres")


@dataclass
class LedgerTarget:
    """Where one test's ledger lives, and how to reach it from outside the ledger under test."""

    kind: str
    location: str  # the SQLite file, or the PostgreSQL URL
    _make: Callable[..., Backend]
    data_dir: Path  # the run's data directory (stems, catalog); the SQLite file is in it

    @property
    def url(self) -> str | None:
        """The ledger URL a run is given (``RunOptions.ledger_url``): None for the SQLite file."""
        return self.location if self.kind == "postgres" else None

    def backend(self, **options: Any) -> Backend:
        return self._make(**options)

    def ledger(self, **options: Any) -> Ledger:
        busy = options.pop("busy_timeout_s", None)
        backend = self.backend() if busy is None else self.backend(busy_timeout_s=busy)
        return Ledger(backend=backend, **options)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one SELECT (``?`` placeholders) on a connection of its own, as plain tuples."""
        backend = self.backend()
        con = backend.connect()
        try:
            return [tuple(row) for row in con.execute(sql, params).fetchall()]
        finally:
            con.close()
            backend.close()

    def records(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of one SELECT as dicts of column name to value."""
        backend = self.backend()
        con = backend.connect()
        try:
            return [dict(zip(row.keys(), row, strict=True)) for row in con.execute(sql, params).fetchall()]
        finally:
            con.close()
            backend.close()

    @contextmanager
    def write_lock_held_elsewhere(self) -> Iterator[Callable[[], None]]:
        """Another connection (another process's writer) holds the ledger's write lock until the
        block ends or it calls the ``release`` it was given."""
        if self.kind == "sqlite":
            other: Any = sqlite3.connect(self.location, isolation_level=None, check_same_thread=False)
            other.execute("BEGIN IMMEDIATE")
        else:
            import psycopg

            from stemcat.catalog.ledger.postgres_backend import _LOCK_KEYS

            other = psycopg.connect(self.location, autocommit=True)
            other.execute(f"BEGIN; SELECT pg_advisory_xact_lock({_LOCK_KEYS[0]}, {_LOCK_KEYS[1]})")
        held = [True]

        def release() -> None:
            if held[0]:
                held[0] = False
                other.execute("ROLLBACK")

        try:
            yield release
        finally:
            release()
            other.close()


def sqlite_target(data_dir: Path) -> LedgerTarget:
    path = data_dir / "ledger.sqlite"
    return LedgerTarget("sqlite", str(path), lambda **options: SqliteBackend(path, **options), data_dir)


def postgres_target(url: str, data_dir: Path) -> LedgerTarget:
    from stemcat.catalog.ledger.postgres_backend import PostgresBackend

    return LedgerTarget("postgres", url, lambda **options: PostgresBackend(url, **options), data_dir)


def ledger_target_for(kind: str, request: pytest.FixtureRequest, data_dir: Path) -> LedgerTarget:
    """A ledger of ``kind`` for a fixture of any scope: on PostgreSQL a fresh database of the
    session's server (dropped with the server), else ``data_dir/ledger.sqlite``."""
    if kind == "postgres":
        return postgres_target(request.getfixturevalue("postgres_server").create_database(), data_dir)
    return sqlite_target(data_dir)


@pytest.fixture(params=BACKENDS)
def ledger_target(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerTarget:
    """This test's ledger, once on SQLite (``tmp_path/data/ledger.sqlite``) and once on a fresh
    PostgreSQL database (dropped after the test); ``data_dir`` is ``tmp_path/data`` on both."""
    data_dir = tmp_path / "data"
    if request.param == "postgres":
        return postgres_target(request.getfixturevalue("postgres_url"), data_dir)
    return sqlite_target(data_dir)
