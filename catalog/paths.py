"""Where the catalog's files live under DATA_DIR."""

from __future__ import annotations

from pathlib import Path

LEDGER_FILENAME = "ledger.sqlite"
CATALOG_DIRNAME = "catalog"
DUCKDB_FILENAME = "catalog.duckdb"


def ledger_path(data_dir: Path) -> Path:
    """The SQLite ledger, the source of truth."""
    return Path(data_dir) / LEDGER_FILENAME


def catalog_dir(data_dir: Path) -> Path:
    """Directory of the Parquet snapshots."""
    return Path(data_dir) / CATALOG_DIRNAME


def parquet_path(data_dir: Path, table: str) -> Path:
    """Snapshot of one public table."""
    return catalog_dir(data_dir) / f"{table}.parquet"


def duckdb_path(data_dir: Path) -> Path:
    """The DuckDB file holding only views over the snapshots."""
    return Path(data_dir) / DUCKDB_FILENAME
