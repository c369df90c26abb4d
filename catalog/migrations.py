"""Bring an older ledger's tables up to the declared schema: columns added since are appended.

SQLite can add a nullable column in place (``ALTER TABLE ... ADD COLUMN``), which is all the
schema has needed so far; a new NOT NULL column would need a real migration and is refused.
"""

from __future__ import annotations

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
