"""How a separation run ends: its summary completed from the ledger and the closing balance, the run
recorded as finished, the catalog published, and the summary shown in the Prefect UI."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from stemcat.flows.orchestration import call_task, orchestrated
from stemcat.flows.separate_plan import read_balance
from stemcat.flows.summary import RunSummary
from stemcat.tasks.context import RunAborted, RunContext
from stemcat.tasks.publish import publish_catalog

CLOSING_BALANCE_WAIT_S = 5.0  # the closing read gives up (balance unknown) rather than wait out a Retry-After
STOPPING_BALANCE_WAIT_S = 1.0  # ... and sooner when the run is being stopped (Ctrl-C, a cancelled flow run)

log = logging.getLogger("stemcat.flows.separate")  # the run's lines keep the flow's logger name


async def close_run(ctx: RunContext, summary: RunSummary, *, refused: bool, started: float) -> None:
    """Complete `summary` (counts, spend, jobs, closing balance, exit code), record the run as finished,
    publish the catalog and the run's artifacts; `refused` when the opening balance read stopped the run."""
    run_id, dry_run, data_dir = ctx.run_id, ctx.options.dry_run, ctx.options.data_dir
    summary.counts = dict(ctx.counts)
    summary.stop_reason = ctx.stop_reason
    summary.credits_committed = ctx.ledger.spend_total(run_id)
    summary.jobs = ctx.ledger.job_status_counts(run_id)
    summary.incomplete = {f"{j.audio_id}/{j.separation_type}": j.missing
                          for j in ctx.ledger.jobs_by_status(["incomplete"], limit=100)}
    if not dry_run and not refused:
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
    await call_task(publish_catalog, ctx.ledger, data_dir, ctx.storage)
    await _publish_artifacts(summary, data_dir)


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
