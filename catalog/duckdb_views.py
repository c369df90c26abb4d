"""DuckDB access to the catalog: views over the Parquet snapshots, never a long-held database file.

``refresh_duckdb`` rebuilds ``catalog.duckdb`` in a temp file and renames it into place, so a
reader holding the old file keeps working and a new reader is never locked out. Its views name the
Parquet files relative to the data directory (``catalog/spend.parquet``), so a copied or moved data
directory still opens; DuckDB resolves such paths against the reader's working directory or its
``file_search_path`` (``connect_catalog_file`` sets it). ``open_catalog`` builds the same views in
an in-memory database and touches no lock at all.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from stemcat.catalog.atomic_files import replacing, sweep_stale_temps
from stemcat.catalog.paths import duckdb_path, parquet_path
from stemcat.catalog.schema import CATALOG_TABLES, TABLES, ColumnKind, arrow_schema
from stemcat.catalog.snapshots import ensure_snapshot_files
from stemcat.catalog.storage import Storage
from stemcat.catalog.views import REPORT_VIEWS


STORAGE_VERSION = "v1.0.0"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _string_literal(value: str) -> str:
    # DDL cannot take bound parameters; the only value spliced in is a path we built, quoted here.
    return "'" + value.replace("'", "''") + "'"


_DUCKDB_TYPES: dict[ColumnKind, str] = {
    "text": "VARCHAR",
    "integer": "BIGINT",
    "real": "DOUBLE",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "bool": "BOOLEAN",
}


def _missing_column_list(table: str, present: set[str]) -> str:
    """``, NULL AS col`` for each declared column an older snapshot lacks (until the next snapshot)."""
    return "".join(
        f", CAST(NULL AS {_DUCKDB_TYPES[column.kind]}) AS {_identifier(column.name)}"
        for column in TABLES[table].export_columns
        if column.name not in present
    )


def _create_table_view(con: duckdb.DuckDBPyConnection, table: str, source: Path,
                       relative_to: Path | None = None) -> None:
    named = source.relative_to(relative_to).as_posix() if relative_to is not None else str(source.resolve())
    create_view_over(con, table, named, set(pq.read_schema(source).names))


def create_view_over(con: duckdb.DuckDBPyConnection, table: str, location: str, present: set[str]) -> None:
    """The view ``table`` over the Parquet file at ``location`` (a path or a URL), whose columns are ``present``."""
    con.execute(
        f"CREATE OR REPLACE VIEW {_identifier(table)} AS"
        f" SELECT *{_missing_column_list(table, present)} FROM read_parquet({_string_literal(location)})"
    )


def create_empty_table(con: duckdb.DuckDBPyConnection, table: str) -> None:
    empty = arrow_schema(table).empty_table()
    staging = f"__stemcat_empty_{table}"
    con.register(staging, empty)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {_identifier(table)} AS SELECT * FROM {_identifier(staging)}")
    finally:
        con.unregister(staging)


def create_report_views(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the report views; the table views must exist already."""
    for name, body in REPORT_VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {_identifier(name)} AS {body}")


def refresh_duckdb(data_dir: Path) -> Path:
    """Rebuild ``DATA_DIR/catalog.duckdb`` (views only) atomically; missing snapshots become empty files."""
    data_dir = Path(data_dir)
    ensure_snapshot_files(data_dir)
    target = duckdb_path(data_dir)
    with replacing(target) as temp:
        con = duckdb.connect(":memory:", config={"file_search_path": str(data_dir.resolve())})
        try:
            # Oldest storage format that holds views: DuckDB 1.x clients can open the file too.
            con.execute(f"ATTACH {_string_literal(str(temp))} AS fresh (STORAGE_VERSION '{STORAGE_VERSION}')")
            con.execute("USE fresh")
            for table in CATALOG_TABLES:
                _create_table_view(con, table, parquet_path(data_dir, table), relative_to=data_dir)
            create_report_views(con)
            con.execute("CHECKPOINT fresh")
            con.execute("USE memory")
            con.execute("DETACH fresh")
        finally:
            con.close()
        with contextlib.suppress(FileNotFoundError):
            temp.with_name(temp.name + ".wal").unlink()
    sweep_stale_temps([target])
    return target


def connect_catalog_file(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """``DATA_DIR/catalog.duckdb`` opened read-only, its relative Parquet paths resolved under ``data_dir``."""
    data_dir = Path(data_dir)
    return duckdb.connect(str(duckdb_path(data_dir)), read_only=True,
                          config={"file_search_path": str(data_dir.resolve())})


def open_catalog(data_dir: Path, storage: Storage | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with every catalog table and report view; reads only the Parquet files.

    With a ``storage``, the catalog last published there (``catalog.published``), not the data directory's.
    """
    if storage is not None:
        from stemcat.catalog.published import open_published_catalog

        return open_published_catalog(storage)
    data_dir = Path(data_dir)
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        for table in CATALOG_TABLES:
            source = parquet_path(data_dir, table)
            if source.exists():
                _create_table_view(con, table, source)
            else:
                create_empty_table(con, table)
        create_report_views(con)
    except BaseException:
        con.close()
        raise
    return con
