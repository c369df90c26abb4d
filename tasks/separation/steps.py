"""The separation flow's Prefect tasks: reconcile, plan a batch, separate a batch.

Each is a thin wrapper over plain functions (`reconcile.settle`, `planning.classify`,
`pipeline.run_batch`), which tests call directly. None is retried by Prefect: a paid
submit is never re-sent by an orchestrator retry. One task run per batch keeps Prefect's
per-task cost (a few ms) per fifty tracks, not per call.
"""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NONE

from stemcat.catalog import Ledger
from stemcat.tasks.context import RunContext, WorkItem
from stemcat.tasks.separation.actions import ResubmitPolicy
from stemcat.tasks.separation.pipeline import run_batch
from stemcat.tasks.separation.planning import classify
from stemcat.tasks.separation.reconcile import settle
from stemcat.tasks.separation.window import BatchEntry
from stemcat.tasks.tracks import TrackKey


@task(name="reconcile-intents", cache_policy=NONE, retries=0)
async def reconcile_intents(ctx: RunContext) -> dict[str, int]:
    """Resolve intents without a taskId left by earlier, dead runs."""
    return dict(await asyncio.to_thread(settle, ctx))


@task(name="plan-batch", cache_policy=NONE, retries=0)
async def plan_batch(ledger: Ledger, keys: list[TrackKey], policy: ResubmitPolicy) -> list[WorkItem]:
    """Decide, from the ledger, the action for each key of a batch."""
    return await asyncio.to_thread(classify, ledger, keys, policy)


@task(name="separate-batch", cache_policy=NONE, retries=0)
async def separate_batch(ctx: RunContext, items: list[WorkItem], entry: BatchEntry) -> dict[str, str]:
    """Submit (paid, never retried by Prefect), poll and download one batch; returns each job's download status.

    Each job waits for a slot of the run's job window, which `entry` admitted this batch into.
    """
    return await run_batch(ctx, items, entry)
