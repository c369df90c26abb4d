"""stemcat's durable state: a crash-safe SQLite ledger, and a Parquet + DuckDB catalog derived from it.

Layout under DATA_DIR
---------------------
``ledger.sqlite``
    The source of truth for what was paid for, job state, stems, runs, callbacks and rejects.
    SQLite in WAL mode with ``synchronous=FULL`` and a 60 s ``busy_timeout``. Every state change
    is its own short ``BEGIN IMMEDIATE`` transaction, durable when the method returns; a run's hot
    path writes through ``LedgerWriter``, which groups the writes of one turn of the event loop in
    one transaction (each in a savepoint) and returns to each caller once they are on disk. A claim
    writes the ``intent`` job and its ``+credits`` spend row in one transaction *before* the paid
    request leaves, so a crash can never lead to paying twice without the ledger knowing. Safe for
    several ``stemcat run`` processes on one host at once (and for threads: one connection per
    ``Ledger`` behind a lock). It is the only hot, transactional store.

    Runs on several hosts share one ledger on a PostgreSQL server instead (``STEMCAT_LEDGER_URL``
    / ``--ledger-url postgresql://…``, ``catalog.ledger.postgres_backend``): the same tables and
    guarantees, the write transactions serialised by one advisory lock, liveness of a run judged
    by its lease on the database's clock. The Parquet snapshots and DuckDB views below stay per
    data directory.

``catalog/{table}.parquet``
    A snapshot of each public table, streamed from one consistent SQLite read in record batches
    with the explicit pyarrow schema declared once in ``catalog.schema`` (one description per
    column, kept in the file's field metadata). Each file is written to a temp name in the same
    directory, fsynced, then ``os.replace``d: a reader never sees a truncated file. Concurrent
    snapshotters are fine: the last rename wins and every snapshot is complete. Bearer links
    (``stems.url``) are never exported; URLs inside callback payloads are masked to their host.

``catalog.duckdb``
    Only VIEWS over the Parquet files (absolute paths) plus the report views, rebuilt in a temp
    file and renamed into place, never held open by a run: ``stemcat sql``/``report`` in another
    shell, and any DuckDB client (it is written in the v1.0.0 storage format, so DuckDB 1.x opens
    it too), are never locked out. The CLI's readers use ``open_catalog``,
    an in-memory DuckDB with the same views, which touches no lock at all.

Timestamps are REAL epoch seconds (UTC) in SQLite and ``timestamp[us, tz=UTC]`` in Parquet.

Jobs and credits
----------------
A job is one paid separation attempt of an (audio_id, separation_type); its ``job_id`` is the
client's idempotency token. Statuses (``JobStatus``): ``intent`` (committed before the POST),
``submitted`` (remote task id known), ``succeeded``, ``failed``, ``unknown`` (ambiguous submit:
maybe charged, never resubmitted without force), ``not_submitted`` (the API did not execute it:
may be claimed again), ``downloaded``, ``expired``. The allowed changes are in
``catalog.transitions``. The ``spend`` table records ``intent`` (+credits), ``accepted`` (0),
``rejected`` (-credits) and ``ambiguous`` (0) events, so ``SUM(credits)`` is the credits
committed; a run's ``balance_delta`` should equal minus its spend (``spend_by_run.difference``).
"""

from stemcat.catalog.duckdb_views import connect_catalog_file, open_catalog, refresh_duckdb
from stemcat.catalog.errors import (
    CatalogError,
    InvalidTransitionError,
    LedgerBusyError,
    LedgerClosedError,
    LedgerUnavailableError,
    UnknownJobError,
    UnknownRunError,
)
from stemcat.catalog.group_commit import LedgerWriter
from stemcat.catalog.ledger import Ledger, SnapshotReader
from stemcat.catalog.models import (
    Job,
    JobQualityRow,
    JobStatus,
    RejectRow,
    RunStatus,
    SpendEvent,
    StemQualityRow,
    StemRow,
    StemStatus,
    TrackRow,
)
from stemcat.catalog.paths import catalog_dir, duckdb_path, ledger_path, parquet_path
from stemcat.catalog.reports import run_sql, spend_report, stems_report
from stemcat.catalog.schema import CATALOG_TABLES, arrow_schema
from stemcat.catalog.snapshots import write_snapshots

__all__ = [
    "CATALOG_TABLES",
    "CatalogError",
    "InvalidTransitionError",
    "Job",
    "JobQualityRow",
    "JobStatus",
    "Ledger",
    "LedgerBusyError",
    "LedgerClosedError",
    "LedgerUnavailableError",
    "LedgerWriter",
    "RejectRow",
    "RunStatus",
    "SnapshotReader",
    "SpendEvent",
    "StemQualityRow",
    "StemRow",
    "StemStatus",
    "TrackRow",
    "UnknownJobError",
    "UnknownRunError",
    "arrow_schema",
    "catalog_dir",
    "connect_catalog_file",
    "duckdb_path",
    "ledger_path",
    "open_catalog",
    "parquet_path",
    "refresh_duckdb",
    "run_sql",
    "spend_report",
    "stems_report",
    "write_snapshots",
]
