"""The SQLite ledger: the source of truth for what was paid for, job state, stems and runs.

Every state change is its own short ``BEGIN IMMEDIATE`` transaction, committed with
``synchronous=FULL`` before the method returns. One connection per ``Ledger`` guarded by a lock
makes it thread-safe; SQLite's file locks (WAL, 60 s busy timeout) make several processes safe.
Inside ``batch()`` (used by ``catalog.group_commit``) the writes share one transaction instead,
each in a savepoint, durable when the batch commits.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from stemcat.catalog import sqlite_conn
from stemcat.catalog.errors import (
    InvalidTransitionError,
    LedgerClosedError,
    UnknownJobError,
    UnknownRunError,
)
from stemcat.catalog.jsoncols import redact_secrets, to_json_object_text
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
from stemcat.catalog.schema import CATALOG_TABLES, JOBS, STEMS, TABLES, TRACKS
from stemcat.catalog.transitions import BLOCKING, PRE_SUBMISSION, is_allowed, spend_effect

log = logging.getLogger(__name__)

T = TypeVar("T")

LOOKUP_CHUNK = 500
WRITE_CHUNK = 5_000
RUN_COUNT_COLUMNS = tuple(name for name in TABLES["runs"].column_names if name.startswith("n_"))

_JOB_SELECT = "SELECT " + ", ".join(JOBS.column_names) + " FROM jobs"
_STEM_SELECT = "SELECT " + ", ".join(STEMS.column_names) + " FROM stems"
_JOB_COLUMNS = frozenset(JOBS.column_names)
_JOB_INSERT = (
    f"INSERT INTO jobs ({', '.join(JOBS.column_names)}) VALUES ({', '.join('?' for _ in JOBS.column_names)})"
)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _job_from_row(row: sqlite3.Row) -> Job:
    values = dict(zip(row.keys(), row, strict=True))
    values["status"] = JobStatus(values["status"])
    values["low_snr"] = None if values["low_snr"] is None else bool(values["low_snr"])
    return Job(**values)


def _stem_from_row(row: sqlite3.Row) -> StemRow:
    values = dict(zip(row.keys(), row, strict=True))
    values["status"] = StemStatus(values["status"])
    values["silent"] = None if values["silent"] is None else bool(values["silent"])
    return StemRow(**values)


def _require_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _relative_data_path(path: str) -> str:
    """Stem paths are stored relative to DATA_DIR so the directory can move."""
    pure = PurePosixPath(_require_text(path, "path"))
    if pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"path must be relative to the data directory without '..', got {path!r}")
    return str(pure)


def _run_counts(counts: Mapping[str, Any]) -> dict[str, int | None]:
    """Pick the run-table counts out of a run's counters (``n_rows`` or ``rows``); others stay in the summary."""
    resolved: dict[str, int | None] = dict.fromkeys(RUN_COUNT_COLUMNS)
    for name, value in counts.items():
        column = name if name.startswith("n_") else f"n_{name}"
        if column not in resolved:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"run count {name!r} must be an int, got {value!r}")
        resolved[column] = value
    return resolved


