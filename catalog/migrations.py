"""Bring an older ledger's tables up to the declared schema: columns added since are appended.

SQLite and PostgreSQL can add a nullable column in place (``ALTER TABLE ... ADD COLUMN``), which
is all the schema has needed so far; a new NOT NULL column would need a real migration and is
refused. SQLite keeps the schema version in ``PRAGMA user_version``; PostgreSQL in the
``stemcat_migrations`` table (one row per version applied, see ``postgres_schema_version``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from stemcat.catalog.errors import CatalogError
from stemcat.catalog.schema import SCHEMA_VERSION, TABLES, Column, Table, postgres_ddl

POSTGRES_MIGRATIONS_TABLE = "stemcat_migrations"


class _Executes(Protocol):
    """A connection whose ``execute`` takes ``?`` placeholders (``catalog.ledger.backend.Connection``)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...


def _existing_columns(con: sqlite3.Connection, table: Table) -> set[str] | None:
    """Column names of ``table`` in the file, or None when the table does not exist yet."""
    # Table names come from the declared schema only.
    rows = con.execute(f'PRAGMA table_info("{table.name}")').fetchall()
    return {row[1] for row in rows} if rows else None


def missing_columns(table: Table, existing: set[str]) -> list[Column]:
    """Declared columns of ``table`` that ``existing`` lacks, in declaration order."""
    missing = [column for column in table.columns if column.name not in existing]
    refused = [column.name for column in missing if column.not_null]
    if refused:
        raise CatalogError(
            f"ledger table {table.name!r} lacks NOT NULL column(s) {', '.join(refused)}: it cannot be upgraded in place"
        )
    return missing


def add_missing_columns(con: sqlite3.Connection) -> list[str]:
    """Append every missing column to the existing tables (inside the caller's write transaction).

    Returns the statements it ran; tables that do not exist yet are left to CREATE TABLE.
    """
    statements: list[str] = []
    for table in TABLES.values():
        existing = _existing_columns(con, table)
        if existing is None:
            continue
        for column in missing_columns(table, existing):
            statement = f'ALTER TABLE "{table.name}" ADD COLUMN {column.ddl()}'
            con.execute(statement)
            statements.append(statement)
    return statements


def postgres_schema_version(con: _Executes) -> int | None:
    """The highest schema version applied to a PostgreSQL ledger, or None when it has no tables yet."""
    exists = con.execute("SELECT to_regclass(?) IS NOT NULL", (POSTGRES_MIGRATIONS_TABLE,)).fetchone()[0]
    if not exists:
        return None
    return con.execute(f"SELECT MAX(version) FROM {POSTGRES_MIGRATIONS_TABLE}").fetchone()[0]


def upgrade_postgres(con: _Executes, now: Callable[[], float]) -> list[str]:
    """Create or upgrade a PostgreSQL ledger to ``SCHEMA_VERSION`` (inside the caller's write transaction).

    Refuses a ledger written by a newer stemcat. Returns the ALTER statements it ran.
    """
    version = postgres_schema_version(con)
    if version is not None and version > SCHEMA_VERSION:
        raise CatalogError(
            f"ledger schema version {version} is newer than this stemcat ({SCHEMA_VERSION}); upgrade stemcat"
        )
    statements: list[str] = []
    # Columns first: a new index may name a new column.
    for table in TABLES.values():
        existing = _postgres_columns(con, table)
        if existing is None:
            continue
        for column in missing_columns(table, existing):
            statement = f'ALTER TABLE "{table.name}" ADD COLUMN {column.ddl("postgres")}'
            con.execute(statement)
            statements.append(statement)
    for statement in postgres_ddl():
        con.execute(statement)
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {POSTGRES_MIGRATIONS_TABLE}"
        " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
    )
    if version is None or version < SCHEMA_VERSION:
        con.execute(
            f"INSERT INTO {POSTGRES_MIGRATIONS_TABLE} (version, applied_at) VALUES (?, ?)"
            " ON CONFLICT (version) DO NOTHING",
            (SCHEMA_VERSION, now()),
        )
    return statements


def _postgres_columns(con: _Executes, table: Table) -> set[str] | None:
    rows: Iterable[Any] = con.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?",
        (table.name,),
    ).fetchall()
    names = {row[0] for row in rows}
    return names or None
