"""The paid submit of one job: claim, send, record; and waiting for another run's submit.

The order of writes is what makes a crash harmless: the intent (with its
idempotency token) is durable in the ledger before the POST leaves; the taskId is
stored after it returns; any doubt in between is recorded as `unknown` and never
re-sent automatically.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from stemcat.catalog import Job, JobStatus, Ledger
from stemcat.client import (
    CREDITS_PER_TYPE,
    ErrorPolicy,
    GenerateRequest,
    InsufficientCredits,
    SeparationType,
    SubmitOutcomeUnknown,
    SubmitReceipt,
    SunoError,
)
from stemcat.services.callbacks import callback_url
from stemcat.tasks.context import RunAborted, RunContext, WorkItem
from stemcat.tasks.separation.actions import needs_force
from stemcat.tasks.separation.progress import reporter

EXIT_UNAUTHORIZED = 4


class ClaimedElsewhere(Exception):
    """Another run claimed this (audio_id, type) between planning and sending."""


def abort_if_run_fatal(error: SunoError) -> None:
    """A 401 (or another run-wide refusal) ends the whole run, not just this job."""
    if error.policy is ErrorPolicy.RUN:
        raise RunAborted(f"{error} — stopping the run", EXIT_UNAUTHORIZED) from error


async def submit_one(ctx: RunContext, item: WorkItem) -> tuple[str, str | None] | None:
    """Claim, pay for and record one separation.

    Returns (job id, remote taskId) when it was accepted, or (job id, None) when another run
    is paying for it (its taskId is in the ledger); None when nothing is to be polled.
    """
    if ctx.stop_reason is not None:
        ctx.counts["deferred"] += 1
        return None
    credits = CREDITS_PER_TYPE[SeparationType(item.separation_type)]
    if not ctx.budget.try_reserve(credits):
        ctx.stop_submitting("budget reached (--max-credits or balance)")
        ctx.counts["deferred"] += 1
        return None
    # The intent is claimed inside the client, after the limiter admitted the request and just
    # before it leaves: a crash while waiting for the limiter then leaves nothing ambiguous behind.
    job_id = uuid.uuid4().hex
    claimed: list[Job] = []

    async def claim_intent() -> None:
        job = await ctx.writes.write(
            Ledger.claim, item.audio_id, item.task_id, item.separation_type, credits, ctx.run_id,
            force=needs_force(item.status, ctx.options.policy), job_id=job_id,
        )
        if job is None:
            raise ClaimedElsewhere(item.audio_id)
        claimed.append(job)

    request = GenerateRequest(
        task_id=item.task_id, audio_id=item.audio_id, type=SeparationType(item.separation_type),
        callback_url=callback_url(ctx.callback_base, ctx.secret, job_id),
    )
    receipt = SubmitReceipt()
    try:
        remote_task_id = await ctx.client.submit(request, before_send=claim_intent, receipt=receipt)
    except ClaimedElsewhere:  # another run claimed it first: it pays, we wait for its taskId
        ctx.budget.release(credits)
        ctx.counts["claimed_elsewhere"] += 1
        owner_job = await wait_for_owner(ctx, item)
        return None if owner_job is None else (owner_job, None)
    except BaseException as error:
        if not claimed:  # nothing was recorded, so nothing was sent: no charge, nothing to settle
            ctx.budget.release(credits)
            if isinstance(error, SunoError):
                abort_if_run_fatal(error)
                ctx.counts["not_submitted"] += 1
                return None
            raise
        await _settle_failed_submit(ctx, claimed[0], credits, error, receipt)
        return None
    await ctx.writes.write(Ledger.mark_submitted, job_id, remote_task_id)
    ctx.counts["submitted"] += 1
    reporter().advance("submitted")
    return job_id, remote_task_id


async def _settle_failed_submit(
    ctx: RunContext, job: Job, credits: int, error: BaseException, receipt: SubmitReceipt
) -> None:
    """Record why a claimed submit did not return a taskId."""
    if isinstance(error, SubmitOutcomeUnknown):
        await ctx.writes.write(Ledger.mark_unknown, job.job_id, str(error))
        ctx.counts["unknown"] += 1
        return
    if isinstance(error, SunoError):
        # Every other client error means the API did not execute the call: no charge.
        await ctx.writes.write(Ledger.mark_not_submitted, job.job_id, error.code, str(error))
        ctx.budget.release(credits)
        if isinstance(error, InsufficientCredits):
            ctx.stop_submitting("out of credits (429)")
            ctx.counts["deferred"] += 1
            return
        abort_if_run_fatal(error)
        ctx.counts["not_submitted"] += 1
        return
    if receipt.not_executed:  # stopped while waiting to re-send a refused submit (e.g. out a Retry-After)
        refusal = receipt.refusal
        await ctx.writes.write(Ledger.mark_not_submitted, job.job_id, refusal.code if refusal else None,
                               f"stopped before it was sent again ({refusal or 'never sent'})")
        ctx.budget.release(credits)
        ctx.counts["not_submitted"] += 1
        raise error
    # Anything unforeseen after the intent (a bug, a cancellation): we cannot know
    # whether the POST left, so it is unknown, never silently retried.
    await ctx.writes.write(Ledger.mark_unknown, job.job_id, f"interrupted: {error!r}")
    ctx.counts["unknown"] += 1
    raise error


async def wait_for_owner(ctx: RunContext, item: WorkItem) -> str | None:
    """A key another live run is paying for: wait (free) until its taskId is in the ledger.

    Returns the job id to poll and download like our own, or None when the owner's
    submit did not end in a remote task (unknown, refused) or it took too long.
    """
    deadline = time.monotonic() + ctx.options.job_timeout_s
    while time.monotonic() < deadline:
        latest = await ctx.writes.read(Ledger.latest_jobs, [(item.audio_id, item.separation_type)])
        job = latest.get((item.audio_id, item.separation_type))
        if job is not None and job.remote_task_id:
            ctx.counts["shared_with_other_run"] += 1
            return job.job_id
        if job is not None and job.status != JobStatus.INTENT:
            ctx.counts[f"owner_{job.status}"] += 1
            return None
        await asyncio.sleep(min(ctx.options.poll_initial_s or 1.0, 1.0))
    ctx.counts["in_flight_elsewhere"] += 1
    return None
