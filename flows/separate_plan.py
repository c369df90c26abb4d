"""A separation run's reading of the world before it spends: the credit balance, pass 1 over the
manifest (validate, stage, plan every key), the credits the run may commit, and pass 2's batches.

List arguments of tasks are wrapped in `quote`: Prefect otherwise walks every item of
every list looking for futures, which dominated a million-row dry run.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote

from stemcat.catalog import RejectRow
from stemcat.client import SunoClient, SunoError, TransportFailure
from stemcat.exit_codes import ExitCode
from stemcat.flows.orchestration import call_task
from stemcat.flows.summary import RunSummary
from stemcat.tasks.context import RunAborted, RunContext, RunOptions, WorkItem
from stemcat.tasks.manifest import iter_manifest
from stemcat.tasks.separation.planning import Plan, classify
from stemcat.tasks.separation.steps import plan_batch
from stemcat.tasks.shards import sharded
from stemcat.tasks.tracks import stage_rows, stage_tracks

MANIFEST_CHUNK_ROWS = 10_000

log = logging.getLogger("stemcat.flows.separate")  # the run's lines keep the flow's logger name


@task(name="read-balance", cache_policy=NONE, retries=0)
async def read_balance(client: SunoClient, max_wait_s: float | None = None) -> int | None:
    """The account's credit balance (free call); None when it cannot be read (within `max_wait_s`)."""
    try:
        return await client.credits(max_wait_s=max_wait_s)
    except TransportFailure as error:
        if not error.request_sent:  # nothing answers there: stop before anything is claimed
            raise RunAborted(f"cannot reach the API: {error}; check --base-url / SUNO_BASE_URL",
                             ExitCode.BAD_CONFIG) from None
        log.warning("the credit balance could not be read: %s", error)
        return None
    except SunoError as error:
        if error.policy.value == "run":
            raise RunAborted(str(error), ExitCode.UNAUTHORIZED) from None
        log.warning("the credit balance could not be read: %s", error)
        return None


def _write_rejects(path: Path, rejects: list[dict[str, object]], *, header: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["line", "reason", "raw"])
        if header:
            writer.writeheader()
        writer.writerows(rejects)


async def plan_manifest(ctx: RunContext, manifest: Path, summary: RunSummary) -> Plan:
    """Pass 1: validate every row, record rejects and tracks, and plan every key."""
    plan = Plan()
    rejects_path = ctx.options.data_dir / "rejects" / f"{ctx.run_id}.csv"
    chunks = iter_manifest(manifest, default_type=ctx.options.default_type, chunk_rows=MANIFEST_CHUNK_ROWS)
    for chunk in sharded(chunks, ctx.options.shard):  # a fanned-out child keeps only its shard's rows
        keys, expansion_rejects = await call_task(stage_tracks, ctx.ledger, ctx.client, quote(chunk.rows),
                                                  str(manifest), ctx.run_id)
        plan.rows += len(chunk.rows) - len(expansion_rejects)
        rows = [{"line": r.line, "reason": r.reason, "raw": json.dumps(r.raw)} for r in chunk.rejects]
        rows += [{"line": r.line, "reason": r.reason, "raw": r.raw} for r in expansion_rejects]
        if rows:
            _write_rejects(rejects_path, rows, header=summary.rejects_file is None)
            summary.rejects_file = str(rejects_path)
            plan.rejected += len(rows)
            await asyncio.to_thread(ctx.ledger.add_rejects, _reject_rows(ctx, str(manifest), rows))
        for start in range(0, len(keys), MANIFEST_CHUNK_ROWS):
            plan.add(await call_task(plan_batch, ctx.ledger, quote(keys[start:start + MANIFEST_CHUNK_ROWS]),
                                     ctx.options.policy))
    return plan


def _reject_rows(ctx: RunContext, manifest: str, rows: list[dict[str, object]]) -> list[RejectRow]:
    now = time.time()
    return [RejectRow(run_id=ctx.run_id, manifest=manifest, line=int(r["line"]), reason=str(r["reason"]),
                      raw=str(r["raw"]), at=now) for r in rows]


async def iter_work(ctx: RunContext, manifest: Path) -> AsyncIterator[list[WorkItem]]:
    """Pass 2: the manifest again, as batches of work items (tracks come from the ledger now)."""
    batch: list[WorkItem] = []
    size = ctx.options.batch_size
    for chunk in sharded(iter_manifest(manifest, default_type=ctx.options.default_type, chunk_rows=size),
                         ctx.options.shard):
        keys, _ = await stage_rows(ctx.ledger, ctx.client, chunk.rows, manifest=str(manifest), run_id=ctx.run_id,
                                   write=False)
        if not keys:
            continue
        # Re-planned against the ledger right before running (another run may have moved a key since
        # pass 1), as a plain read: a Prefect task run per batch here cost more than the read itself.
        batch.extend(await ctx.writes.read(classify, keys, ctx.options.policy))
        while len(batch) >= size:
            yield batch[:size]
            batch = batch[size:]
    if batch:
        yield batch


def budget_cap(plan: Plan, options: RunOptions, balance: int | None) -> int | None:
    """The credits this run may commit; raises when the balance cannot pay and partial runs are not allowed."""
    cap = options.max_credits
    if balance is not None and plan.credits_new > balance:
        if not options.allow_partial:
            raise RunAborted(
                f"the balance ({balance} credits) cannot pay for this run ({plan.credits_new} credits); "
                "top up, lower the work, or pass --allow-partial to spend what there is in manifest order",
                ExitCode.NO_CREDITS,
            )
        cap = balance if cap is None else min(cap, balance)
    return cap
