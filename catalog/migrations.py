"""Bring an older ledger's tables up to the declared schema: columns added since are appended,
and value lists of ``CHECK (col IN (...))`` constraints widened to new statuses.

SQLite can add a nullable column in place (``ALTER TABLE ... ADD COLUMN``); a new NOT NULL column
would need a real migration and is refused. A CHECK constraint cannot be altered, but one that only
admits more values is a change to the stored table text alone, which SQLite documents as safe to
make through ``writable_schema`` (existing rows satisfy the wider constraint); a narrower one is refused.
"""

from __future__ import annotations

import re
import sqlite3

from stemcat.catalog.errors import CatalogError
from stemcat.catalog.schema import TABLES, Column, Table


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
