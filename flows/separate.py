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
import base64
import csv
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.context import FlowRunContext
from prefect.logging.handlers import APILogHandler
from prefect.states import Failed, State
from prefect.utilities.annotations import quote
from pydantic import ValidationError

from stemcat.catalog import JobStatus, Ledger, LedgerWriter, RejectRow
from stemcat.catalog.ledger.urls import chosen_ledger_url
from stemcat.exit_codes import ExitCode
from stemcat.flows.outcome import finish, summary_of
from stemcat.flows.preflight import PreflightError, check_run_inputs
from stemcat.flows.summary import RunSummary
from stemcat.client import SunoClient, SunoError, TransportFailure
from stemcat.services.callbacks import CallbackHub, CallbackReceiver, load_secret
from stemcat.tasks.context import RunAborted, RunContext, RunLease, RunLock, RunOptions, WorkItem
from stemcat.tasks.analysis.steps import analyze_batch
from stemcat.tasks.limits import make_limiter
from stemcat.tasks.manifest import ManifestError, iter_manifest
from stemcat.tasks.separation.planning import Plan, classify
from stemcat.tasks.separation.steps import plan_batch, reconcile_intents, separate_batch
from stemcat.tasks.separation.actions import Action
from stemcat.tasks.separation.progress import ProgressReporter, reporter, set_reporter
from stemcat.tasks.publish import publish_catalog
from stemcat.tasks.tracks import stage_rows, stage_tracks
from stemcat.tasks.separation.window import BatchEntry

MANIFEST_CHUNK_ROWS = 10_000
CLOSING_BALANCE_WAIT_S = 5.0  # the closing read gives up (balance unknown) rather than wait out a Retry-After
STOPPING_BALANCE_WAIT_S = 1.0  # ... and sooner when the run is being stopped (Ctrl-C, a cancelled flow run)

log = logging.getLogger(__name__)

T = TypeVar("T")


def orchestrated() -> bool:
    """True inside a Prefect flow run; False when the flow's body runs bare (`separate_manifest.fn`)."""
    return FlowRunContext.get() is not None


async def call_task(step: Any, *args: Any) -> Any:
    """Run a task: as a Prefect task run inside a flow run, as a plain coroutine otherwise (no server)."""
    if orchestrated():
        return await step(*args)
    return await step.fn(*(a.unquote() if isinstance(a, quote) else a for a in args))


class _OneLineExpectedOutcomes(logging.Filter):
    """Expected outcomes (a refused key, a stopped run) are logged as one line, without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, RunAborted | SunoError):
            record.exc_info, record.exc_text = None, None
        return True


_ONE_LINE = _OneLineExpectedOutcomes()


@contextmanager
def run_logging() -> Iterator[None]:
    """stemcat's own log lines (plan, milestones, warnings naming their job, summary) go to the run's logs."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        if _ONE_LINE not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_ONE_LINE)
    ours = logging.getLogger("stemcat")
    added = None
    if orchestrated() and not any(isinstance(h, APILogHandler) for h in ours.handlers):
        added = APILogHandler()
        ours.addHandler(added)
    if ours.level == logging.NOTSET or ours.level > logging.INFO:
        ours.setLevel(logging.INFO)
    try:
        yield
    finally:
        if added is not None:
            ours.removeHandler(added)


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


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
    for chunk in iter_manifest(manifest, default_type=ctx.options.default_type, chunk_rows=MANIFEST_CHUNK_ROWS):
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
    for chunk in iter_manifest(manifest, default_type=ctx.options.default_type, chunk_rows=size):
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


def _budget_cap(plan: Plan, options: RunOptions, balance: int | None) -> int | None:
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


@asynccontextmanager
async def run_resources(options: RunOptions, run_id: str) -> AsyncIterator[RunContext]:
    options.data_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.open(options.data_dir, options.ledger_url)
    writes = LedgerWriter(ledger.reopen(busy_timeout_s=0.0))
    secret = load_secret(options.data_dir)
    limiter = make_limiter(options)
    try:
        with RunLock(options.data_dir, run_id), RunLease(ledger, run_id):
            async with SunoClient(base_url=options.base_url, limiter=limiter,
                                  max_download_connections=options.download_concurrency) as client, \
                    AsyncExitStack() as receiving:
                if options.callback_url:  # a long-lived receiver elsewhere stores callbacks in the ledger
                    callback_base, hub = options.callback_url, CallbackHub()
                else:  # served on this loop; stopped (its last callbacks stored) before the writer drains
                    receiver = await receiving.enter_async_context(CallbackReceiver(ledger, secret, writer=writes))
                    callback_base, hub = receiver.base_url, receiver.hub
                hub.bind(asyncio.get_running_loop())
                yield RunContext(run_id=run_id, options=options, ledger=ledger, client=client, secret=secret,
                                 callback_base=callback_base, hub=hub, writes=writes)
    finally:
        await writes.drain()
        try:
            await limiter.aclose()  # gives reserved slots back to runs sharing the key
        except Exception as error:  # a pacer gone away must not hide how the run ended
            log.warning("closing the rate limiter failed: %s", error)
        writes.close()
        ledger.close()


