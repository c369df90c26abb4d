"""Bring an older ledger's tables up to the declared schema: columns added since are appended,
and value lists of ``CHECK (col IN (...))`` constraints widened to new statuses.

SQLite and PostgreSQL can add a nullable column in place (``ALTER TABLE ... ADD COLUMN``); a new
NOT NULL column would need a real migration and is refused. SQLite keeps the schema version in
``PRAGMA user_version``; PostgreSQL in the ``stemcat_migrations`` table (one row per version
applied, see ``postgres_schema_version``).

A CHECK constraint that only admits more values (a new status) is widened in place: on SQLite by
rewriting the stored table text through ``writable_schema``, which SQLite documents as safe for a
constraint the existing rows satisfy; on PostgreSQL by dropping and re-adding the constraint. One
that would admit fewer values is refused.
"""

from __future__ import annotations

import re
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
    statements += _widen_postgres_checks(con)
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


_PG_ANY = re.compile(r'^CHECK \(\(+"?(?P<column>[A-Za-z_]+)"?\)? = ANY')


def _widen_postgres_checks(con: _Executes) -> list[str]:
    """Re-create each ``CHECK (col IN (...))`` whose stored value list is narrower than the declared one."""
    statements: list[str] = []
    for table in TABLES.values():
        declared = {c.name: c.constraint for c in table.columns if c.constraint.startswith("CHECK (")}
        if not declared:
            continue
        rows: Iterable[Any] = con.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass(?)"
            " AND contype = 'c'",
            (table.name,),
        ).fetchall()
        for name, definition in rows:
            match = _PG_ANY.match(definition)
            if match is None or match["column"] not in declared:
                continue
            column = match["column"]
            stored = set(re.findall(r"'([^']*)'::", definition))
            wanted = set(_check_values(declared[column])[column])
            if stored == wanted:
                continue
            if stored - wanted:
                raise CatalogError(f"ledger table {table.name!r} allows {sorted(stored - wanted)} in {column!r}:"
                                   " it cannot be narrowed in place")
            for statement in (f'ALTER TABLE "{table.name}" DROP CONSTRAINT "{name}"',
                              f'ALTER TABLE "{table.name}" ADD CONSTRAINT "{name}" {declared[column]}'):
                con.execute(statement)
                statements.append(statement)
    return statements


def _postgres_columns(con: _Executes, table: Table) -> set[str] | None:
    rows: Iterable[Any] = con.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?",
        (table.name,),
    ).fetchall()
    names = {row[0] for row in rows}
    return names or None


_CHECK_IN = re.compile(r'CHECK \("(?P<column>[A-Za-z_]+)" IN \((?P<values>[^)]*)\)\)')


def _check_values(text: str) -> dict[str, tuple[str, ...]]:
    """``column -> allowed values`` of every ``CHECK ("column" IN ('a', 'b'))`` in a CREATE TABLE text."""
    return {
        match["column"]: tuple(value.strip().strip("'") for value in match["values"].split(","))
        for match in _CHECK_IN.finditer(text)
    }


def widen_check_constraints(con: sqlite3.Connection) -> list[str]:
    """Give existing tables the declared value lists of their CHECK constraints (inside the caller's write
    transaction); returns the tables changed. Refuses to drop a value an older ledger allowed."""
    changed: list[str] = []
    for table in TABLES.values():
        row = con.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)).fetchone()
        if row is None:
            continue
        stored_sql: str = row[0]
        declared = {c.name: c.constraint for c in table.columns if c.constraint.startswith("CHECK (")}
        updated = stored_sql
        for column, stored_values in _check_values(stored_sql).items():
            constraint = declared.get(column)
            if constraint is None:
                continue
            wanted = _check_values(constraint)[column]
            if wanted == stored_values:
                continue
            dropped = set(stored_values) - set(wanted)
            if dropped:
                raise CatalogError(f"ledger table {table.name!r} allows {sorted(dropped)} in {column!r}:"
                                   " it cannot be narrowed in place")
            updated = updated.replace(_find_check(updated, column), constraint)
        if updated != stored_sql:
            _rewrite_table_sql(con, table.name, updated)
            changed.append(table.name)
    return changed


def _find_check(text: str, column: str) -> str:
    for match in _CHECK_IN.finditer(text):
        if match["column"] == column:
            return match.group(0)
    raise ValueError(column)


def _rewrite_table_sql(con: sqlite3.Connection, name: str, sql: str) -> None:
    # https://sqlite.org/lang_altertable.html#otheralter: a constraint change that existing rows satisfy.
    version = con.execute("PRAGMA schema_version").fetchone()[0]
    con.execute("PRAGMA writable_schema = ON")
    try:
        con.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql, name))
        con.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        con.execute("PRAGMA writable_schema = OFF")
