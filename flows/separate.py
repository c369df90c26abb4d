"""The main flow: manifest in, separated and downloaded stems plus a catalog out.

Two passes over the manifest keep memory flat: the first validates, stages tracks
and plans (what `--dry-run` prints, and what the pre-flight balance check needs);
the second executes batch by batch, each batch one Prefect task in which every job goes
submit → poll → download at its own pace, and a rolling window of `concurrency` x `batch_size`
jobs in flight across batches (a job starts when any other ends, not when its batch's slowest does).

List arguments of tasks are wrapped in `quote`: Prefect otherwise walks every item of
every list looking for futures, which dominated a million-row dry run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from prefect import flow, runtime
from prefect.states import Failed, State
from prefect.utilities.annotations import quote
from pydantic import ValidationError

from stemcat.catalog import JobStatus, Ledger
from stemcat.catalog.ledger.urls import chosen_ledger_url
from stemcat.catalog.storage import StorageError, open_storage
from stemcat.exit_codes import ExitCode
from stemcat.flows.orchestration import call_task, new_run_id, run_logging, run_resources
from stemcat.flows.outcome import finish, summary_of
from stemcat.flows.preflight import PreflightError, check_run_inputs
from stemcat.flows.separate_finish import close_run
from stemcat.flows.separate_plan import budget_cap, iter_work, plan_manifest, read_balance
from stemcat.flows.summary import RunSummary
from stemcat.tasks.context import RunAborted, RunContext, RunOptions, WorkItem
from stemcat.tasks.analysis.steps import analyze_batch
from stemcat.tasks.manifest import ManifestError
from stemcat.tasks.separation.steps import reconcile_intents, separate_batch
from stemcat.tasks.separation.actions import Action
from stemcat.tasks.separation.progress import ProgressReporter, reporter, set_reporter
from stemcat.tasks.separation.window import BatchEntry

log = logging.getLogger(__name__)


async def process_batch(ctx: RunContext, active: list[WorkItem], entry: BatchEntry) -> None:
    """Submit what is new, poll what is pending, download what is separated: each job at its own pace."""
    try:
        results = await call_task(separate_batch, ctx, quote(active), entry)
    finally:
        entry.close()  # even when the task never started: the next batch must not wait for it
    done = sum(1 for status in results.values() if status == "downloaded")
    log.info("batch of %d jobs done: %d downloaded; run so far: %d submitted, %d downloaded", len(active), done,
             ctx.counts.get("submitted", 0), ctx.counts.get("downloaded", 0))
    if not ctx.options.analyze:  # left to `stemcat analyze`
        return
    downloaded = [job_id for job_id, status in results.items() if status == JobStatus.DOWNLOADED]
    fresh = await _not_analysed(ctx, downloaded)
    if fresh:  # quality figures, on the worker that downloaded, while the files are warm
        await call_task(analyze_batch, ctx, quote(fresh))


async def _not_analysed(ctx: RunContext, job_ids: list[str]) -> list[str]:
    """Jobs without quality figures yet (a rerun re-verifies files but does not re-measure them)."""
    jobs = [await ctx.writes.read(Ledger.get_job, job_id) for job_id in job_ids]
    return [job.job_id for job in jobs if job is not None and job.analyzed_at is None]


async def execute(ctx: RunContext, manifest: Path) -> None:
    """Run every batch, the job window (`concurrency` x `batch_size` jobs) deciding when each job starts."""
    running: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    async def guarded(items: list[WorkItem], entry: BatchEntry) -> None:
        try:
            await process_batch(ctx, items, entry)
        except BaseException as error:  # surfaced below, after the other batches settle
            failures.append(error)

    async for items in iter_work(ctx, manifest):
        for item in items:
            if item.action.startswith("skip_"):
                ctx.counts[item.action] += 1
        active = [item for item in items if not item.action.startswith("skip_")]
        if not active:
            continue
        entry = await ctx.window.enter(len(active))
        if failures:
            break
        job = asyncio.create_task(guarded(active, entry))
        running.add(job)
        job.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    aborted = next((e for e in failures if isinstance(e, RunAborted)), None)
    if aborted or failures:
        raise aborted or failures[0]


@flow(name="stemcat-separate", log_prints=False, retries=0)
async def separate_manifest(
    manifest: str,
    data_dir: str,
    base_url: str | None = None,
    separation_type: str | None = None,
    max_credits: int | None = None,
    allow_partial: bool = False,
    dry_run: bool = False,
    resubmit_unknown: bool = False,
    resubmit_failed: bool = False,
    resubmit_expired: bool = False,
    force: bool = False,
    rate_limit: int | None = None,
    rate_window_s: float | None = None,
    concurrency: int | None = None,
    download_concurrency: int | None = None,
    batch_size: int | None = None,
    poll_initial_s: float | None = None,
    poll_max_s: float | None = None,
    job_timeout_s: float | None = None,
    max_download_mb: float | None = None,
    callback_url: str | None = None,
    rate_store: str | None = None,
    poll_share: float | None = None,
    analyze: bool = True,
    ledger_url: str | None = None,
    analysis_workers: int | None = None,
    run_lease_s: float | None = None,
    storage_url: str | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
) -> dict[str, Any] | State:
    """Separate every track of a manifest into stems and catalog them.

    A tunable left None takes its default from `RunOptions` (the one place defaults are written).
    With `shard_index` and `shard_count` the run keeps only the manifest rows of that shard
    (tasks/shards.py): what each child of a fanned-out run (flows/fanout.py) does.
    Returns the run summary; a run that does not end with exit status 0 ends in a Failed state
    whose message is the reason and whose data is the same summary.
    """
    started = time.monotonic()
    run_id = new_run_id()
    with run_logging():
        try:
            options = RunOptions.build(
                data_dir=data_dir, base_url=base_url, default_type=separation_type, max_credits=max_credits,
                allow_partial=allow_partial, dry_run=dry_run, resubmit_unknown=resubmit_unknown,
                resubmit_failed=resubmit_failed, resubmit_expired=resubmit_expired, force=force,
                rate_limit=rate_limit, rate_window_s=rate_window_s, concurrency=concurrency,
                download_concurrency=download_concurrency, batch_size=batch_size, poll_initial_s=poll_initial_s,
                poll_max_s=poll_max_s, job_timeout_s=job_timeout_s, max_download_mb=max_download_mb,
                callback_url=callback_url, rate_store=rate_store, poll_share=poll_share, analyze=analyze,
                ledger_url=chosen_ledger_url(ledger_url, None), analysis_workers=analysis_workers,
                run_lease_s=run_lease_s,
                storage_url=storage_url,
                shard_index=shard_index, shard_count=shard_count,
            )
        except ValidationError as error:
            first = error.errors()[0]
            reason = str(first['msg']).removeprefix('Value error, ')
            where = '.'.join(map(str, first['loc']))
            return _refused(run_id, manifest, data_dir, dry_run, f"bad parameter {where}: {reason}")
        try:  # what the CLI checked before Prefect started, checked again for deployment runs
            check_run_inputs(Path(manifest), options.data_dir, separation_type)
        except PreflightError as error:
            return _refused(run_id, manifest, data_dir, dry_run, str(error))
        try:  # s3fs missing, or a storage this host cannot write: refused before anything is paid for
            storage = open_storage(options.storage_url, options.data_dir)
            if storage is not None and not dry_run:
                await asyncio.to_thread(storage.probe)
        except StorageError as error:
            return _refused(run_id, manifest, data_dir, dry_run, str(error))
        summary = await _separate(options, Path(manifest), run_id, started)
        log.info("summary: %s", "; ".join(line.removeprefix("- ") for line in summary.markdown().splitlines()[2:]))
        return finish(summary.model_dump(mode="json"), summary.failure_reason())


def _refused(run_id: str, manifest: str, data_dir: str, dry_run: bool, reason: str) -> State:
    """A run refused before it touched anything: Failed, exit status 2, nothing created."""
    log.error("run refused: %s", reason)
    summary = RunSummary(run_id=run_id, manifest=manifest, data_dir=str(data_dir), dry_run=dry_run, error=reason,
                         exit_code=ExitCode.BAD_CONFIG)
    return Failed(message=reason, data=summary.model_dump(mode="json"))


async def run_separation(*, progress: ProgressReporter | None = None, orchestrate: bool = True,
                         **parameters: Any) -> dict[str, Any]:
    """Run `separate_manifest` and return its summary, whether the run Completed or Failed.

    `progress` receives the run's progress events. With `orchestrate=False` the flow's body runs
    bare, without a Prefect server or flow run (what a `--dry-run` needs: it pays for nothing).
    """
    set_reporter(progress)
    try:
        if orchestrate:
            return await summary_of(await separate_manifest(**parameters, return_state=True))
        return await summary_of(await separate_manifest.fn(**parameters))
    finally:
        set_reporter(None)


async def _separate(options: RunOptions, manifest_path: Path, run_id: str, started: float) -> RunSummary:
    dry_run = options.dry_run
    summary = RunSummary(run_id=run_id, manifest=str(manifest_path), data_dir=str(options.data_dir),
                         dry_run=dry_run, catalog_path=str(options.data_dir / "catalog.duckdb"))
    flow_run_id = str(runtime.flow_run.id or "")
    params = options.model_dump(mode="json")
    async with run_resources(options, run_id) as ctx:
        refused: RunAborted | None = None
        try:
            summary.balance_before = await call_task(read_balance, ctx.client)
        except RunAborted as error:  # recorded as this run's outcome below
            refused = error
        ctx.ledger.start_run(run_id, flow_run_id=flow_run_id, manifest=str(manifest_path), params=params,
                             balance_before=summary.balance_before, lease_s=options.run_lease_s)
        try:
            if refused is not None:
                raise refused
            summary.reconciled = await call_task(reconcile_intents, ctx)
            summary.plan = await plan_manifest(ctx, manifest_path, summary)
            summary.min_seconds = summary.plan.min_seconds(limit=options.rate_limit, window_s=options.rate_window_s)
            log.info("plan: %d valid rows, %d rejected; %d new submissions (%s credits by type); %d to re-poll, "
                     "%d to download; balance %s", summary.plan.rows, summary.plan.rejected,
                     summary.plan.submissions, summary.plan.credits_by_type, summary.plan.actions.get(Action.POLL, 0),
                     summary.plan.actions.get(Action.DOWNLOAD, 0), summary.balance_before)
            reporter().total("rows", summary.plan.keys)
            ctx.budget.cap = budget_cap(summary.plan, options, summary.balance_before)
            if not dry_run:
                reporter().total("submitted", summary.plan.submissions)
                reporter().total("separated", summary.plan.submissions + summary.plan.actions.get(Action.POLL, 0))
                reporter().total("downloaded", summary.plan.keys - sum(
                    v for k, v in summary.plan.actions.items() if k.startswith("skip_")))
                await execute(ctx, manifest_path)
        except RunAborted as error:
            summary.error, summary.exit_code = str(error), ExitCode(error.exit_code)
            log.error("run stopped: %s", error)
        except ManifestError as error:
            summary.error, summary.exit_code = str(error), ExitCode.BAD_CONFIG
            log.error("manifest refused: %s", error)
        finally:
            await close_run(ctx, summary, refused=refused is not None, started=started)
    return summary
