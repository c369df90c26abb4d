"""Analyse downloaded stems: levels, loudness, silence, and how well they add back up to the mix.

Per song, the mix is fetched once (free, see ``tasks.mixes``); then each of its separations is
measured in one streaming pass over its stems and the mix (``tasks.quality_files``) in a worker
thread, and stored in one ledger transaction. Never pays for anything and never downloads a stem.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import Counter
from enum import StrEnum
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from stemcat.catalog import Job, JobQualityRow, Ledger, StemQualityRow, StemRow, StemStatus
from stemcat.client import SunoClient
from stemcat.tasks.context import RunContext
from stemcat.tasks.separation.mixes import candidate_urls, ensure_mix
from stemcat.tasks.quality import JobMetrics, QualityThresholds
from stemcat.tasks.quality_files import UnreadableAudio, measure_files

log = logging.getLogger(__name__)

DEFAULT_MAX_MIX_BYTES = 200 * 1024 * 1024


class AnalysisOutcome(StrEnum):
    """What happened to one job's analysis."""

    ANALYSED = "analysed"  # stems measured and compared with the mix
    LOW_SNR = "low_snr"  # analysed, and the stems do not add back up to the mix
    NO_MIX = "no_mix"  # stems measured; no mix to compare with (or not every stem is on disk)
    FAILED = "failed"  # a file would not decode: nothing stored but the reason
    SKIPPED = "skipped"  # unknown job, or none of its stems is on disk


class Analyzer:
    """Everything an analysis needs: the ledger, where files live, the (free) client, thresholds, counters.

    A plain class, like ``RunContext``, so Prefect does not walk into it when it records task inputs.
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        data_dir: Path,
        client: SunoClient | None,
        thresholds: QualityThresholds | None = None,
        max_download_bytes: int = DEFAULT_MAX_MIX_BYTES,
        counts: Counter[str] | None = None,
    ) -> None:
        self.ledger = ledger
        self.data_dir = Path(data_dir)
        self.client = client
        self.thresholds = thresholds or QualityThresholds()
        self.max_download_bytes = max_download_bytes
        self.counts: Counter[str] = counts if counts is not None else Counter()

    async def analyse(self, job_ids: list[str]) -> dict[str, AnalysisOutcome]:
        """Analyse the given jobs, songs concurrently, each song's mix fetched once."""
        jobs = await asyncio.to_thread(_load_jobs, self.ledger, job_ids)
        by_song: dict[str, list[Job]] = {}
        for job in jobs:
            by_song.setdefault(job.audio_id, []).append(job)
        outcomes = dict.fromkeys(job_ids, AnalysisOutcome.SKIPPED)
        for song_outcomes in await asyncio.gather(*(self._analyse_song(group) for group in by_song.values())):
            outcomes.update(song_outcomes)
        return outcomes

    async def _analyse_song(self, jobs: list[Job]) -> dict[str, AnalysisOutcome]:
        audio_id = jobs[0].audio_id
        track = await asyncio.to_thread(self.ledger.track, audio_id)
        urls = candidate_urls((job.origin_url for job in jobs), track.source_url if track else None)
        mix = await ensure_mix(
            self.client, self.data_dir, audio_id, urls,
            task_id=(track.task_id if track and track.task_id else jobs[0].task_id),
            max_bytes=self.max_download_bytes,
        )
        mix_path = None if mix.relpath is None else self.data_dir / mix.relpath
        outcomes: dict[str, AnalysisOutcome] = {}
        for job in jobs:
            outcomes[job.job_id] = await self._analyse_job(job, mix_path, mix.problem)
        return outcomes

    async def _analyse_job(self, job: Job, mix_path: Path | None, mix_problem: str | None) -> AnalysisOutcome:
        stems = await asyncio.to_thread(self.ledger.stems_for_job, job.job_id)
        on_disk = {stem.stem: path for stem in stems if (path := _file_on_disk(self.data_dir, stem)) is not None}
        if not on_disk:
            return AnalysisOutcome.SKIPPED
        async with _cpu_slots():
            try:
                metrics = await asyncio.to_thread(measure_files, on_disk, mix_path, self.thresholds)
            except UnreadableAudio as error:
                if mix_path is None or error.path != mix_path:
                    return await self._record_failure(job, str(error))
                # A damaged mix is dropped (it is free to fetch again) and the stems measured alone.
                mix_path.unlink(missing_ok=True)
                mix_path, mix_problem = None, f"mix unreadable, removed: {error}"
                metrics = await asyncio.to_thread(measure_files, on_disk, None, self.thresholds)
        problem = mix_problem or metrics.snr_problem
        complete = len(on_disk) == len(stems)
        if not complete:
            problem = "not every stem is on disk: " + ", ".join(sorted({s.stem for s in stems} - set(on_disk)))
        job_row = _job_quality(self.data_dir, metrics, mix_path, problem, self.thresholds, complete=complete)
        stem_rows = [_stem_quality(name, metrics) for name in on_disk]
        await asyncio.to_thread(self.ledger.record_analysis, job.job_id, job_row, stem_rows)
        self.counts["stems_analysed"] += len(stem_rows)
        self.counts["silent_stems"] += sum(bool(row.silent) for row in stem_rows)
        if job_row.low_snr:
            self.counts["low_snr"] += 1
            return AnalysisOutcome.LOW_SNR
        if job_row.reconstruction_snr_db is None:
            self.counts["analysis_incomplete"] += 1
            return AnalysisOutcome.NO_MIX
        return AnalysisOutcome.ANALYSED

    async def _record_failure(self, job: Job, reason: str) -> AnalysisOutcome:
        log.warning("analysis of job %s failed: %s", job.job_id, reason)
        failed = JobQualityRow(
            reconstruction_snr_db=None, mix_path=None, mix_duration_s=None, low_snr=None, analysis_error=reason
        )
        await asyncio.to_thread(self.ledger.record_analysis, job.job_id, failed, [])
        self.counts["analysis_failed"] += 1
        return AnalysisOutcome.FAILED


