"""Settle what a crashed run left behind, before anything new is paid for."""

from __future__ import annotations

from collections import Counter

from stemcat.catalog import JobStatus
from stemcat.tasks.context import RunContext, run_is_alive


def settle(ctx: RunContext) -> Counter[str]:
    """Match orphan intents (and unknowns) to received callbacks; mark the rest `unknown`.

    An intent of a run that is still alive (on this host; on any host with a PostgreSQL ledger,
    see `run_is_alive`) is in flight, not orphaned,
    and is left alone.
    """
    counts: Counter[str] = Counter()
    for job in ctx.ledger.jobs_by_status([JobStatus.INTENT, JobStatus.UNKNOWN]):
        if job.run_id == ctx.run_id:
            continue
        if job.status == JobStatus.INTENT and run_is_alive(ctx.options.data_dir, job.run_id, ctx.ledger):
            counts["in_flight_elsewhere"] += 1
            continue
        remote = next((cb["remote_task_id"] for cb in ctx.ledger.callbacks_for_token(job.job_id)
                       if cb.get("remote_task_id")), None)
        if remote:
            ctx.ledger.mark_submitted(job.job_id, remote)
            counts["matched_by_callback"] += 1
        elif job.status == JobStatus.INTENT:
            ctx.ledger.mark_unknown(
                job.job_id, "the process stopped between the intent and the API's answer; no callback received"
            )
            counts["marked_unknown"] += 1
        else:
            counts["still_unknown"] += 1
    return counts
