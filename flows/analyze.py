"""Re-run the stem analysis over an existing catalog, without downloading any stem again.

Selects the downloaded jobs (by default only those never analysed), measures them batch by
batch (``tasks.analysis``), fetches each song's mix once when it is not on disk yet (free),
then republishes the Parquet snapshots and DuckDB views.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import State
from pydantic import BaseModel, Field

from stemcat.catalog import Ledger
from stemcat.catalog.ledger.urls import chosen_ledger_url
from stemcat.catalog.storage import open_storage
from stemcat.exit_codes import ExitCode
from stemcat.flows.outcome import finish
from stemcat.client import SunoClient
from stemcat.tasks.analysis.analyzer import Analyzer
from stemcat.tasks.analysis.pool import AnalysisPool
from stemcat.tasks.analysis.steps import analyze_jobs
from stemcat.tasks.context import RunOptions
from stemcat.tasks.publish import publish_catalog
from stemcat.tasks.analysis.metrics import DEFAULT_MIN_SNR_DB, DEFAULT_SILENT_THRESHOLD_DBFS, QualityThresholds


class AnalysisSummary(BaseModel):
    """What one analysis pass did."""

    data_dir: str
    jobs: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    silent_threshold_dbfs: float
    min_snr_db: float
    reanalyze: bool = False
    elapsed_s: float = 0.0

    def markdown(self) -> str:
        outcome_text = ", ".join(f"{name}: {n}" for name, n in sorted(self.outcomes.items())) or "nothing to do"
        return "\n".join([
            f"# stemcat analysis of `{self.data_dir}`",
            "",
            f"- jobs analysed: {self.jobs} ({outcome_text})",
            (f"- stems measured: {self.counts.get('stems_analysed', 0)}, "
             f"silent: {self.counts.get('silent_stems', 0)} (peak below {self.silent_threshold_dbfs:g} dBFS)"),
            (f"- separations whose stems add up to the mix below {self.min_snr_db:g} dB SNR: "
             f"{self.counts.get('low_snr', 0)}"),
            f"- time: {self.elapsed_s:.1f} s",
        ])


@asynccontextmanager
async def _mix_client(fetch_mixes: bool, base_url: str) -> AsyncIterator[SunoClient | None]:
    if not fetch_mixes:
        yield None
        return
    async with SunoClient(base_url=base_url) as client:
        yield client


@flow(name="stemcat-analyze", log_prints=False, retries=0)
async def analyze_catalog(
    data_dir: str,
    silent_threshold_dbfs: float = DEFAULT_SILENT_THRESHOLD_DBFS,
    min_snr_db: float = DEFAULT_MIN_SNR_DB,
    reanalyze: bool = False,
    fetch_mixes: bool = True,
    base_url: str | None = None,
    batch_size: int = 50,
    max_download_mb: float | None = None,
    analysis_workers: int | None = None,
    ledger_url: str | None = None,
    storage_url: str | None = None,
) -> dict[str, Any] | State:
    """Measure the downloaded stems of a catalog (only unanalysed ones unless ``reanalyze``). Returns the summary.

    With ``storage_url``, stems another host stored there are fetched (verified) into ``data_dir`` first,
    and the catalog is published there too.

    Jobs whose files could not be read end the run Failed (exit status 1), the summary its data.
    """
    started = time.monotonic()
    # The API and the download cap are the separation run's: their defaults are RunOptions'.
    defaults = RunOptions.build(data_dir=data_dir, base_url=base_url, max_download_mb=max_download_mb)
    directory = defaults.data_dir
    thresholds = QualityThresholds(silent_threshold_dbfs=silent_threshold_dbfs, min_snr_db=min_snr_db)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    summary = AnalysisSummary(data_dir=str(directory), silent_threshold_dbfs=silent_threshold_dbfs,
                              min_snr_db=min_snr_db, reanalyze=reanalyze)
    storage = open_storage(storage_url, directory)
    ledger = Ledger.open(directory, chosen_ledger_url(ledger_url, None))  # the edges filled it from the environment
    pool = AnalysisPool(analysis_workers)  # decoding and meters: one worker process per core by default
    try:
        job_ids = await asyncio.to_thread(ledger.jobs_to_analyze, include_analyzed=reanalyze)
        outcomes: Counter[str] = Counter()
        async with _mix_client(fetch_mixes, defaults.base_url) as client:
            analyzer = Analyzer(ledger=ledger, data_dir=directory, client=client, thresholds=thresholds,
                                max_download_bytes=defaults.max_download_bytes, pool=pool, storage=storage)
            for start in range(0, len(job_ids), batch_size):
                batch = await analyze_jobs(analyzer, job_ids[start:start + batch_size])
                outcomes.update(batch.values())
        await publish_catalog(ledger, directory, storage)
    finally:
        pool.close()
        ledger.close()
    summary.jobs = len(job_ids)
    summary.outcomes = dict(outcomes)
    summary.counts = dict(analyzer.counts)
    summary.elapsed_s = round(time.monotonic() - started, 3)
    await create_markdown_artifact(key="stemcat-analysis", markdown=summary.markdown(),
                                   description="stemcat stem analysis")
    failed = summary.outcomes.get("failed", 0)
    result = summary.model_dump(mode="json") | {"exit_code": int(ExitCode.INCOMPLETE if failed else ExitCode.OK)}
    return finish(result, f"{failed} jobs could not be analysed (unreadable files)")