def _load_jobs(ledger: Ledger, job_ids: list[str]) -> list[Job]:
    return [job for job in (ledger.get_job(job_id) for job_id in dict.fromkeys(job_ids)) if job is not None]


def _file_on_disk(data_dir: Path, stem: StemRow) -> Path | None:
    """The stem's file when it is downloaded and still there."""
    if stem.status != StemStatus.DOWNLOADED or not stem.path:
        return None
    path = data_dir / stem.path
    return path if path.is_file() else None


def _job_quality(
    data_dir: Path,
    metrics: JobMetrics,
    mix_path: Path | None,
    problem: str | None,
    thresholds: QualityThresholds,
    *,
    complete: bool,
) -> JobQualityRow:
    snr = metrics.reconstruction_snr_db if complete else None
    return JobQualityRow(
        reconstruction_snr_db=snr,
        mix_path=None if mix_path is None else str(mix_path.relative_to(data_dir)),
        mix_duration_s=None if metrics.mix is None else metrics.mix.duration_s,
        low_snr=None if snr is None else snr < thresholds.min_snr_db,
        analysis_error=problem if snr is None else None,
    )


def _stem_quality(name: str, metrics: JobMetrics) -> StemQualityRow:
    stem = metrics.stems[name]
    return StemQualityRow(
        stem=name,
        peak_dbfs=stem.peak_dbfs,
        rms_dbfs=stem.rms_dbfs,
        lufs=stem.lufs,
        clipped_fraction=stem.clipped_fraction,
        silent=stem.silent,
        duration_diff_s=metrics.duration_diff_s(name),
    )


# Decoding and filtering are CPU-bound: at most one analysis per core runs at a time in a process,
# however many batches are in flight (the loop's default executor has more threads than cores).
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _cpu_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _SLOTS.get(loop)
    if slots is None:
        slots = _SLOTS[loop] = asyncio.Semaphore(max(1, os.cpu_count() or 1))
    return slots


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
    )
    outcomes = await analyzer.analyse(job_ids)
    return {job_id: outcome.value for job_id, outcome in outcomes.items()}
