"""The ledger: the source of truth for what was paid for, job state, stems and runs.

One class, ``Ledger``, assembled from one mixin per concern, all writing through the same
transaction discipline (``core.LedgerCore``) on one backend connection:

    core          connection, lock, write/read/batch transactions, snapshots
    runs          start_run, finish_run
    tracks        upsert_tracks, add_rejects, tracks_for_tasks, track
    claims        claim, latest_jobs, jobs_by_status, get_job
    job_state     mark_submitted, mark_not_submitted, mark_unknown, mark_polled,
                  mark_succeeded, mark_failed, mark_status
    stems         stems_for_job, record_stem_download, mark_stem, record_analysis, jobs_to_analyze
    callbacks     record_callback, callbacks_for_token
    spend         spend_total

``backend`` is the seam to the database: ``SqliteBackend`` (``ledger.sqlite`` in the data
directory, the default) or ``PostgresBackend`` (a ``postgresql://`` URL, for runs on several
hosts; ``Ledger.open`` picks by the URL). The schema is declared once in ``catalog.schema`` and
the job life cycle in ``catalog.transitions``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from stemcat.catalog import sqlite_conn
from stemcat.catalog.paths import ledger_path
from stemcat.catalog.ledger.backend import Backend
from stemcat.catalog.ledger.callbacks import CallbacksMixin
from stemcat.catalog.ledger.claims import ClaimsMixin
from stemcat.catalog.ledger.core import SnapshotReader
from stemcat.catalog.ledger.job_state import JobStateMixin
from stemcat.catalog.ledger.runs import RunsMixin
from stemcat.catalog.ledger.spend import SpendMixin
from stemcat.catalog.ledger.sqlite_backend import SqliteBackend
from stemcat.catalog.ledger.stems import StemsMixin
from stemcat.catalog.ledger.tracks import TracksMixin
from stemcat.catalog.ledger.urls import is_postgres_url, masked_url

__all__ = ["Backend", "Ledger", "SnapshotReader", "SqliteBackend", "ledger_backend"]


class Ledger(RunsMixin, TracksMixin, ClaimsMixin, JobStateMixin, StemsMixin, CallbacksMixin, SpendMixin):
    """Crash-safe record of runs, tracks, paid jobs, stems, spend and callbacks.

    Every state change is its own short write transaction, committed before the method returns:
    on SQLite ``BEGIN IMMEDIATE`` with ``synchronous=FULL`` (WAL, 60 s busy timeout), on
    PostgreSQL the ledger's write lock (see ``postgres_backend``). ``Ledger(path)`` opens a SQLite
    file; ``Ledger(backend=...)`` any backend; ``Ledger.open(data_dir, url)`` picks one.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        backend: Backend | None = None,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = sqlite_conn.DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        if (path is None) == (backend is None):
            raise ValueError("give either the SQLite file's path or a backend")
        if backend is None:
            backend = SqliteBackend(Path(path), busy_timeout_s=busy_timeout_s)  # type: ignore[arg-type]
        # The SQLite file, or None when the ledger lives on a server.
        self.path: Path | None = backend.path if isinstance(backend, SqliteBackend) else None
        super().__init__(backend, clock=clock)

    @classmethod
    def open(
        cls,
        data_dir: Path,
        url: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float | None = None,
    ) -> Ledger:
        """The ledger of a data directory: ``ledger.sqlite`` in it, or the PostgreSQL database ``url`` names."""
        return cls(backend=ledger_backend(data_dir, url, busy_timeout_s=busy_timeout_s), clock=clock)

    def reopen(self, *, busy_timeout_s: float | None = None) -> Ledger:
        """Another ledger (its own connection) on the same database, e.g. for a group-commit writer."""
        timeout = self._backend.busy_timeout_s if busy_timeout_s is None else busy_timeout_s
        return Ledger(backend=self._backend.sibling(busy_timeout_s=timeout), clock=self._clock)

    def __repr__(self) -> str:
        return f"Ledger({str(self._backend)!r})"


def ledger_backend(data_dir: Path, url: str | None = None, *, busy_timeout_s: float | None = None) -> Backend:
    """``SqliteBackend`` on ``data_dir/ledger.sqlite`` unless ``url`` is a ``postgresql://`` URL.

    A URL of any other scheme is refused rather than silently ignored.
    """
    if url:
        if not is_postgres_url(url):
            raise ValueError(f"the ledger URL must be postgresql://user@host:port/database, got {masked_url(url)}")
        from stemcat.catalog.ledger.postgres_backend import (  # psycopg is an optional dependency
            DEFAULT_BUSY_TIMEOUT_S,
            PostgresBackend,
        )

        return PostgresBackend(url, busy_timeout_s=DEFAULT_BUSY_TIMEOUT_S if busy_timeout_s is None else busy_timeout_s)
    return SqliteBackend(
        ledger_path(Path(data_dir)),
        busy_timeout_s=sqlite_conn.DEFAULT_BUSY_TIMEOUT_S if busy_timeout_s is None else busy_timeout_s,
    )