class SnapshotReader:
    """A consistent, read-only view of the ledger for exports (one SQLite read transaction)."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    def table_batches(self, table: str, batch_size: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
        """Stream a public table's exported columns (schema order) in lists of at most ``batch_size`` rows."""
        if table not in CATALOG_TABLES:
            raise ValueError(f"unknown catalog table {table!r}; expected one of {', '.join(CATALOG_TABLES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        cursor = self._con.execute(TABLES[table].export_select())
        try:
            while rows := cursor.fetchmany(batch_size):
                yield rows
        finally:
            cursor.close()


class Ledger:
    """Crash-safe record of runs, tracks, paid jobs, stems, spend and callbacks (``ledger.sqlite``)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = sqlite_conn.DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._in_batch = False
        self._con: sqlite3.Connection | None = sqlite_conn.connect(self.path, busy_timeout_s=busy_timeout_s)
        self._con.row_factory = sqlite3.Row
        try:
            sqlite_conn.ensure_schema(self._con)
        except BaseException:
            self.close()
            raise

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; later calls raise ``LedgerClosedError``."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction around many writes (group commit), committed when the block ends.

        Inside it each write method runs in its own savepoint: a write that raises undoes only
        itself, the others commit together. ``BEGIN IMMEDIATE`` raises ``sqlite3.OperationalError``
        (see ``sqlite_conn.is_busy``) when another connection holds the write lock past the busy
        timeout. Nothing written in the block is durable before the block ends.
        """
        with self._lock:
            con = self._connection()
            if self._in_batch:
                raise RuntimeError("ledger batches do not nest")
            with sqlite_conn.write_transaction(con):
                self._in_batch = True
                try:
                    yield
                finally:
                    self._in_batch = False

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            con = self._connection()
            if self._in_batch:
                with sqlite_conn.savepoint(con):
                    yield con
                return
            with sqlite_conn.write_transaction(con):
                yield con

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._connection()

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            raise LedgerClosedError(f"ledger {self.path} is closed")
        return self._con

    @contextmanager
    def read_snapshot(self) -> Iterator[SnapshotReader]:
        """A consistent read-only view on its own connection; writers (and this Ledger) are not blocked."""
        self._connection()
        with sqlite_conn.read_transaction(self.path, busy_timeout_s=self._busy_timeout_s) as con:
            yield SnapshotReader(con)

    def table_batches(self, table: str, batch_size: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
        """Stream one public table's exported columns from a consistent snapshot."""
        with self.read_snapshot() as reader:
            yield from reader.table_batches(table, batch_size)

    # -- runs -------------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        *,
        flow_run_id: str | None,
        manifest: str | None,
        params: Mapping[str, Any],
        balance_before: int | None,
    ) -> None:
        """Record a run as ``running``; values of secret-looking keys in ``params`` are redacted."""
        _require_text(run_id, "run_id")
        params_text = to_json_object_text(redact_secrets(params), what="params")
        with self._write() as con:
            try:
                con.execute(
                    "INSERT INTO runs (run_id, flow_run_id, started_at, manifest, status, balance_before, params)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, flow_run_id, self._clock(), manifest, RunStatus.RUNNING.value, balance_before,
                     params_text),
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"run {run_id!r} already exists in the ledger") from exc

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        exit_code: int,
        balance_after: int | None,
        summary: Mapping[str, Any],
        counts: Mapping[str, int],
    ) -> None:
        """Close a run: credits_spent is the run's spend total, balance_delta = after - before.

        ``counts`` may hold any counters; rows, rejected, skipped, submitted, downloaded and failed
        (with or without the ``n_`` prefix) fill the run's columns, missing ones stay NULL.
        """
        run_status = RunStatus(status)
        count_values = _run_counts(counts)
        summary_text = to_json_object_text(redact_secrets(summary), what="summary")
        with self._write() as con:
            row = con.execute("SELECT balance_before FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise UnknownRunError(run_id)
            balance_before = row["balance_before"]
            delta = None if balance_before is None or balance_after is None else balance_after - balance_before
            spent = con.execute(
                "SELECT COALESCE(SUM(credits), 0) FROM spend WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            assignments = ", ".join(f"{column} = ?" for column in RUN_COUNT_COLUMNS)
            con.execute(
                "UPDATE runs SET ended_at = ?, status = ?, exit_code = ?, credits_spent = ?, balance_after = ?,"
                f" balance_delta = ?, summary = ?, {assignments} WHERE run_id = ?",
                (
                    self._clock(),
                    run_status.value,
                    exit_code,
                    spent,
                    balance_after,
                    delta,
                    summary_text,
                    *(count_values[column] for column in RUN_COUNT_COLUMNS),
                    run_id,
                ),
            )

    # -- tracks and rejects -----------------------------------------------------------------

    def upsert_tracks(self, rows: Iterable[TrackRow]) -> None:
        """Insert or update tracks in batches; ``first_seen_at`` of a known track is kept."""
        columns = TRACKS.column_names
        updates = ", ".join(
            f"{column} = excluded.{column}" for column in columns if column not in ("audio_id", "first_seen_at")
        )
        sql = (
            f"INSERT INTO tracks ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
            f" ON CONFLICT (audio_id) DO UPDATE SET {updates}"
        )
        for chunk in _chunks(rows, WRITE_CHUNK):
            now = self._clock()
            values = [
                (
                    row.audio_id, row.task_id, row.title, row.tags, row.duration_s, row.source_url,
                    row.model_name, row.split, row.metadata, row.manifest, row.line,
                    row.first_seen_at if row.first_seen_at is not None else now,
                    row.updated_at if row.updated_at is not None else now,
                )
                for row in chunk
            ]
            with self._write() as con:
                con.executemany(sql, values)

    def add_rejects(self, rows: Iterable[RejectRow]) -> None:
        """Append rejected manifest rows in batches."""
        for chunk in _chunks(rows, WRITE_CHUNK):
            now = self._clock()
            values = [
                (row.run_id, row.manifest, row.line, row.reason, row.raw, row.at if row.at is not None else now)
                for row in chunk
            ]
            with self._write() as con:
                con.executemany(
                    "INSERT INTO rejects (run_id, manifest, line, reason, raw, at) VALUES (?, ?, ?, ?, ?, ?)",
                    values,
                )

    def tracks_for_tasks(self, task_ids: Iterable[str]) -> dict[str, list[TrackRow]]:
        """Known tracks per music-generation task id (tasks without tracks are left out)."""
        unique_ids = list(dict.fromkeys(task_ids))
        found: dict[str, list[TrackRow]] = {}
        for chunk in _chunks(unique_ids, LOOKUP_CHUNK):
            sql = (
                f"SELECT {', '.join(TRACKS.column_names)} FROM tracks"
                f" WHERE task_id IN ({', '.join('?' for _ in chunk)}) ORDER BY task_id, audio_id"
            )
            with self._read() as con:
                rows = con.execute(sql, chunk).fetchall()
            for row in rows:
                found.setdefault(row["task_id"], []).append(TrackRow(**dict(zip(row.keys(), row, strict=True))))
        return found

    # -- claiming ---------------------------------------------------------------------------

    def claim(
        self,
        audio_id: str,
        task_id: str,
        separation_type: str,
        credits: int,
        run_id: str,
        *,
        force: bool = False,
        job_id: str | None = None,
    ) -> Job | None:
        """Atomically create the next ``intent`` attempt for (audio_id, separation_type), or return None.

        A new attempt is created when there is none yet, when the latest was ``not_submitted``, or
        when ``force`` is set. The intent and its ``+credits`` spend row are on disk before this returns,
        so the caller may then send the paid request. ``job_id`` lets the caller choose the token
        (it is already inside the request's callback URL); by default a fresh uuid4 hex.
        """
        _require_text(audio_id, "audio_id")
        _require_text(task_id, "task_id")
        _require_text(separation_type, "separation_type")
        if isinstance(credits, bool) or not isinstance(credits, int) or credits <= 0:
            raise ValueError(f"credits must be a positive int, got {credits!r}")
        if not force:
            # Fast refusal without the write lock: a blocking attempt only ever gets rechecked below,
            # so this can at worst miss a key that was just freed, never claim one twice.
            with self._read() as con:
                latest = self._latest_job(con, audio_id, separation_type)
            if latest is not None and latest.status in BLOCKING:
                return None
        with self._write() as con:
            latest = self._latest_job(con, audio_id, separation_type)
            if latest is not None and latest.status in BLOCKING and not force:
                return None
            now = self._clock()
            job = Job(
                job_id=job_id or uuid.uuid4().hex,
                audio_id=audio_id,
                task_id=task_id,
                separation_type=separation_type,
                attempt=1 if latest is None else latest.attempt + 1,
                status=JobStatus.INTENT,
                credits=credits,
                run_id=run_id,
                remote_task_id=None,
                created_at=now,
                submitted_at=None,
                completed_at=None,
                updated_at=now,
                success_flag=None,
                error_code=None,
                error=None,
                poll_count=0,
                next_poll_at=None,
                origin_url=None,
            )
            con.execute(_JOB_INSERT, tuple(getattr(job, column) for column in JOBS.column_names))
            self._insert_spend(con, job, SpendEvent.INTENT, credits, now)
        return job

    def latest_jobs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Job]:
        """Latest attempt per (audio_id, separation_type), for the keys that have any."""
        unique_keys = list(dict.fromkeys((str(audio_id), str(kind)) for audio_id, kind in keys))
        found: dict[tuple[str, str], Job] = {}
        for chunk in _chunks(unique_keys, LOOKUP_CHUNK):
            placeholders = ", ".join("(?, ?)" for _ in chunk)
            sql = (
                f"WITH wanted (audio_id, separation_type) AS (VALUES {placeholders})"
                f" {_JOB_SELECT} JOIN wanted USING (audio_id, separation_type)"
                " WHERE attempt = (SELECT MAX(j.attempt) FROM jobs AS j"
                " WHERE j.audio_id = jobs.audio_id AND j.separation_type = jobs.separation_type)"
            )
            params = [value for key in chunk for value in key]
            with self._read() as con:
                rows = con.execute(sql, params).fetchall()
            for row in rows:
                job = _job_from_row(row)
                found[job.key] = job
        return found

    # -- job state --------------------------------------------------------------------------

    def mark_submitted(self, job_id: str, remote_task_id: str) -> bool:
        """The API returned a task id: ``intent``/``unknown`` -> ``submitted`` (+ spend ``accepted``).

        Returns False when the job had already moved past submission (e.g. a callback got there
        first); a different task id for the same job is an error.
        """
        return self._record_remote_task_id(job_id, remote_task_id)

    def set_remote_task_id(self, job_id: str, remote_task_id: str) -> bool:
        """Reconcile from a callback naming the job's token; same rules as ``mark_submitted``."""
        return self._record_remote_task_id(job_id, remote_task_id)

    def mark_not_submitted(self, job_id: str, code: int | None, error: str) -> bool:
        """The API said it did not execute the request: no charge (spend ``rejected``, -credits).

        Returns False, changing nothing, if the job already has evidence that it ran.
        """
        with self._write() as con:
            job = self._job_for_update(con, job_id)
            if job.status not in (JobStatus.INTENT, JobStatus.UNKNOWN):
                if job.status != JobStatus.NOT_SUBMITTED:
                    log.warning("job %s is %s; ignoring a later not-submitted outcome", job_id, job.status)
                return False
            self._transition(con, job, JobStatus.NOT_SUBMITTED, {"error_code": code, "error": error})
        return True

    def mark_unknown(self, job_id: str, error: str) -> bool:
        """The submit outcome is ambiguous: keep the +credits intent, never resubmit without force.

        Returns False, changing nothing, unless the job was still an ``intent``.
        """
        with self._write() as con:
            job = self._job_for_update(con, job_id)
            if job.status != JobStatus.INTENT:
                return False
            self._transition(con, job, JobStatus.UNKNOWN, {"error": error})
        return True

    def mark_polled(self, job_id: str, next_poll_at: float) -> None:
        """Count one status poll and schedule the next."""
        with self._write() as con:
            cursor = con.execute(
                "UPDATE jobs SET poll_count = poll_count + 1, next_poll_at = ?, updated_at = ? WHERE job_id = ?",
                (next_poll_at, self._clock(), job_id),
            )
            if cursor.rowcount == 0:
                raise UnknownJobError(job_id)

    def mark_succeeded(
        self,
        job_id: str,
        *,
        success_flag: str,
        completed_at: float | None,
        origin_url: str | None,
        stems: Sequence[tuple[str, str, float | None]],
    ) -> None:
        """Record a finished task and its stem links ``(stem, url, url_expires_at)``.

        New stems start ``pending``; a stem already downloaded keeps its file and gets the fresh
        link. A ``downloaded`` job stays downloaded while every stem is still downloaded.
        """
        if not stems:
            raise ValueError("a succeeded job needs at least one stem URL")
        for stem, url, _expires_at in stems:
            _require_text(stem, "stem")
            _require_text(url, "stem url")
        with self._write() as con:
            job = self._job_for_update(con, job_id)
            if not is_allowed(job.status, JobStatus.SUCCEEDED):
                raise InvalidTransitionError(
                    job_id, job.status, JobStatus.SUCCEEDED, "record the remote task id first"
                )
            con.executemany(
                "INSERT INTO stems (job_id, audio_id, separation_type, stem, url, url_expires_at, status)"
                " VALUES (?, ?, ?, ?, ?, ?, 'pending')"
                " ON CONFLICT (job_id, stem) DO UPDATE SET"
                " url = excluded.url, url_expires_at = excluded.url_expires_at,"
                " status = CASE WHEN stems.status = 'downloaded' THEN 'downloaded' ELSE 'pending' END,"
                " error = CASE WHEN stems.status = 'downloaded' THEN stems.error ELSE NULL END",
                [(job_id, job.audio_id, job.separation_type, stem, url, expires) for stem, url, expires in stems],
            )
            target = JobStatus.SUCCEEDED
            if job.status == JobStatus.DOWNLOADED and self._all_stems_downloaded(con, job_id):
                target = JobStatus.DOWNLOADED
            self._transition(
                con,
                job,
                target,
                {
                    "success_flag": success_flag,
                    "completed_at": completed_at if completed_at is not None else job.completed_at or self._clock(),
                    "origin_url": origin_url or job.origin_url,
                    "error_code": None,
                    "error": None,
                },
            )

    def mark_failed(self, job_id: str, *, success_flag: str | None, error_code: int | None, error: str | None) -> None:
        """The remote task failed (a failure ``successFlag`` or a failure callback)."""
        with self._write() as con:
            job = self._job_for_update(con, job_id)
            self._transition(
                con,
                job,
                JobStatus.FAILED,
                {
                    "success_flag": success_flag,
                    "error_code": error_code,
                    "error": error,
                    "completed_at": job.completed_at or self._clock(),
                },
            )

    def mark_status(self, job_id: str, status: str, error: str | None = None) -> bool:
        """Any other allowed status change (downloaded, expired, reconciliation); spend rows follow.

        ``downloaded`` requires every stem of the job to be downloaded. Returns False when the job
        already had that status.
        """
        new_status = JobStatus(status)
        with self._write() as con:
            job = self._job_for_update(con, job_id)
            if job.status == new_status:
                return False
            if new_status == JobStatus.DOWNLOADED and not self._all_stems_downloaded(con, job_id):
                raise InvalidTransitionError(job_id, job.status, new_status, "not every stem is downloaded")
            changes: dict[str, Any] = {"error": error}
            if new_status == JobStatus.SUBMITTED:
                changes["submitted_at"] = job.submitted_at or self._clock()
            self._transition(con, job, new_status, changes)
        return True

    def jobs_by_status(
        self, statuses: Iterable[str], *, run_id: str | None = None, limit: int | None = None
    ) -> list[Job]:
        """Jobs in any of the given statuses, oldest first."""
        wanted = [JobStatus(status).value for status in statuses]
        if not wanted:
            return []
        sql = f"{_JOB_SELECT} WHERE status IN ({', '.join('?' for _ in wanted)})"
        params: list[Any] = list(wanted)
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        sql += " ORDER BY created_at, job_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._read() as con:
            return [_job_from_row(row) for row in con.execute(sql, params).fetchall()]

    def recent_latencies(self, separation_type: str, limit: int = 200) -> list[float]:
        """Seconds from submit to completion of the latest finished jobs of a type, oldest first."""
        with self._read() as con:
            rows = con.execute(
                "SELECT completed_at - submitted_at FROM jobs WHERE separation_type = ?"
                " AND completed_at IS NOT NULL AND submitted_at IS NOT NULL ORDER BY rowid DESC LIMIT ?",
                (separation_type, int(limit)),
            ).fetchall()
        return [float(row[0]) for row in reversed(rows)]

    def get_job(self, job_id: str) -> Job | None:
        """One job by its token, or None."""
        with self._read() as con:
            row = con.execute(f"{_JOB_SELECT} WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _job_from_row(row)

    # -- stems ------------------------------------------------------------------------------

    def stems_for_job(self, job_id: str) -> list[StemRow]:
        """The job's stems, by name."""
        with self._read() as con:
            rows = con.execute(f"{_STEM_SELECT} WHERE job_id = ? ORDER BY stem", (job_id,)).fetchall()
        return [_stem_from_row(row) for row in rows]

    def record_stem_download(
        self,
        job_id: str,
        stem: str,
        *,
        path: str,
        bytes: int,  # noqa: A002 - the column's name
        sha256: str,
        duration_s: float | None,
        sample_rate: int | None,
        channels: int | None,
    ) -> bool:
        """Record a verified file (``path`` relative to DATA_DIR).

        Returns True when every stem of the job is now downloaded.
        """
        relative = _relative_data_path(path)
        with self._write() as con:
            cursor = con.execute(
                "UPDATE stems SET status = 'downloaded', path = ?, bytes = ?, sha256 = ?, duration_s = ?,"
                " sample_rate = ?, channels = ?, downloaded_at = ?, error = NULL WHERE job_id = ? AND stem = ?",
                (relative, bytes, sha256, duration_s, sample_rate, channels, self._clock(), job_id, stem),
            )
            if cursor.rowcount == 0:
                raise UnknownJobError(job_id, stem)
            return self._all_stems_downloaded(con, job_id)

    def mark_stem(self, job_id: str, stem: str, status: str, error: str | None = None) -> None:
        """Set a stem to pending, failed or expired (downloads go through ``record_stem_download``)."""
        stem_status = StemStatus(status)
        if stem_status == StemStatus.DOWNLOADED:
            raise ValueError("use record_stem_download to mark a stem downloaded")
        with self._write() as con:
            cursor = con.execute(
                "UPDATE stems SET status = ?, error = ? WHERE job_id = ? AND stem = ?",
                (stem_status.value, error, job_id, stem),
            )
            if cursor.rowcount == 0:
                raise UnknownJobError(job_id, stem)

    def update_stem_quality(
        self,
        job_id: str,
        stem: str,
        *,
        peak_dbfs: float | None,
        rms_dbfs: float | None,
        lufs: float | None,
        clipped_fraction: float | None,
        silent: bool | None,
        duration_diff_s: float | None = None,
    ) -> None:
        """Store the analysis of a downloaded stem."""
        quality = StemQualityRow(
            stem=stem, peak_dbfs=peak_dbfs, rms_dbfs=rms_dbfs, lufs=lufs, clipped_fraction=clipped_fraction,
            silent=silent, duration_diff_s=duration_diff_s,
        )
        with self._write() as con:
            self._update_stem_quality(con, job_id, quality)

    def update_job_quality(
        self,
        job_id: str,
        *,
        reconstruction_snr_db: float | None,
        mix_path: str | None,
        mix_duration_s: float | None,
        low_snr: bool | None,
        analysis_error: str | None = None,
    ) -> None:
        """Store how well a job's stems add back up to its mix (``mix_path`` relative to DATA_DIR)."""
        quality = JobQualityRow(
            reconstruction_snr_db=reconstruction_snr_db, mix_path=mix_path, mix_duration_s=mix_duration_s,
            low_snr=low_snr, analysis_error=analysis_error,
        )
        with self._write() as con:
            self._update_job_quality(con, job_id, quality)

    def record_analysis(self, job_id: str, job: JobQualityRow, stems: Iterable[StemQualityRow]) -> None:
        """Store a whole analysis (the job's row and each analysed stem) in one transaction."""
        with self._write() as con:
            for quality in stems:
                self._update_stem_quality(con, job_id, quality)
            self._update_job_quality(con, job_id, job)

    def jobs_to_analyze(self, *, include_analyzed: bool = False, limit: int | None = None) -> list[str]:
        """Downloaded jobs whose stems have not been analysed yet (or all of them), oldest first."""
        sql = "SELECT job_id FROM jobs WHERE status = 'downloaded'"
        if not include_analyzed:
            sql += " AND analyzed_at IS NULL"
        sql += " ORDER BY created_at, job_id"
        params: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (int(limit),)
        with self._read() as con:
            return [row[0] for row in con.execute(sql, params).fetchall()]

    def track(self, audio_id: str) -> TrackRow | None:
        """One track by its audio id, or None."""
        with self._read() as con:
            row = con.execute(
                f"SELECT {', '.join(TRACKS.column_names)} FROM tracks WHERE audio_id = ?", (audio_id,)
            ).fetchone()
        return None if row is None else TrackRow(**dict(zip(row.keys(), row, strict=True)))

    def _update_stem_quality(self, con: sqlite3.Connection, job_id: str, quality: StemQualityRow) -> None:
        silent = None if quality.silent is None else int(quality.silent)
        cursor = con.execute(
            "UPDATE stems SET peak_dbfs = ?, rms_dbfs = ?, lufs = ?, clipped_fraction = ?, silent = ?,"
            " duration_diff_s = ? WHERE job_id = ? AND stem = ?",
            (quality.peak_dbfs, quality.rms_dbfs, quality.lufs, quality.clipped_fraction, silent,
             quality.duration_diff_s, job_id, quality.stem),
        )
        if cursor.rowcount == 0:
            raise UnknownJobError(job_id, quality.stem)

    def _update_job_quality(self, con: sqlite3.Connection, job_id: str, quality: JobQualityRow) -> None:
        mix_path = None if quality.mix_path is None else _relative_data_path(quality.mix_path)
        low_snr = None if quality.low_snr is None else int(quality.low_snr)
        cursor = con.execute(
            "UPDATE jobs SET reconstruction_snr_db = ?, mix_path = ?, mix_duration_s = ?, low_snr = ?,"
            " analyzed_at = ?, analysis_error = ? WHERE job_id = ?",
            (quality.reconstruction_snr_db, mix_path, quality.mix_duration_s, low_snr, self._clock(),
             quality.analysis_error, job_id),
        )
        if cursor.rowcount == 0:
            raise UnknownJobError(job_id)

    # -- callbacks and spend ----------------------------------------------------------------

    def record_callback(
        self, token: str | None, remote_task_id: str | None, code: int | None, payload: Mapping[str, Any]
    ) -> None:
        """Keep a received callback verbatim (duplicates are normal and all kept)."""
        payload_text = json.dumps(dict(payload), sort_keys=True, ensure_ascii=False, default=str)
        with self._write() as con:
            con.execute(
                "INSERT INTO callbacks (token, remote_task_id, code, received_at, payload) VALUES (?, ?, ?, ?, ?)",
                (token, remote_task_id, code, self._clock(), payload_text),
            )

    def callbacks_for_token(self, token: str) -> list[dict[str, Any]]:
        """Callbacks received for a job token, oldest first, with ``payload`` decoded."""
        with self._read() as con:
            rows = con.execute(
                "SELECT id, token, remote_task_id, code, received_at, payload FROM callbacks"
                " WHERE token = ? ORDER BY id",
                (token,),
            ).fetchall()
        callbacks = []
        for row in rows:
            record = dict(zip(row.keys(), row, strict=True))
            record["payload"] = json.loads(record["payload"]) if record["payload"] is not None else None
            callbacks.append(record)
        return callbacks

    def spend_total(self, run_id: str | None = None) -> int:
        """Credits committed (all runs, or one run)."""
        sql = "SELECT COALESCE(SUM(credits), 0) FROM spend"
        params: tuple[str, ...] = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            params = (run_id,)
        with self._read() as con:
            return int(con.execute(sql, params).fetchone()[0])

    # -- internals --------------------------------------------------------------------------

    def _record_remote_task_id(self, job_id: str, remote_task_id: str) -> bool:
        _require_text(remote_task_id, "remote_task_id")
        with self._write() as con:
            job = self._job_for_update(con, job_id)
            if job.remote_task_id not in (None, remote_task_id):
                raise InvalidTransitionError(
                    job_id,
                    job.status,
                    JobStatus.SUBMITTED,
                    f"it already has remote task {job.remote_task_id!r}, not {remote_task_id!r}",
                )
            if job.status in PRE_SUBMISSION:
                self._transition(
                    con,
                    job,
                    JobStatus.SUBMITTED,
                    {
                        "remote_task_id": remote_task_id,
                        "submitted_at": job.submitted_at or self._clock(),
                        "error_code": None,
                        "error": None,
                    },
                )
                return True
            if job.remote_task_id is None:
                con.execute(
                    "UPDATE jobs SET remote_task_id = ?, updated_at = ? WHERE job_id = ?",
                    (remote_task_id, self._clock(), job_id),
                )
            return False

    def _transition(
        self, con: sqlite3.Connection, job: Job, new_status: JobStatus, changes: Mapping[str, Any]
    ) -> None:
        """Apply one checked status change and its spend row inside the caller's transaction."""
        if not is_allowed(job.status, new_status):
            raise InvalidTransitionError(job.job_id, job.status, new_status)
        unknown = set(changes) - _JOB_COLUMNS
        if unknown:
            raise ValueError(f"not job columns: {sorted(unknown)}")
        now = self._clock()
        assignments = ", ".join(["status = ?", "updated_at = ?", *(f"{column} = ?" for column in changes)])
        con.execute(
            f"UPDATE jobs SET {assignments} WHERE job_id = ?",
            (new_status.value, now, *changes.values(), job.job_id),
        )
        effect = spend_effect(job.status, new_status, job.credits)
        if effect is not None:
            event, credits = effect
            self._insert_spend(con, job, event, credits, now)

    @staticmethod
    def _insert_spend(con: sqlite3.Connection, job: Job, event: SpendEvent, credits: int, at: float) -> None:
        con.execute(
            "INSERT INTO spend (at, run_id, job_id, audio_id, separation_type, credits, event)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, job.run_id, job.job_id, job.audio_id, job.separation_type, credits, event.value),
        )

    @staticmethod
    def _job_for_update(con: sqlite3.Connection, job_id: str) -> Job:
        row = con.execute(f"{_JOB_SELECT} WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJobError(job_id)
        return _job_from_row(row)

    @staticmethod
    def _latest_job(con: sqlite3.Connection, audio_id: str, separation_type: str) -> Job | None:
        row = con.execute(
            f"{_JOB_SELECT} WHERE audio_id = ? AND separation_type = ? ORDER BY attempt DESC LIMIT 1",
            (audio_id, separation_type),
        ).fetchone()
        return None if row is None else _job_from_row(row)

    @staticmethod
    def _all_stems_downloaded(con: sqlite3.Connection, job_id: str) -> bool:
        total, downloaded = con.execute(
            "SELECT COUNT(*), COALESCE(SUM(status = 'downloaded'), 0) FROM stems WHERE job_id = ?", (job_id,)
        ).fetchone()
        return total > 0 and total == downloaded
