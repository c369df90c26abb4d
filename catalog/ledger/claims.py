"""Claims: the ``intent`` attempt committed before a paid request, and looking jobs up.

A claim is the ledger's exactly-once guarantee. The intent job and its ``+credits`` spend row
are one transaction, on disk before ``claim`` returns; the backend's ``insert_new`` on the
``(audio_id, separation_type, attempt)`` key makes two racing claimers agree on one winner.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from stemcat.catalog.ledger.backend import Connection, Row, marks
from stemcat.catalog.ledger.core import LOOKUP_CHUNK, LedgerCore, chunks, require_text, row_values
from stemcat.catalog.ledger.spend import insert_spend
from stemcat.catalog.models import Job, JobStatus, SpendEvent
from stemcat.catalog.schema import JOBS
from stemcat.catalog.transitions import BLOCKING

JOB_SELECT = "SELECT " + ", ".join(JOBS.column_names) + " FROM jobs"
_ATTEMPT_KEY = ("audio_id", "separation_type", "attempt")


class ClaimsMixin(LedgerCore):
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
        require_text(audio_id, "audio_id")
        require_text(task_id, "task_id")
        require_text(separation_type, "separation_type")
        if isinstance(credits, bool) or not isinstance(credits, int) or credits <= 0:
            raise ValueError(f"credits must be a positive int, got {credits!r}")
        if not force:
            # Fast refusal without the write lock: a blocking attempt only ever gets rechecked below,
            # so this can at worst miss a key that was just freed, never claim one twice.
            with self._read() as con:
                latest = latest_job(con, audio_id, separation_type)
            if latest is not None and latest.status in BLOCKING:
                return None
        with self._write() as con:
            latest = latest_job(con, audio_id, separation_type)
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
            row = {column: getattr(job, column) for column in JOBS.column_names}
            if not self._backend.insert_new(con, "jobs", row, unique=_ATTEMPT_KEY):
                return None  # another claimer took this attempt first
            insert_spend(con, job, SpendEvent.INTENT, credits, now)
        return job

    def latest_jobs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Job]:
        """Latest attempt per (audio_id, separation_type), for the keys that have any."""
        unique_keys = list(dict.fromkeys((str(audio_id), str(kind)) for audio_id, kind in keys))
        found: dict[tuple[str, str], Job] = {}
        for chunk in chunks(unique_keys, LOOKUP_CHUNK):
            pairs = ", ".join(f"({marks(2)})" for _ in chunk)
            sql = (
                f"WITH wanted (audio_id, separation_type) AS (VALUES {pairs})"
                f" {JOB_SELECT} JOIN wanted USING (audio_id, separation_type)"
                " WHERE attempt = (SELECT MAX(j.attempt) FROM jobs AS j"
                " WHERE j.audio_id = jobs.audio_id AND j.separation_type = jobs.separation_type)"
            )
            params = [value for key in chunk for value in key]
            with self._read() as con:
                rows = con.execute(sql, params).fetchall()
            for row in rows:
                job = job_from_row(row)
                found[job.key] = job
        return found

    def jobs_by_status(
        self, statuses: Iterable[str], *, run_id: str | None = None, limit: int | None = None
    ) -> list[Job]:
        """Jobs in any of the given statuses, oldest first."""
        wanted = [JobStatus(status).value for status in statuses]
        if not wanted:
            return []
        sql = f"{JOB_SELECT} WHERE status IN ({marks(len(wanted))})"
        params: list[Any] = list(wanted)
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        sql += " ORDER BY created_at, job_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._read() as con:
            return [job_from_row(row) for row in con.execute(sql, params).fetchall()]

    def recent_latencies(self, separation_type: str, limit: int = 200) -> list[float]:
        """Seconds from submit to completion of the latest finished jobs of a type, oldest first."""
        with self._read() as con:
            rows = con.execute(
                "SELECT completed_at - submitted_at AS latency FROM jobs WHERE separation_type = ?"
                " AND completed_at IS NOT NULL AND submitted_at IS NOT NULL ORDER BY completed_at DESC LIMIT ?",
                (separation_type, int(limit)),
            ).fetchall()
        return [float(row["latency"]) for row in reversed(rows)]

    def get_job(self, job_id: str) -> Job | None:
        """One job by its token, or None."""
        with self._read() as con:
            return find_job(con, job_id)


def job_from_row(row: Row) -> Job:
    values = row_values(row)
    values["status"] = JobStatus(values["status"])
    values["low_snr"] = None if values["low_snr"] is None else bool(values["low_snr"])
    return Job(**values)


def find_job(con: Connection, job_id: str) -> Job | None:
    row = con.execute(f"{JOB_SELECT} WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else job_from_row(row)


def latest_job(con: Connection, audio_id: str, separation_type: str) -> Job | None:
    row = con.execute(
        f"{JOB_SELECT} WHERE audio_id = ? AND separation_type = ? ORDER BY attempt DESC LIMIT 1",
        (audio_id, separation_type),
    ).fetchone()
    return None if row is None else job_from_row(row)