def _embedded(path: Path) -> str:
    """A chart as a markdown image the Prefect UI shows inline (a data URI: the file stays on the worker)."""
    data = base64.b64encode(path.read_bytes()).decode()
    return f"![{path.stem.replace('_', ' ')}](data:image/png;base64,{data})"


async def _publish_artifacts(summary: RunSummary, data_dir: Path) -> None:
    if not orchestrated():  # a bare dry run: no Prefect server to show them
        return
    from stemcat.catalog.charts import write_catalog_charts  # matplotlib: 0.6 s a dry run need not pay

    try:
        charts = await asyncio.to_thread(write_catalog_charts, data_dir)
        images = [_embedded(path) for path in charts]
    except Exception as error:  # charts are a convenience; the run's outcome must still be published
        images = []
        log.warning("charts not written: %s", error)
    table = summary.type_table()
    credits = ["| type | planned submissions | planned credits |", "|---|---:|---:|"] + [
        f"| {row['separation_type']} | {row['planned_submissions']} | {row['planned_credits']} |" for row in table]
    markdown = summary.markdown()
    if table:
        markdown += "\n\n## Credits by type\n\n" + "\n".join(credits)
    if images:
        markdown += "\n\n## Charts\n\n" + "\n\n".join(images)
    await create_markdown_artifact(key="stemcat-run-summary", markdown=markdown, description="stemcat run summary")
    if table:
        await create_table_artifact(key="stemcat-run-credits", table=table, description="credits by separation type")


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
) -> dict[str, Any] | State:
    """Separate every track of a manifest into stems and catalog them.

    A tunable left None takes its default from `RunOptions` (the one place defaults are written).
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
            )
        except ValidationError as error:
            first = error.errors()[0]
            return _refused(run_id, manifest, data_dir, dry_run,
                            f"bad parameter {'.'.join(map(str, first['loc']))}: {first['msg']}")
        try:  # what the CLI checked before Prefect started, checked again for deployment runs
            check_run_inputs(Path(manifest), options.data_dir, separation_type)
        except PreflightError as error:
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
                             balance_before=summary.balance_before)
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
            ctx.budget.cap = _budget_cap(summary.plan, options, summary.balance_before)
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
            summary.counts = dict(ctx.counts)
            summary.stop_reason = ctx.stop_reason
            summary.credits_committed = ctx.ledger.spend_total(run_id)
            summary.jobs = ctx.ledger.job_status_counts(run_id)
            summary.incomplete = {f"{j.audio_id}/{j.separation_type}": j.missing
                                  for j in ctx.ledger.jobs_by_status(["incomplete"], limit=100)}
            if not dry_run and refused is None:
                stopping = (current := asyncio.current_task()) is not None and current.cancelling() > 0
                try:
                    summary.balance_after = await call_task(
                        read_balance, ctx.client, STOPPING_BALANCE_WAIT_S if stopping else CLOSING_BALANCE_WAIT_S)
                except RunAborted as error:  # the outcome is already decided; the balance is a nicety
                    log.warning("the closing balance could not be read: %s", error)
            summary.count_requests(ctx.client.requests_sent)
            summary.exit_code = summary.decide_exit_code()
            summary.elapsed_s = round(time.monotonic() - started, 3)
            status = "dry_run" if dry_run else ("completed" if summary.exit_code == 0 else "partial")
            ctx.ledger.finish_run(run_id, status=status, exit_code=int(summary.exit_code),
                                  balance_after=summary.balance_after, summary=summary.model_dump(mode="json"),
                                  counts={**summary.counts, **summary.run_columns()})
            await call_task(publish_catalog, ctx.ledger, options.data_dir)
            await _publish_artifacts(summary, options.data_dir)
    return summary
