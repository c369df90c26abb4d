"""The catalog published to a storage (``--storage``): whole versions behind a one-object pointer.

A publication uploads the data directory's fresh Parquet set to ``catalog/versions/<id>/`` and
only then replaces ``catalog/CURRENT``, a small JSON object naming the version, each table's key,
size, sha256 and columns. A reader reads CURRENT once and then only that version's files, so it
never waits for a writer and never sees tables from two publications. Writers take turns
(``publishing_lock``: an advisory lock in a PostgreSQL ledger, which every host shares, or a file
lock in the data directory, the SQLite ledger's one host), so CURRENT only ever moves forward. The
newest few versions are kept for readers still reading an older one; the rest are deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from stemcat.catalog.atomic_files import sha256_file
from stemcat.catalog.ledger import Ledger
from stemcat.catalog.paths import parquet_path
from stemcat.catalog.schema import CATALOG_TABLES
from stemcat.catalog.storage import Storage, StorageError

CURRENT_KEY = "catalog/CURRENT"
VERSIONS_PREFIX = "catalog/versions"
KEEP_VERSIONS = 3
# pg_advisory_xact_lock(int4, int4): the ledger's own write lock is ('stmc', 1); publishing is ('stmc', 2).
_PUBLISH_LOCK_KEYS = (0x73746D63, 2)


class PublishedTable(BaseModel):
    key: str
    bytes: int
    sha256: str
    columns: list[str]


class PublishedCatalog(BaseModel):
    """What ``catalog/CURRENT`` holds."""

    version: str
    published_at: float
    tables: dict[str, PublishedTable]


def _new_version_id() -> str:
    # Sorts by time (pruning keeps the newest); the random tail keeps two hosts' ids apart.
    now = time.time()
    micros = int(now * 1e6) % 1_000_000
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{micros:06d}Z-{secrets.token_hex(3)}"


@contextlib.contextmanager
def publishing_lock(ledger: Ledger, data_dir: Path) -> Iterator[None]:
    """One publisher at a time among everyone sharing the ledger; readers take no lock."""
    backend = ledger.backend
    if backend.dialect == "postgres":
        import psycopg

        # Its own connection, in a transaction held for the publication: the lock goes with the
        # transaction, so a publisher that dies (or loses its connection) releases it.
        with psycopg.connect(backend.url, connect_timeout=10, application_name="stemcat-publish") as con:
            con.execute("SELECT pg_advisory_xact_lock(%s, %s)", _PUBLISH_LOCK_KEYS)
            yield
        return
    path = Path(data_dir) / "locks" / "publish.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # called from a worker thread: blocking is fine here
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def publish_to_storage(data_dir: Path, storage: Storage, *, keep: int = KEEP_VERSIONS) -> str:
    """Upload the data directory's Parquet snapshots as a new version, point CURRENT at it; returns its id.

    Call it under ``publishing_lock``, after ``write_snapshots``.
    """
    version = _new_version_id()
    tables: dict[str, PublishedTable] = {}
    for table in CATALOG_TABLES:
        path = parquet_path(data_dir, table)
        sha = sha256_file(path)
        key = f"{VERSIONS_PREFIX}/{version}/{table}.parquet"
        storage.put_file(path, key, sha256=sha)
        tables[table] = PublishedTable(key=key, bytes=path.stat().st_size, sha256=sha,
                                       columns=pq.read_schema(path).names)
    pointer = PublishedCatalog(version=version, published_at=time.time(), tables=tables)
    storage.write_bytes(CURRENT_KEY, pointer.model_dump_json().encode())
    _prune(storage, keep=keep, current=version)
    return version


def _prune(storage: Storage, *, keep: int, current: str) -> None:
    versions = sorted({key.split("/")[2] for key in storage.keys_under(VERSIONS_PREFIX) if key.count("/") >= 3})
    for old in versions[:-keep] if keep > 0 else versions:
        if old != current:
            storage.delete_under(f"{VERSIONS_PREFIX}/{old}")


def read_current(storage: Storage) -> PublishedCatalog | None:
    """The published catalog's pointer, or None when nothing was published there."""
    raw = storage.read_bytes(CURRENT_KEY)
    if raw is None:
        return None
    try:
        return PublishedCatalog.model_validate_json(raw)
    except ValidationError:
        raise StorageError(f"{storage.url}/{CURRENT_KEY} is not a stemcat catalog pointer") from None


def open_published_catalog(storage: Storage) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the tables and report views of the catalog published in ``storage``."""
    from stemcat.catalog.duckdb_views import create_empty_table, create_report_views, create_view_over

    current = read_current(storage)
    if current is None:
        raise StorageError(f"no catalog published in {storage.url}: run `stemcat run --storage {storage.url}` first")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        storage.attach(con)
        for table in CATALOG_TABLES:
            published = current.tables.get(table)
            if published is None:  # a table newer than the publication: empty until the next one
                create_empty_table(con, table)
            else:
                create_view_over(con, table, storage.location(published.key), set(published.columns))
        create_report_views(con)
    except BaseException:
        con.close()
        raise
    return con
