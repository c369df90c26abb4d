"""The Prefect tasks of the analysis: the only module of ``tasks.analysis`` that imports Prefect."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from stemcat.tasks.analysis.analyzer import Analyzer
from stemcat.tasks.analysis.metrics import QualityThresholds
from stemcat.tasks.analysis.pool import shared_pool
from stemcat.tasks.context import RunContext


@task(name="analyze-jobs", cache_policy=NONE, retries=0)
async def analyze_jobs(analyzer: Analyzer, job_ids: list[str]) -> dict[str, str]:
    """Measure the downloaded stems of these jobs against their mixes and store the results."""
    outcomes = await analyzer.analyse(job_ids)
    return {job_id: outcome.value for job_id, outcome in outcomes.items()}


@task(name="analyze-batch", cache_policy=NONE, retries=0)
async def analyze_batch(
    ctx: RunContext, job_ids: list[str], thresholds: QualityThresholds | None = None
) -> dict[str, str]:
    """Analyse a batch's freshly downloaded jobs inside a separation run (same ledger, client and counters)."""
    analyzer = Analyzer(
        ledger=ctx.ledger,
        data_dir=ctx.options.data_dir,
        client=ctx.client,
        thresholds=thresholds or QualityThresholds(),
        max_download_bytes=ctx.options.max_download_bytes,
        counts=ctx.counts,
        pool=shared_pool(ctx.options.analysis_workers),
        storage=ctx.storage,
    )
    outcomes = await analyzer.analyse(job_ids)
    return {job_id: outcome.value for job_id, outcome in outcomes.items()}
