"""One batch of the manifest as one Prefect task, each job flowing through its own stages.

A job goes submit → await (polls, woken by its callback) → download as soon as its previous
stage ends, not when the slowest job of its batch does: stage-wide barriers left the API idle
while a batch downloaded and the download slots idle while it polled, which cost a quarter of
a run's wall time. Each job also holds a slot of the run's job window (`tasks.window`) only
while it runs, so the next batch's jobs start as this one's end. One task run per batch keeps
Prefect's per-task cost (a few ms) per fifty tracks, not per call.
"""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NONE

from stemcat.tasks.context import RunContext, WorkItem
from stemcat.tasks.downloads import download_job
from stemcat.tasks.planning import Action
from stemcat.tasks.separation import await_one, submit_one, wait_for_owner
from stemcat.tasks.window import BatchEntry


async def run_job(ctx: RunContext, item: WorkItem) -> tuple[str, str] | None:
    """Take one planned (audio_id, type) as far as it goes; returns (job id, download status) or None."""
    remote_task_id = None  # known here only for our own fresh submit: no read-back before polling
    if item.action == Action.DOWNLOAD:  # separated earlier, its stems not all on disk
        job_id, needs_poll, poll_now = item.job_id, False, False
    elif item.action == Action.POLL:  # submitted earlier (this or another run): poll it now
        job_id, needs_poll, poll_now = item.job_id, True, True
    elif item.action == Action.RECONCILE:  # a live run is paying for it: wait for its taskId
        job_id, needs_poll, poll_now = await wait_for_owner(ctx, item), True, True
    elif item.action == Action.SUBMIT:
        submitted = await submit_one(ctx, item)
        if submitted is None:
            return None
        job_id, remote_task_id = submitted
        # A key another run pays for is polled at once (its taskId is already in the ledger).
        needs_poll, poll_now = True, remote_task_id is None
    else:
        return None
    if job_id is None:
        return None
    if needs_poll and await await_one(ctx, job_id, first_poll_now=poll_now,
                                      remote_task_id=remote_task_id) != "succeeded":
        return None
    return job_id, await download_job(ctx, job_id)


@task(name="separate-batch", cache_policy=NONE, retries=0)
async def separate_batch(ctx: RunContext, items: list[WorkItem], entry: BatchEntry) -> dict[str, str]:
    """Submit (paid, never retried by Prefect), poll and download one batch; returns each job's download status.

    Each job waits for a slot of the run's job window, which `entry` admitted this batch into.
    """

    async def windowed(item: WorkItem) -> tuple[str, str] | None:
        async with ctx.window.job(entry):
            return await run_job(ctx, item)

    results = await asyncio.gather(*(windowed(item) for item in items))
    return dict(result for result in results if result is not None)
