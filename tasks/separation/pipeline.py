"""One job's way through its stages: submit → await (polls, woken by its callback) → download.

Each stage starts as soon as the job's previous one ends, not when the slowest job of its
batch does (stage-wide barriers cost a quarter of a run's wall time; see docs/design.md).
`run_batch` runs a batch's jobs, each holding one slot of the run's job window
(`window.JobWindow`) only while it runs; `steps.separate_batch` is its Prefect task.
"""

from __future__ import annotations

import asyncio

from stemcat.catalog import JobStatus
from stemcat.tasks.context import RunContext, WorkItem
from stemcat.tasks.separation.actions import Action
from stemcat.tasks.separation.downloads import download_job
from stemcat.tasks.separation.polling import await_one
from stemcat.tasks.separation.submit import submit_one, wait_for_owner
from stemcat.tasks.separation.window import BatchEntry


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
    if needs_poll and await await_one(ctx, job_id, first_poll_now=poll_now, remote_task_id=remote_task_id,
                                      separation_type=item.separation_type) != JobStatus.SUCCEEDED:
        return None
    return job_id, await download_job(ctx, job_id)


async def run_batch(ctx: RunContext, items: list[WorkItem], entry: BatchEntry) -> dict[str, str]:
    """Every job of one batch, each in a slot of the run's window (`entry` admitted the batch).

    Returns each finished job's download status by job id.
    """

    async def windowed(item: WorkItem) -> tuple[str, str] | None:
        async with ctx.window.job(entry):
            return await run_job(ctx, item)

    results = await asyncio.gather(*(windowed(item) for item in items))
    return dict(result for result in results if result is not None)
