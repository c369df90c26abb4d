"""Job state: every status change of a claimed job, checked against ``catalog.transitions``.

A change and the spend row it implies (``transitions.spend_effect``) are written in the same
transaction, so a job's spend rows always agree with its status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from stemcat.catalog.errors import InvalidTransitionError, UnknownJobError
from stemcat.catalog.ledger.backend import Connection
from stemcat.catalog.ledger.claims import find_job
from stemcat.catalog.ledger.core import LedgerCore, require_text
from stemcat.catalog.ledger.spend import insert_spend
from stemcat.catalog.ledger.stems import all_stems_downloaded, store_stem_links
from stemcat.catalog.models import Job, JobStatus
from stemcat.catalog.schema import JOBS
from stemcat.catalog.transitions import PRE_SUBMISSION, is_allowed, spend_effect

log = logging.getLogger(__name__)

_JOB_COLUMNS = frozenset(JOBS.column_names)


class JobStateMixin(LedgerCore):
    def mark_submitted(self, job_id: str, remote_task_id: str) -> bool:
        """The API (or a callback naming the job's token) gave the remote task id.

        ``intent``/``unknown``/``not_submitted`` -> ``submitted`` (+ its spend row). Returns False
        when the job had already moved past submission (e.g. a callback got there first); a
        different task id for the same job is an error.
        """
        require_text(remote_task_id, "remote_task_id")
        with self._write() as con:
            job = _job_for_update(con, job_id)
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

    def mark_not_submitted(self, job_id: str, code: int | None, error: str) -> bool:
        """The API said it did not execute the request: no charge (spend ``rejected``, -credits).

        Returns False, changing nothing, if the job already has evidence that it ran.
        """
        with self._write() as con:
            job = _job_for_update(con, job_id)
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
            job = _job_for_update(con, job_id)
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
        documented_stems: Mapping[str, Sequence[str]] | None = None,
    ) -> JobStatus:
        """Record a finished task and its stem links ``(stem, url, url_expires_at)``; returns the job's status.

        New stems start ``pending``; a stem already downloaded keeps its file and gets the fresh
        link. A ``downloaded`` job stays downloaded while every stem is still downloaded.

        With ``documented_stems`` (separation type -> the stems that type documents), a job
        whose stems, those recorded before included, lack any of its type's is ``incomplete``
        and names them in ``missing_stems``; its links are kept for when the rest arrive.
        """
        if not stems and documented_stems is None:
            raise ValueError("a succeeded job needs at least one stem URL")
        for stem, url, _expires_at in stems:
            require_text(stem, "stem")
            require_text(url, "stem url")
        with self._write() as con:
            job = _job_for_update(con, job_id)
            if not is_allowed(job.status, JobStatus.SUCCEEDED):
                raise InvalidTransitionError(
                    job_id, job.status, JobStatus.SUCCEEDED, "record the remote task id first"
                )
            store_stem_links(con, job, stems)
            missing = _missing_stems(con, job, documented_stems)
            target = JobStatus.INCOMPLETE if missing else JobStatus.SUCCEEDED
            if job.status == JobStatus.DOWNLOADED and not missing and all_stems_downloaded(con, job_id):
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
                    "error": f"the answer lacks {len(missing)} documented stem(s)" if missing else None,
                    "missing_stems": ",".join(missing) or None,
                },
            )
        return target

    def mark_failed(self, job_id: str, *, success_flag: str | None, error_code: int | None, error: str | None) -> None:
        """The remote task failed (a failure ``successFlag`` or a failure callback)."""
        with self._write() as con:
            job = _job_for_update(con, job_id)
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
            job = _job_for_update(con, job_id)
            if job.status == new_status:
                return False
            if new_status == JobStatus.DOWNLOADED and not all_stems_downloaded(con, job_id):
                raise InvalidTransitionError(job_id, job.status, new_status, "not every stem is downloaded")
            changes: dict[str, Any] = {"error": error}
            if new_status == JobStatus.SUBMITTED:
                changes["submitted_at"] = job.submitted_at or self._clock()
            self._transition(con, job, new_status, changes)
        return True

    def job_status_counts(self, run_id: str) -> dict[str, int]:
        """How many of the jobs ``run_id`` claimed are in each status now."""
        with self._read() as con:
            rows = con.execute(
                "SELECT status, COUNT(*) FROM jobs WHERE run_id = ? GROUP BY status ORDER BY status", (run_id,)
            ).fetchall()
        return {str(status): int(count) for status, count in rows}

    def _transition(self, con: Connection, job: Job, new_status: JobStatus, changes: Mapping[str, Any]) -> None:
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
            insert_spend(con, job, event, credits, now)


def _missing_stems(con: Connection, job: Job, documented: Mapping[str, Sequence[str]] | None) -> list[str]:
    """The job type's documented stems that the job has no link for, in documented order."""
    if documented is None:
        return []
    expected = [str(stem) for stem in documented.get(job.separation_type, ())]
    have = {row[0] for row in con.execute("SELECT stem FROM stems WHERE job_id = ?", (job.job_id,)).fetchall()}
    return [stem for stem in expected if stem not in have]


def _job_for_update(con: Connection, job_id: str) -> Job:
    job = find_job(con, job_id)
    if job is None:
        raise UnknownJobError(job_id)
    return job
