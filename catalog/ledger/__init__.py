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

``backend`` is the seam to the database (``SqliteBackend`` today); the schema is declared once in
``catalog.schema`` and the job life cycle in ``catalog.transitions``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from stemcat.catalog import sqlite_conn
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

__all__ = ["Backend", "Ledger", "SnapshotReader", "SqliteBackend"]


class Ledger(RunsMixin, TracksMixin, ClaimsMixin, JobStateMixin, StemsMixin, CallbacksMixin, SpendMixin):
    """Crash-safe record of runs, tracks, paid jobs, stems, spend and callbacks (``ledger.sqlite``).

    Every state change is its own short ``BEGIN IMMEDIATE`` transaction, committed with
    ``synchronous=FULL`` before the method returns; SQLite's file locks (WAL, 60 s busy timeout)
    make several processes safe.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = sqlite_conn.DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        super().__init__(SqliteBackend(self.path, busy_timeout_s=busy_timeout_s), clock=clock)

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"
