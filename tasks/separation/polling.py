"""Polling one submitted job (free, rate-limited) until it ends, and recording what it reported.

A job waits between polls on its callback event: a callback wakes it early.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from stemcat.catalog import JobStatus, Ledger
from stemcat.client import SeparationRecord, SunoError
from stemcat.client.shared_pacing import polling
from stemcat.tasks.context import RunContext
from stemcat.tasks.separation.poll_timing import next_poll_delay
from stemcat.tasks.separation.progress import reporter
from stemcat.tasks.separation.submit import abort_if_run_fatal

log = logging.getLogger(__name__)

URL_RETENTION = timedelta(days=14)


def _expiry(record: SeparationRecord) -> float:
    completed = record.complete_time.timestamp() if record.complete_time else time.time()
    return completed + URL_RETENTION.total_seconds()


async def store_record(ctx: RunContext, job_id: str, record: SeparationRecord) -> str | None:
    """Write a terminal record-info answer to the ledger; returns the new status or None if pending."""
    flag = record.success_flag
    if record.stem_urls and flag.has_results:
        expires = _expiry(record)
        await ctx.writes.write(
            Ledger.mark_succeeded, job_id, success_flag=str(flag),
            completed_at=record.complete_time.timestamp() if record.complete_time else None,
            origin_url=record.origin_url,
            stems=[(str(stem), url, expires) for stem, url in record.stem_urls.items()],
        )
        return JobStatus.SUCCEEDED
    if flag.is_terminal:
        await ctx.writes.write(
            Ledger.mark_failed, job_id, success_flag=str(flag), error_code=record.error_code,
            error=record.error_message or f"{flag} without stem URLs",
        )
        return JobStatus.FAILED
    return None


async def await_one(ctx: RunContext, job_id: str, *, first_poll_now: bool, remote_task_id: str | None = None) -> str:
    """Poll one job with per-job back-off (woken early by its callback) until it ends or times out.

    `remote_task_id` saves reading the job back when the caller has just stored it.
    """
    if remote_task_id is None:
        job = await ctx.writes.read(Ledger.get_job, job_id)
        if job is None or job.remote_task_id is None:
            return "missing"
        remote_task_id = job.remote_task_id
    options = ctx.options
    event = ctx.hub.event(job_id)
    deadline = time.monotonic() + options.job_timeout_s
    delay: float | None = None
    try:
        while True:
            if not first_poll_now:
                delay = next_poll_delay(delay, initial_s=options.poll_initial_s, factor=options.poll_factor,
                                        max_s=options.poll_max_s)
                wait_s = min(delay, max(0.0, deadline - time.monotonic()))
                try:
                    await asyncio.wait_for(event.wait(), timeout=wait_s)
                except TimeoutError:
                    pass
                event.clear()
            first_poll_now = False
            try:
                with polling():  # polls yield to submits under the shared budget's poll share
                    record = await ctx.client.record_info(remote_task_id)
            except SunoError as error:
                abort_if_run_fatal(error)
                log.warning("polling job %s failed: %s (it stays submitted)", job_id, error)
                ctx.counts["poll_errors"] += 1
                return "poll_error"
            status = await store_record(ctx, job_id, record)
            if status is not None:
                ctx.counts[status] += 1
                reporter().advance("separated")
                return status
            await ctx.writes.write(Ledger.mark_polled, job_id, time.time() + (delay or options.poll_initial_s))
            if time.monotonic() >= deadline:
                ctx.counts["timed_out"] += 1
                return "timed_out"
    finally:
        ctx.hub.forget(job_id)
